"""The admin pages: users (create, disable / enable, reset a password), clients assigned to managers, and
the campaign report with its charts. A manager gets 404 on each of them, pages and posts alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms.validators import Optional

from api.db import get_session
from api.manage.accounts import me
from api.manage.blueprint import bp, now
from api.manage.charts import line_chart, uplift_chart
from api.manage.forms import ActiveForm, AssignForm, NewUserForm, PasswordForm, UnassignForm
from domain.access.users import create_user, get_user, list_users, reset_password, set_active
from domain.errors import Conflict, InvalidInput
from domain.lifecycle.campaigns import campaign_report
from domain.lifecycle.segments import segment_sizes
from domain.review.assignments import (
    assign_clients,
    assignable_managers,
    managed_clients,
    unassign_clients,
)
from domain.review.scope import sees_all

#: The campaign page's default period: this many days up to today.
CAMPAIGN_DAYS = 90


def admin_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Signed in as an admin, else 404: a manager is not told the page exists."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not sees_all(me()):
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def _field_error(form: FlaskForm, name: str, message: str) -> None:
    field = getattr(form, name, None)
    if field is not None:
        field.errors = [*field.errors, message]
    else:
        flash(message, "error")


# Users ------------------------------------------------------------------------------------------------


def _users_page(
    status: int = 200, new: NewUserForm | None = None, **password: PasswordForm
) -> ResponseReturnValue:
    users = list_users(get_session())
    forms = {u.id: PasswordForm(formdata=None) for u in users}
    for key, form in password.items():
        forms[int(key.removeprefix("u"))] = form
    return (
        render_template(
            "manage/admin_users.html",
            users=users,
            new=new or NewUserForm(formdata=None),
            passwords=forms,
            active=ActiveForm(formdata=None),
        ),
        status,
    )


@bp.get("/admin/users")
@admin_required
def admin_users() -> ResponseReturnValue:
    return _users_page()


@bp.post("/admin/users")
@admin_required
def admin_create_user() -> ResponseReturnValue:
    form = NewUserForm()
    session = get_session()
    if form.validate():
        try:
            user = create_user(
                session, form.email.data or "", form.name.data or "", form.password.data or "",
                form.role.data or "manager", by=me(),
            )  # fmt: skip
        except InvalidInput as exc:
            _field_error(form, exc.field, exc.detail)
        except Conflict as exc:
            _field_error(form, "email", exc.message)
        else:
            flash(f"{user.name} ({user.role}) can now sign in as {user.email}.")
            return redirect(url_for("manage.admin_users"))
    session.rollback()
    return _users_page(422, new=form)


@bp.post("/admin/users/<int:user_id>/active")
@admin_required
def admin_set_active(user_id: int) -> ResponseReturnValue:
    form = ActiveForm()
    session = get_session()
    get_user(session, user_id)  # NotFound -> 404 before the form is judged
    if not form.validate():
        session.rollback()
        flash("The form could not be read: reload the page.", "error")
        return _users_page(422)
    try:
        user = set_active(session, user_id, bool(form.active.data), by=me())
    except InvalidInput as exc:
        session.rollback()
        flash(exc.detail, "error")
        return _users_page(422)
    flash(f"{user.email} is {'enabled' if user.is_active else 'disabled'}.")
    return redirect(url_for("manage.admin_users"))


@bp.post("/admin/users/<int:user_id>/password")
@admin_required
def admin_reset_password(user_id: int) -> ResponseReturnValue:
    form = PasswordForm()
    session = get_session()
    get_user(session, user_id)
    if form.validate():
        try:
            user = reset_password(session, user_id, form.password.data or "", by=me())
        except InvalidInput as exc:
            _field_error(form, exc.field, exc.detail)
        else:
            flash(f"The password of {user.email} is reset: give them the new one in person.")
            return redirect(url_for("manage.admin_users"))
    session.rollback()
    return _users_page(422, **{f"u{user_id}": form})


# Clients ----------------------------------------------------------------------------------------------


def _clients_page(status: int = 200, form: AssignForm | None = None) -> ResponseReturnValue:
    session = get_session()
    managers = assignable_managers(session)
    assign = form or AssignForm(formdata=None)
    return (
        render_template(
            "manage/admin_clients.html",
            clients=managed_clients(session, me()),
            managers=managers,
            form=assign,
            chosen=set(assign.customer_ids.data or []),
        ),
        status,
    )


@bp.get("/admin/clients")
@admin_required
def admin_clients() -> ResponseReturnValue:
    return _clients_page()


@bp.post("/admin/clients/assign")
@admin_required
def admin_assign() -> ResponseReturnValue:
    form = AssignForm()
    session = get_session()
    if form.validate():
        try:
            changed = assign_clients(session, me(), form.customer_ids.data or [], form.manager_id.data or 0)
        except InvalidInput as exc:
            _field_error(form, exc.field, exc.detail)
        else:
            manager = get_user(session, form.manager_id.data or 0)
            flash(f"{changed} client(s) assigned to {manager.name}.")
            return redirect(url_for("manage.admin_clients"))
    session.rollback()
    return _clients_page(422, form)


@bp.post("/admin/clients/unassign")
@admin_required
def admin_unassign() -> ResponseReturnValue:
    form = UnassignForm()
    session = get_session()
    if form.validate():
        try:
            changed = unassign_clients(session, me(), form.customer_ids.data or [])
        except InvalidInput as exc:
            _field_error(form, exc.field, exc.detail)
        else:
            flash(f"{changed} client(s) no longer have a manager.")
            return redirect(url_for("manage.admin_clients"))
    session.rollback()
    shown = AssignForm(formdata=None, customer_ids=form.customer_ids.data)
    shown.customer_ids.errors = list(form.customer_ids.errors)
    return _clients_page(422, shown)


# Campaigns --------------------------------------------------------------------------------------------


class PeriodForm(FlaskForm):
    """The report's period (a GET form: nothing changes, no CSRF token)."""

    class Meta:
        csrf = False

    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])


@bp.get("/admin/campaigns")
@admin_required
def admin_campaigns() -> ResponseReturnValue:
    form = PeriodForm(request.args)
    status = 200
    if request.args and not form.validate():
        status = 422
    until = (form.until.data if not form.until.errors else None) or now().date()
    since = (form.since.data if not form.since.errors else None) or until - dt.timedelta(days=CAMPAIGN_DAYS)
    if since > until:
        form.since.errors = [*form.since.errors, "The period must start before it ends."]
        since, status = until - dt.timedelta(days=CAMPAIGN_DAYS), 422
    session = get_session()
    report = campaign_report(session, current_app.extensions["giftrec"].settings, since, until)
    charts = {}
    for row in report.rows:
        u = row.uplift
        interval = None
        if u is not None and not u.too_few:
            interval = (u.conversion_diff or 0.0, u.conversion_low or 0.0, u.conversion_high or 0.0)
        charts[row.campaign] = uplift_chart(
            row.ordered_treated, row.treated, row.ordered_control, row.control, interval
        )
    days, sizes = segment_sizes(session)
    return (
        render_template(
            "manage/admin_campaigns.html",
            report=report,
            charts=charts,
            sizes=line_chart(days, sizes),
            size_days=days,
            form=form,
            since=since,
            until=until,
        ),
        status,
    )
