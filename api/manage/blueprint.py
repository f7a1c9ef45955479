"""The /manage blueprint itself: its clock, CSRF check, security headers and error pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import Blueprint, Response, current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect

from api.db import get_session
from domain.errors import NotFound
from domain.models._types import utcnow

bp = Blueprint(
    "manage",
    __name__,
    url_prefix="/manage",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
#: Pages, not API: left out of the OpenAPI document (apiflask reads this attribute on every blueprint).
bp.enable_openapi = False  # type: ignore[attr-defined]
csrf = CSRFProtect()


def now() -> dt.datetime:
    """The pages' clock: the real one, or ``services["clock"]`` (tests and demos pin a day)."""
    clock: Callable[[], dt.datetime] = current_app.extensions["giftrec"].services.get("clock", utcnow)
    return clock()


@bp.before_request
def _csrf() -> None:
    """Every form post of these pages carries the session's CSRF token (the JSON API and the email links
    authenticate otherwise and are not checked)."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@bp.after_request
def _remember_cookie(resp: Response) -> Response:
    """Flask-Login's remember-cookie upkeep, for these pages only (see api.manage.register)."""
    updated: Response = current_app.login_manager._update_remember_cookie(resp)  # type: ignore[attr-defined]
    return updated


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src * data:; style-src 'self'; frame-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'",
    )
    return resp


def _error_page(status: int, title: str, message: str) -> ResponseReturnValue:
    get_session().rollback()  # a refused request changes nothing
    return render_template("manage/error.html", title=title, message=message), status


@bp.errorhandler(NotFound)
@bp.errorhandler(404)
def _not_found(_exc: Exception) -> ResponseReturnValue:
    return _error_page(404, "Not found", "There is no such page, or it is not one of your clients'.")


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> ResponseReturnValue:
    return _error_page(
        400,
        "The form could not be accepted",
        f"{exc.description} Nothing was changed: go back, reload the page and try again.",
    )
