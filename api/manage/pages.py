"""The Today page (what needs me today) and the client page (profile, people, dates, orders, spend)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from api.db import get_session
from api.manage.accounts import me
from api.manage.blueprint import bp, now
from api.manage.charts import spend_chart
from api.manage.forms import StopRecipientForm
from api.next_purchase import next_purchase_service
from domain.errors import DomainError
from domain.review.clients import client_view, stop_recipient
from domain.review.today import today_for
from domain.serving.next_purchase import next_purchase_for


@bp.get("/")
@login_required
def today() -> ResponseReturnValue:
    settings = current_app.extensions["giftrec"].settings
    page = today_for(get_session(), me(), settings, now())
    return render_template("manage/today.html", today=page, cutoff_days=settings.reminders.vip_cutoff_days)


def _next_purchases(external_id: str) -> object:
    """The next likely purchases, or None when the model cannot tell (no history, nothing trained)."""
    try:
        return next_purchase_for(next_purchase_service(), external_id, 5)
    except (DomainError, LookupError, ValueError):
        return None


def _client_page(
    customer_id: int, form: StopRecipientForm | None = None, status: int = 200
) -> ResponseReturnValue:
    settings = current_app.extensions["giftrec"].settings
    view = client_view(get_session(), me(), settings, customer_id, now())
    return (
        render_template(
            "manage/client.html",
            client=view,
            chart=spend_chart(view.spend_by_month),
            next_purchase=_next_purchases(view.customer.external_id),
            form=form or StopRecipientForm(),
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
        return _client_page(customer_id, form, 422)
    recipient = stop_recipient(get_session(), me(), recipient_id, form.reason.data or "", now())
    if recipient.customer_id != customer_id:  # a recipient of another of my clients: a wrong URL
        get_session().rollback()
        return _client_page(customer_id, form, 404)
    flash(f"Every reminder for {recipient.name} is stopped.")
    return redirect(url_for("manage.client", customer_id=customer_id))
