"""The Today page (what needs me today) and the client page (profile, segment history and value, people,
dates, contacts, orders, spend), with its forms: add and edit recipients and dates, log a contact, stop
every reminder for a recipient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from flask_wtf import FlaskForm

from api.db import get_session
from api.manage.accounts import me
from api.manage.blueprint import bp, now
from api.manage.charts import spend_chart
from api.manage.forms import ContactForm, DateForm, RecipientForm, StopRecipientForm
from api.next_purchase import next_purchase_service
from domain.errors import DomainError, InvalidInput
from domain.review.clients import ClientView, client_view, stop_recipient
from domain.review.contacts import log_contact, recent_contacts
from domain.review.people import DateInput, RecipientInput, save_date, save_recipient
from domain.review.today import today_for
from domain.serving.next_purchase import next_purchase_for


@bp.get("/")
@login_required
def today() -> ResponseReturnValue:
    settings = current_app.extensions["giftrec"].settings
    page = today_for(get_session(), me(), settings, now())
    return render_template(
        "manage/today.html", today=page, cutoff_days=settings.reminders.vip_cutoff_days, r=settings.reminders
    )


def _next_purchases(external_id: str) -> object:
    """The next likely purchases, or None when the model cannot tell (no history, nothing trained)."""
    try:
        return next_purchase_for(next_purchase_service(), external_id, 5)
    except (DomainError, LookupError, ValueError):
        return None


def _forms(view: ClientView, given: dict[str, FlaskForm]) -> dict[str, FlaskForm]:
    """Every form of the client page by its prefix (field ids are unique on the page): blank for new
    things, filled in for edits; a refused one is shown as it was posted, with its errors."""
    forms: dict[str, FlaskForm] = {
        "contact": ContactForm(formdata=None, prefix="contact"),
        "recipient": RecipientForm(formdata=None, prefix="recipient"),
    }
    for r in view.recipients:
        rec = r.recipient
        forms[f"r{rec.id}"] = RecipientForm(
            formdata=None, prefix=f"r{rec.id}", name=rec.name,
            relationship=rec.relationship_.replace("_", " "), interests=", ".join(rec.interests or []),
        )  # fmt: skip
        forms[f"r{rec.id}-date"] = DateForm(formdata=None, prefix=f"r{rec.id}-date")
        for d in r.dates:
            forms[f"d{d.date_id}"] = DateForm(
                formdata=None, prefix=f"d{d.date_id}", kind=d.kind, title=d.title or "", day=d.day,
                month=d.month, year=d.year, recurrence=d.recurrence,
            )  # fmt: skip
    return forms | given


def _client_page(
    customer_id: int, status: int = 200, stop_form: StopRecipientForm | None = None, **given: FlaskForm
) -> ResponseReturnValue:
    settings = current_app.extensions["giftrec"].settings
    session = get_session()
    view = client_view(session, me(), settings, customer_id, now())
    return (
        render_template(
            "manage/client.html",
            client=view,
            chart=spend_chart(view.spend_by_month),
            next_purchase=_next_purchases(view.customer.external_id),
            contacts=recent_contacts(session, view.customer.id),
            form=stop_form or StopRecipientForm(),
            forms=_forms(view, given),
            failed=set(given),
        ),
        status,
    )


@bp.get("/clients/<int:customer_id>")
@login_required
def client(customer_id: int) -> ResponseReturnValue:
    return _client_page(customer_id)


@bp.post("/clients/<int:customer_id>/recipients/<int:recipient_id>/stop")
@login_required
def stop(customer_id: int, recipient_id: int) -> ResponseReturnValue:
    form = StopRecipientForm()
    if not form.validate():
        get_session().rollback()
        return _client_page(customer_id, 422, form)
    recipient = stop_recipient(get_session(), me(), recipient_id, form.reason.data or "", now())
    if recipient.customer_id != customer_id:  # a recipient of another of my clients: a wrong URL
        get_session().rollback()
        return _client_page(customer_id, 404, form)
    flash(f"Every reminder for {recipient.name} is stopped.")
    return redirect(url_for("manage.client", customer_id=customer_id))


def _save(
    customer_id: int, prefix: str, form: FlaskForm, action: Callable[[FlaskForm], str]
) -> ResponseReturnValue:
    """Validate the form and run the use case; on an error roll back and show the client page again with
    the message next to its field (nothing half-applied)."""
    session = get_session()
    if form.validate():
        try:
            message = action(form)
        except InvalidInput as exc:
            field = getattr(form, exc.field, None)
            if field is not None:
                field.errors = [*field.errors, exc.detail]
            else:
                flash(exc.detail, "error")
        else:
            flash(message)
            return redirect(url_for("manage.client", customer_id=customer_id))
    session.rollback()
    return _client_page(customer_id, 422, **{prefix: form})


def _recipient_input(form: Any) -> RecipientInput:
    return RecipientInput(form.name.data or "", form.relationship.data or "", form.interests.data or "")


def _date_input(form: Any) -> DateInput:
    return DateInput(
        kind=form.kind.data or "",
        month=form.month.data or None,
        day=form.day.data,
        title=form.title.data or "",
        year=form.year.data,
        recurrence=form.recurrence.data or "",
    )


@bp.post("/clients/<int:customer_id>/contacts")
@login_required
def contact(customer_id: int) -> ResponseReturnValue:
    def act(form: Any) -> str:
        log_contact(get_session(), me(), customer_id, form.kind.data or "", form.note.data or "", now())
        return f"Contact logged ({form.kind.data})."

    return _save(customer_id, "contact", ContactForm(prefix="contact"), act)


@bp.post("/clients/<int:customer_id>/recipients")
@login_required
def add_recipient(customer_id: int) -> ResponseReturnValue:
    def act(form: Any) -> str:
        recipient = save_recipient(get_session(), me(), customer_id, _recipient_input(form))
        return f"{recipient.name} added: now add their important dates."

    return _save(customer_id, "recipient", RecipientForm(prefix="recipient"), act)


@bp.post("/clients/<int:customer_id>/recipients/<int:recipient_id>")
@login_required
def edit_recipient(customer_id: int, recipient_id: int) -> ResponseReturnValue:
    def act(form: Any) -> str:
        recipient = save_recipient(get_session(), me(), customer_id, _recipient_input(form), recipient_id)
        return f"{recipient.name} saved."

    prefix = f"r{recipient_id}"
    return _save(customer_id, prefix, RecipientForm(prefix=prefix), act)


@bp.post("/clients/<int:customer_id>/recipients/<int:recipient_id>/dates")
@login_required
def add_date(customer_id: int, recipient_id: int) -> ResponseReturnValue:
    def act(form: Any) -> str:
        save_date(get_session(), me(), customer_id, recipient_id, _date_input(form))
        return "Date added."

    prefix = f"r{recipient_id}-date"
    return _save(customer_id, prefix, DateForm(prefix=prefix), act)


@bp.post("/clients/<int:customer_id>/recipients/<int:recipient_id>/dates/<int:date_id>")
@login_required
def edit_date(customer_id: int, recipient_id: int, date_id: int) -> ResponseReturnValue:
    def act(form: Any) -> str:
        save_date(get_session(), me(), customer_id, recipient_id, _date_input(form), date_id)
        return "Date saved."

    prefix = f"d{date_id}"
    return _save(customer_id, prefix, DateForm(prefix=prefix), act)
