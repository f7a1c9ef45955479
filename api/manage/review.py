"""The selection review page: picks by tier, replace / remove / add, the note, preview, approve, skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session

from api.db import get_session
from api.manage.accounts import me
from api.manage.blueprint import bp, now
from api.manage.forms import AddForm, MoveForm, NoteForm, ReplaceForm, SkipForm, VersionForm
from domain.errors import Conflict, InvalidInput
from domain.models import GiftSelection, User
from domain.reminders.queueing import RenderedEmail, queue_reminders
from domain.reminders.selections import (
    add_pick,
    approve_selection,
    move_pick,
    remove_pick,
    set_note,
    skip_selection,
    swap_pick,
)
from domain.review.scope import selection_for
from domain.review.selection import (
    SelectionView,
    alternatives,
    preview_email,
    search_catalog,
    selection_view,
)

#: Domain error fields -> the form field they are shown next to.
FIELDS = {"product_sku": "sku", "note": "note", "reason": "reason", "tier": "tier", "step": "step"}
#: Outbox states whose stored body is what the customer gets (or got).
LIVE_EMAIL = ("queued", "sending", "sent", "unknown")


def _settings() -> Any:
    return current_app.extensions["giftrec"].settings


def _forms(view: SelectionView, **given: FlaskForm) -> dict[str, FlaskForm]:
    version = view.selection.version
    forms: dict[str, FlaskForm] = {
        "note": NoteForm(formdata=None, note=view.selection.note or "", version=version),
        "add": AddForm(formdata=None, version=version),
        "skip": SkipForm(formdata=None, version=version),
        "replace": ReplaceForm(formdata=None, version=version),
        "version": VersionForm(formdata=None, version=version),
    }
    for name, form in given.items():
        form.version.data = version  # a refused form is shown again for the version now current
        forms[name] = form
    return forms


def _page(selection_id: int, status: int = 200, **forms: FlaskForm) -> ResponseReturnValue:
    session = get_session()
    selection = selection_for(session, me(), selection_id)
    view = selection_view(session, selection)
    replace_id = request.args.get("replace", type=int) or request.view_args.get("pick_id")  # type: ignore[union-attr]
    replacing = view.pick(replace_id) if replace_id else None
    query = request.args.get("q", "").strip()
    offered, found = [], []
    if replacing is not None and view.can_edit:
        tier = next(t.number for t in view.tiers if replacing in t.picks)
        offered = alternatives(session, _settings(), selection, tier, now())
        found = search_catalog(session, selection, query) if query else []
    return (
        render_template(
            "manage/selection.html",
            view=view,
            forms=_forms(view, **forms),
            replacing=replacing,
            offered=offered,
            found=found,
            query=query,
        ),
        status,
    )


@bp.get("/selections/<int:selection_id>")
@login_required
def selection(selection_id: int) -> ResponseReturnValue:
    return _page(selection_id)


def _edit(
    selection_id: int,
    name: str,
    form: FlaskForm,
    action: Callable[[Session, GiftSelection, User, Any], str],
) -> ResponseReturnValue:
    """Check the user may see the selection (else 404, nothing changes), validate the form, run the use
    case; on an error roll back and show the page again with the message by its field."""
    session = get_session()
    target = selection_for(session, me(), selection_id)
    if not form.validate():
        session.rollback()
        return _page(selection_id, 422, **{name: form})
    try:
        message = action(session, target, me(), form)
    except InvalidInput as exc:
        session.rollback()
        field = getattr(form, FIELDS.get(exc.field, ""), None)
        if field is not None:
            field.errors = [*field.errors, exc.detail]
        else:
            flash(exc.detail, "error")
        return _page(selection_id, 422, **{name: form})
    except Conflict as exc:
        session.rollback()
        flash(exc.message, "error")
        return _page(selection_id, 409)
    flash(message)
    return redirect(url_for("manage.selection", selection_id=selection_id))


@bp.post("/selections/<int:selection_id>/picks/<int:pick_id>/replace")
@login_required
def replace(selection_id: int, pick_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: ReplaceForm) -> str:
        pick = swap_pick(
            session, s.id, pick_id, form.sku.data or "", user, expected_version=form.version.data
        )
        return f"Pick replaced in tier {pick.tier}."

    return _edit(selection_id, "replace", ReplaceForm(), act)


@bp.post("/selections/<int:selection_id>/picks/<int:pick_id>/remove")
@login_required
def remove(selection_id: int, pick_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: VersionForm) -> str:
        remove_pick(session, s.id, pick_id, user, expected_version=form.version.data)
        return "Pick removed."

    return _edit(selection_id, "version", VersionForm(), act)


@bp.post("/selections/<int:selection_id>/picks/<int:pick_id>/move")
@login_required
def move(selection_id: int, pick_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: MoveForm) -> str:
        pick = move_pick(
            session, s.id, pick_id, form.step.data or 0, user, expected_version=form.version.data
        )
        return f"Moved {'up' if (form.step.data or 0) < 0 else 'down'} in tier {pick.tier}."

    return _edit(selection_id, "version", MoveForm(), act)


@bp.post("/selections/<int:selection_id>/picks")
@login_required
def add(selection_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: AddForm) -> str:
        pick = add_pick(
            session, s.id, form.sku.data or "", user, tier=form.tier.data, expected_version=form.version.data
        )
        return f"Added to tier {pick.tier}."

    return _edit(selection_id, "add", AddForm(), act)


@bp.post("/selections/<int:selection_id>/note")
@login_required
def note(selection_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: NoteForm) -> str:
        set_note(session, s.id, form.note.data or "", user, expected_version=form.version.data)
        return "Note saved: it is in the email preview." if s.note else "Note removed."

    return _edit(selection_id, "note", NoteForm(), act)


@bp.post("/selections/<int:selection_id>/skip")
@login_required
def skip(selection_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: SkipForm) -> str:
        skip_selection(session, s.id, form.reason.data or "", user, expected_version=form.version.data)
        return "Skipped: no email goes out for this occasion."

    return _edit(selection_id, "skip", SkipForm(), act)


@bp.post("/selections/<int:selection_id>/approve")
@login_required
def approve(selection_id: int) -> ResponseReturnValue:
    def act(session: Session, s: GiftSelection, user: User, form: VersionForm) -> str:
        approve_selection(session, s.id, user, expected_version=form.version.data)
        report = queue_reminders(session, _settings(), now(), selection_ids=[s.id])
        return queued_message(report, s)

    return _edit(selection_id, "version", VersionForm(), act)


def queued_message(report: Any, s: GiftSelection) -> str:
    """What happened to an approved selection's email, in words (from queue_reminders' report)."""
    if s.id in report.deferred:
        until = report.deferred[s.id]
        return f"Approved: the email waits for the frequency cap until {until:%d %b %H:%M} UTC."
    if s.id in report.queued:
        return "Approved: the email is queued and goes out within minutes."
    if s.id in report.skipped:
        return f"Approved, but no email can go out: {report.skipped[s.id]}."
    return f"Approved (version {s.approved_version})."


def email_as_sent(view: SelectionView) -> tuple[RenderedEmail, str]:
    """The email the customer gets: the stored body of a live outbox row, else rendered now from the
    current version by the queueing code. Returns it and where it came from."""
    live = [e for e in view.emails if e.status in LIVE_EMAIL]
    if live:
        e = live[-1]
        rendered = RenderedEmail(e.subject, e.body_text, e.body_html or "", "")
        return rendered, f"the email in the outbox ({e.status})"
    return preview_email(
        get_session(), _settings(), view.selection, now()
    ), "rendered from the current version"


@bp.get("/selections/<int:selection_id>/preview")
@login_required
def preview(selection_id: int) -> ResponseReturnValue:
    session = get_session()
    view = selection_view(session, selection_for(session, me(), selection_id))
    email, source = email_as_sent(view)
    return render_template("manage/preview.html", view=view, email=email, source=source, forms=_forms(view))


@bp.get("/selections/<int:selection_id>/preview.html")
@login_required
def preview_html(selection_id: int) -> ResponseReturnValue:
    """The HTML part alone, for the preview's sandboxed frame: its own inline styles may apply, nothing
    else (no script, no form, no plugin)."""
    session = get_session()
    view = selection_view(session, selection_for(session, me(), selection_id))
    email, _ = email_as_sent(view)
    headers = {
        "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox",
        "X-Frame-Options": "SAMEORIGIN",
    }
    return email.body_html, 200, headers
