"""Batch approval: one page shows each selection's email in full (HTML and text), and one form approves
them all, each at the version shown; one changed meanwhile is refused by name, the rest approved."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from flask_wtf import FlaskForm

from api.db import get_session
from api.manage.accounts import me
from api.manage.blueprint import bp, now
from api.manage.review import email_as_sent
from domain.errors import InvalidInput
from domain.reminders.queueing import queue_reminders
from domain.review.batch import BATCH_SIZE, approve_batch, awaiting_batch, selection_name
from domain.review.selection import selection_view

FIELD_PREFIX = "version-"


class BatchForm(FlaskForm):
    """The CSRF token; the versions are ``version-<selection id>`` fields, one per email shown."""


@bp.get("/batch")
@login_required
def batch() -> ResponseReturnValue:
    session = get_session()
    shown = []
    for selection in awaiting_batch(session, me()):
        view = selection_view(session, selection)
        email, source = email_as_sent(view)
        shown.append((view, selection_name(session, selection), email, source))
    return render_template("manage/batch.html", shown=shown, form=BatchForm(), limit=BATCH_SIZE)


def _versions() -> dict[int, int]:
    """The posted ``version-<id>`` fields; InvalidInput when one is not a number."""
    out = {}
    for key, value in request.form.items():
        if not key.startswith(FIELD_PREFIX):
            continue
        sid, version = key.removeprefix(FIELD_PREFIX), value.strip()
        if not (sid.isdigit() and version.isdigit()):
            raise InvalidInput("selections", "the page is out of date: reload it")
        out[int(sid)] = int(version)
    return out


@bp.post("/batch/approve")
@login_required
def batch_approve() -> ResponseReturnValue:
    session = get_session()
    BatchForm()  # the blueprint checked its CSRF token already
    try:
        result = approve_batch(session, me(), _versions())
    except InvalidInput as exc:
        session.rollback()
        flash(exc.detail, "error")
        return redirect(url_for("manage.batch"))
    if result.approved:
        report = queue_reminders(
            session, current_app.extensions["giftrec"].settings, now(), selection_ids=result.approved
        )
        queued = sum(sid in report.queued for sid in result.approved)
        waiting = sum(sid in report.deferred for sid in result.approved)
        flash(
            f"{len(result.approved)} approved: {queued} email(s) queued"
            + (f", {waiting} waiting for the frequency cap" if waiting else "")
            + "."
        )
    for _sid, name, why in result.refused:
        flash(f"Not approved: {name}. {why}", "error")
    return redirect(url_for("manage.batch"))
