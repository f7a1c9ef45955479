"""The web composition root: create_app builds the Flask application, its engine and its services."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from apiflask import APIFlask
from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from api.context import AppContext
from config import Settings, load_settings
from domain.db import make_engine, make_session_factory
from domain.messaging.signing import load_secret_key
from recommender.threads import pin_blas_threads

log = logging.getLogger(__name__)


class LazyCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building the signer for a request that sends no session
    cookie (every API call): it gets the empty session Flask would open."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and (
            "HTTP_COOKIE" not in request.environ or not request.cookies.get(self.get_cookie_name(app))
        ):
            return self.session_class()
        return super().open_session(app, request)


class GiftrecFlask(APIFlask):
    """APIFlask that remembers :meth:`ensure_sync`'s answer per function.

    Flask asks it for every hook and view of every request (apiflask once more per decorated view), and
    each answer is an ``inspect`` walk; the functions asked about are the same few, registered at start.
    """

    SYNC_CACHE_MAX = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            found = self._sync.get(func)
        except TypeError:  # an unhashable callable object
            return super().ensure_sync(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync) < self.SYNC_CACHE_MAX:
                self._sync[func] = found
        return found


def create_app(settings: Settings | None = None) -> APIFlask:
    """Build the Flask application for ``settings`` (default: :func:`config.load_settings`)."""
    settings = settings or load_settings()
    pin_blas_threads()
    app = GiftrecFlask(
        "api",  # the package: its templates, static files and logger name
        title="giftrec API",
        version="1",
        spec_path="/v1/openapi.json",
        docs_path="/v1/docs",
        docs_oauth2_redirect_path=None,  # no OAuth: the keys are API keys
        instance_path=os.path.abspath(settings.server.instance_dir),
    )
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        JSON_SORT_KEYS=False,
        AUTO_404_RESPONSE=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.session_interface = LazyCookieSessions()
    engine = make_engine(settings.database.url, echo=settings.database.echo)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_session_factory(engine))
    app.extensions["giftrec"] = ctx
    _add_serving(ctx)

    from api import auth, db, docs, errors, health, links, openapi, security

    db.init_app(app)
    errors.register_error_handlers(app)
    security.register(app)
    docs.init_app(app)
    openapi.init_app(app)
    app.register_blueprint(health.bp)
    from api import storefront

    storefront.register(app)
    app.register_blueprint(links.bp)
    from api import manage

    manage.register(app)
    from api import metrics, observe

    app.register_blueprint(metrics.bp)
    auth.protect(app, metrics.bp)
    observe.init_app(app)  # last: outside the fast path
    return app


def _add_serving(ctx: AppContext) -> None:
    """The model store and catalog snapshot, built once per process; nothing is read before first use."""
    from domain.serving.recommendations import build_serving

    serving = build_serving(ctx.settings, ctx.sessions)
    ctx.services["serving"] = serving
    ctx.services["model_store"] = serving.store
    ctx.services["catalog"] = serving.catalog
    ctx.readiness_probes["model"] = serving.store.status
    ctx.readiness_probes["mail_queue"] = lambda: _mail_queue_status(ctx)


def _mail_queue_status(ctx: AppContext) -> dict[str, object]:
    from domain.messaging.pause import queue_status

    with ctx.sessions() as session:
        return queue_status(session)
