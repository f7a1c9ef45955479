"""Sign-in and sign-out of the /manage pages, with login throttling per account and per client address."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select

from api.auth import open_storage
from api.db import get_session
from api.manage.blueprint import bp
from api.manage.forms import LoginForm
from config import ApiSettings
from domain.access.users import authenticate, normalize_email
from domain.metrics import RATE_LIMIT_STORAGE_FAILURES
from domain.models import User

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Failed sign-ins allowed per account and per client address before they wait.
PER_ACCOUNT = "5/15 minutes"
PER_ADDRESS = "20/15 minutes"
#: Roles that may sign in to these pages.
ROLES = ("admin", "manager")


def _password_mark(user: User) -> str:
    """A short digest of the user's password hash: it changes with every new password."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


class Account(UserMixin):
    """The signed-in user for Flask-Login, wrapping the request's :class:`User` row.

    The id kept in the session (and the remember cookie) is ``"<user id>.<password mark>"``: a new
    password (a reset) ends every session signed in with the old one.
    """

    def __init__(self, user: User) -> None:
        self.user = user
        self.id = user.id

    def get_id(self) -> str:
        return f"{self.user.id}.{_password_mark(self.user)}"

    @property
    def is_active(self) -> bool:
        return bool(self.user.is_active)


def load_account(session_id: str) -> Account | None:
    user_id, _, mark = session_id.partition(".")
    if not user_id.isdigit() or not mark:
        return None
    user = get_session().get(User, int(user_id))
    if user is None or not user.is_active or user.role not in ROLES:
        return None
    if not hmac.compare_digest(mark, _password_mark(user)):
        return None  # signed in with a password that has changed since
    return Account(user)


def me() -> User:
    """The signed-in user's row (the views are all ``login_required``)."""
    user: User = current_user.user
    return user


class LoginThrottle:
    """Failed sign-ins counted in a moving window per account and per address (limits' storage).

    If the storage fails (a shared Redis is down), failed sign-ins are counted in this process's memory
    until it answers again (what Flask-Limiter calls ``in_memory_fallback``), rather than letting every
    sign-in through: the throttle is what stops password guessing, and an outage must not switch it off.
    The failure is logged once and counted (``giftrec_rate_limit_storage_failures_total{limit="sign_in"}``);
    the storage is asked again every ``retry_seconds``.
    """

    retry_seconds = 5.0

    def __init__(self, storage_uri: str, timeout: float = ApiSettings.rate_limit_storage_timeout) -> None:
        self.shared = MovingWindowRateLimiter(open_storage(storage_uri, timeout))
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.account, self.address = parse(PER_ACCOUNT), parse(PER_ADDRESS)
        self._retry_at: float | None = None  # monotonic time to ask the failing storage again

    def _counted(self, use: Callable[[MovingWindowRateLimiter], T]) -> T:
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return use(self.local)
        try:
            found = use(self.shared)
        except Exception:  # noqa: BLE001 - any storage failure: count in this process instead
            RATE_LIMIT_STORAGE_FAILURES.labels("sign_in").inc()
            if self._retry_at is None:
                log.exception(
                    "sign-in throttle storage failed; failed sign-ins are counted in this process until "
                    "it recovers"
                )
            self._retry_at = time.monotonic() + self.retry_seconds
            return use(self.local)
        if self._retry_at is not None:
            self._retry_at = None
            log.warning("sign-in throttle storage recovered")
        return found

    def wait_seconds(self, email: str, address: str) -> int:
        """0 when a sign-in may be tried, else seconds until it may."""

        def waits(limiter: MovingWindowRateLimiter) -> int:
            found = []
            for item, key in ((self.account, email), (self.address, address)):
                if not limiter.test(item, "login", key):
                    reset, _ = limiter.get_window_stats(item, "login", key)
                    found.append(max(1, math.ceil(reset - time.time())))
            return max(found, default=0)

        return self._counted(waits)

    def failed(self, email: str, address: str) -> None:
        def hit(limiter: MovingWindowRateLimiter) -> None:
            limiter.hit(self.account, "login", email)
            limiter.hit(self.address, "login", address)

        self._counted(hit)


def init_throttle(app: Flask) -> None:
    ctx = app.extensions["giftrec"]
    api = ctx.settings.api
    ctx.services["login_throttle"] = LoginThrottle(api.rate_limit_storage, api.rate_limit_storage_timeout)


def _throttle() -> LoginThrottle:
    throttle: LoginThrottle = current_app.extensions["giftrec"].services["login_throttle"]
    return throttle


def _safe_next(target: str | None) -> str:
    """Only a path of these pages: never an open redirect to another site."""
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and parts.path.startswith("/manage/"):
        return target
    return url_for("manage.today")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm(next=request.args.get("next", ""))
    status = 200
    if form.validate_on_submit():
        email = normalize_email(form.email.data or "")
        address = request.remote_addr or "unknown"
        wait = _throttle().wait_seconds(email, address)
        if wait:
            minutes = math.ceil(wait / 60)
            form.password.errors = [f"Too many failed sign-ins: try again in {minutes} minute(s)."]
            status = 429
        else:
            user = authenticate(get_session(), email, form.password.data or "")
            if user is None or user.role not in ROLES:
                _throttle().failed(email, address)
                form.password.errors = ["Wrong email or password."]
                status = 401
            else:
                session.clear()  # a fresh session for the signed-in user
                login_user(Account(user))
                session.permanent = True
                return redirect(_safe_next(form.next.data))
    elif request.method == "POST":
        status = 422
    headers = {"Retry-After": "60"} if status == 429 else {}
    return render_template("manage/login.html", form=form), status, headers


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    logout_user()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("manage.login"))


def banner_lines(base: str) -> list[str]:
    """`giftrec serve` prints where the pages are and the demo managers' logins (generated users only)."""
    from domain.demo.seed import DEMO_ADMIN, DEMO_MANAGERS, DEMO_PASSWORD

    lines = [f"  account managers  {base}/manage"]
    sessions: Callable[[], object] = current_app.extensions["giftrec"].sessions
    with sessions() as s:  # type: ignore[attr-defined]
        generated = set(
            s.scalars(select(User.email).where(User.is_generated.is_(True), User.is_active.is_(True)))
        )
    for email, _name in (*DEMO_MANAGERS, DEMO_ADMIN):
        if email in generated:
            role = "admin" if email == DEMO_ADMIN[0] else "manager"
            lines.append(f"                    demo {role} {email}  password: {DEMO_PASSWORD}")
    return lines
