"""The account managers' pages under /manage: server-rendered, progressive enhancement, no SPA.

Flask-Login sessions over the users' hashed passwords, Flask-WTF CSRF tokens on every form, secure cookie
flags, login throttling per account and per address. Modules: blueprint (the blueprint, its clock and
error pages), accounts (sign-in, throttle), pages (Today, the client page and its forms), review (a
selection), batch (batch approval), admin (users, client assignments, the campaign report).
"""

from __future__ import annotations

import datetime as dt

from flask import Flask
from flask_login import LoginManager

from api.manage import accounts, admin, batch, pages, review
from api.manage.blueprint import bp, csrf

__all__ = ["register"]


def register(app: Flask) -> None:
    """The blueprint, sign-in, CSRF, secure cookie flags, and the /manage line of `giftrec serve`."""
    ctx = app.extensions["giftrec"]
    secure = ctx.settings.server.base_url.startswith("https://")
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by this blueprint only: see _csrf
        WTF_CSRF_TIME_LIMIT=8 * 3600,  # a working day on one page
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
    )
    csrf.init_app(app)
    # With WTF_CSRF_CHECK_DEFAULT off, Flask-WTF's app-wide hook only reads the config and returns, yet
    # every request of the app (the API's included) paid for it; this blueprint's own hook checks its posts.
    hooks = app.before_request_funcs.get(None, [])
    hooks[:] = [hook for hook in hooks if getattr(hook, "__name__", "") != "csrf_protect"]
    login = LoginManager()
    login.login_view = "manage.login"
    login.login_message = "Please sign in to see this page."
    login.session_protection = "basic"
    login.user_loader(accounts.load_account)
    login.init_app(app)
    # Flask-Login's remember-cookie hook reads the session after every request of the app, which would make
    # every API response vary on Cookie; only these pages have sessions, so it runs for them alone.
    # (blueprint._remember_cookie calls it there).
    app.after_request_funcs[None].remove(login._update_remember_cookie)
    accounts.init_throttle(app)
    app.register_blueprint(bp)
    ctx.services.setdefault("banner_hooks", []).append(accounts.banner_lines)


_ROUTES = (pages, review, batch, admin)  # imported for the routes they add to the blueprint
