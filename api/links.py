"""Blueprint for the links in emails: /r/<token> (click, redirect), /stop/<token>, /unsubscribe/<token>.

Stop and unsubscribe ask on GET and act on POST, so that mail scanners that fetch every link cannot stop a
reminder by themselves; POST /unsubscribe/<token> is also the RFC 8058 one-click target of List-Unsubscribe.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from api.db import get_session
from domain.catalog.products import is_web_url
from domain.messaging.links import customer_for_unsubscribe as _customer
from domain.messaging.links import (
    describe_stop,
    record_click,
    stop_reminder,
    unsubscribe,
)
from domain.messaging.signing import InvalidLink, LinkSigner
from domain.models._types import utcnow
from domain.reminders.queueing import choose_locale

bp = Blueprint("links", __name__, template_folder="templates")

TEXT = {
    "en": {
        "invalid": "This link is not valid. It may have been copied incompletely.",
        "product": "The product page is not available any more.",
        "stop_ask": "Stop reminders for {label}{who}? You will not hear from us about this date again.",
        "stop_button": "Stop this reminder",
        "stop_done": "Done: we will not remind you of {label}{who} again.",
        "unsub_ask": "Unsubscribe {email} from all our emails?",
        "unsub_button": "Unsubscribe",
        "unsub_done": "Done: {email} will receive no more emails from us.",
        "for": " for {name}",
    },
    "ru": {
        "invalid": "Эта ссылка недействительна. Возможно, она скопирована не полностью.",
        "product": "Страница товара больше недоступна.",
        "stop_ask": "Отключить напоминания: {label}{who}? Об этой дате мы больше не напомним.",
        "stop_button": "Отключить напоминание",
        "stop_done": "Готово: мы больше не напомним вам: {label}{who}.",
        "unsub_ask": "Отписать {email} от всех наших писем?",
        "unsub_button": "Отписаться",
        "unsub_done": "Готово: на {email} больше не придёт ни одного письма.",
        "for": " ({name})",
    },
}


def _signer() -> LinkSigner:
    ctx = current_app.extensions["giftrec"]
    if "link_signer" not in ctx.services:
        secret = current_app.config["SECRET_KEY"]
        ctx.services["link_signer"] = LinkSigner(secret, ctx.settings.server.base_url)
    signer: LinkSigner = ctx.services["link_signer"]
    return signer


def _page(locale: str, message: str, status: int = 200, button: str | None = None) -> Response:
    html = render_template("links/page.html", locale=locale, message=message, button=button)
    return Response(html, status=status, mimetype="text/html")


def _invalid() -> Response:
    return _page("en", TEXT["en"]["invalid"], 404)


@bp.get("/r/<token>")
def click(token: str) -> BaseResponse:
    try:
        target = record_click(get_session(), _signer(), token, utcnow())
    except InvalidLink:
        return _invalid()
    if target.url and is_web_url(target.url):  # a catalog imported before the check may hold anything
        return redirect(target.url, code=302)
    locale = choose_locale(target.locale)
    return _page(locale, f"{target.product_title}: {TEXT[locale]['product']}", 404)


@bp.route("/stop/<token>", methods=["GET", "POST"])
def stop(token: str) -> Response:
    session = get_session()
    try:
        if request.method == "POST":
            target = stop_reminder(session, _signer(), token, utcnow(), request.form.get("reason", ""))
        else:
            target = describe_stop(session, _signer(), token)
    except InvalidLink:
        return _invalid()
    locale = choose_locale(target.locale)
    text = TEXT[locale]
    who = text["for"].format(name=target.recipient_name) if target.recipient_name else ""
    if target.is_stopped:
        return _page(locale, text["stop_done"].format(label=target.label, who=who))
    return _page(locale, text["stop_ask"].format(label=target.label, who=who), button=text["stop_button"])


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe_page(token: str) -> Response:
    session = get_session()
    try:
        if request.method == "POST":
            customer = unsubscribe(session, _signer(), token, utcnow())
        else:
            customer = _customer(session, _signer(), token)
    except InvalidLink:
        return _invalid()
    locale = choose_locale(customer.locale)
    text = TEXT[locale]
    email = customer.email or ""
    if customer.unsubscribed_at is not None:
        return _page(locale, text["unsub_done"].format(email=email))
    return _page(locale, text["unsub_ask"].format(email=email), button=text["unsub_button"])
