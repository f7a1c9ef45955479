"""Serves the embeddable /widget.js and a demo storefront page (/demo) that shows it."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask.typing import ResponseReturnValue

from api.db import get_session
from config import Settings
from domain.access.api_keys import key_prefix
from domain.access.identity import identity_secret, sign_customer
from domain.demo.seed import demo_shopper

bp = Blueprint("widget", __name__, template_folder="templates")
STATIC = Path(__file__).resolve().parent / "static"


def demo_key_path(settings: Settings) -> Path:
    return Path(settings.server.instance_dir) / "demo_api_key"


def demo_key(settings: Settings) -> str:
    """The demo storefront's widget key: ``demo.api_key``, else the one `giftrec keys demo` kept."""
    if settings.demo.api_key:
        return settings.demo.api_key
    path = demo_key_path(settings)
    return path.read_text().strip() if path.exists() else ""


@bp.get("/widget.js")
def widget_js() -> ResponseReturnValue:
    resp = Response((STATIC / "widget.js").read_bytes(), mimetype="text/javascript")
    resp.cache_control.public = True
    resp.cache_control.max_age = 300
    resp.headers["Access-Control-Allow-Origin"] = "*"  # a public script, loaded from the shop's pages
    resp.add_etag()
    return resp.make_conditional(request)


def _sign_as_the_shop(key: str, customer: str | None) -> str:
    """What the shop's backend puts in its page for the logged-in customer (docs/api.md): the demo page
    stands in for that backend, so it signs with the key's identity secret."""
    prefix = key_prefix(key) if key else None
    if not customer or prefix is None:
        return ""
    return sign_customer(identity_secret(str(current_app.secret_key), prefix), customer)


@bp.get("/demo")
def demo() -> ResponseReturnValue:
    """A stand-in storefront: ``?key=&customer=&product=`` (defaults: the demo key, the busiest customer).

    Only in demo mode (``demo.enabled``, set by `make run`): it names a real customer of the shop."""
    settings = current_app.extensions["giftrec"].settings
    if not settings.demo.enabled:
        abort(404)
    key = request.args.get("key") or demo_key(settings)
    customer = request.args.get("customer")
    product = request.args.get("product")
    if not customer and not product:
        customer, product = demo_shopper(get_session())
    return render_template(
        "widget/demo.html",
        key=key,
        customer=customer,
        signature=_sign_as_the_shop(key, customer),
        product=product,
        count=request.args.get("count", "8"),
        origin=request.host_url.rstrip("/"),
    )
