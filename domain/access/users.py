"""Users of the review pages (account managers, admins, viewers): creation, listing, sign-in."""

from __future__ import annotations

import re
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from domain.errors import Conflict, InvalidInput, NotFound
from domain.models import AuditLog, User
from domain.models.people import USER_ROLES

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# Deliberately simple: one "@", no spaces, a dot in the domain. Deliverability is the mail server's job.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


@cache
def _dummy_hash() -> str:
    """Checked when the email is unknown, so that a wrong email costs as long as a wrong password."""
    return generate_password_hash("giftrec-no-such-user")


def normalize_email(email: str) -> str:
    """Trimmed and lower-cased: user emails are unique without regard to case."""
    return email.strip().lower()


def create_user(
    session: Session,
    email: str,
    name: str,
    password: str,
    role: str = "manager",
    *,
    is_generated: bool = False,
    by: User | None = None,
) -> User:
    """Create a user; only a salted hash of ``password`` is stored. Created ``by`` an admin on the pages,
    the audit log names them.

    Raises :class:`InvalidInput` naming ``email``, ``name``, ``role`` or ``password``, and
    :class:`Conflict` when a user with this email exists.
    """
    email = normalize_email(email)
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput("email", "is not an email address")
    name = name.strip()
    if not name:
        raise InvalidInput("name", "must not be empty")
    if len(name) > 200:
        raise InvalidInput("name", "is longer than 200 characters")
    if role not in USER_ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(USER_ROLES)}")
    _check_password(password)
    if find_user(session, email) is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(
        email=email,
        name=name,
        password_hash=generate_password_hash(password),
        role=role,
        is_active=True,
        is_generated=is_generated,
    )
    try:
        # A savepoint: a concurrent insert of the same email fails here without undoing the caller's work.
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise Conflict(f"a user with email {email} already exists") from None
    if by is not None:
        _audit(session, by, "user.created", user, role=role)
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput("password", f"must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("password", f"must have at most {MAX_PASSWORD_LENGTH} characters")


def _audit(session: Session, by: User, action: str, user: User, **details: object) -> None:
    session.add(AuditLog.by_user(by, action, "user", user.id, email=user.email, **details))
    session.flush()


def get_user(session: Session, user_id: int) -> User:
    """The user with this id; NotFound when there is none."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


def set_active(session: Session, user_id: int, active: bool, *, by: User) -> User:
    """Disable (no sign-in; a signed-in session ends at its next request) or enable a user. Nobody
    disables themselves: an admin cannot lock the last door behind them."""
    user = get_user(session, user_id)
    if user.id == by.id and not active:
        raise InvalidInput("is_active", "you cannot disable your own account")
    if bool(user.is_active) == active:
        return user
    user.is_active = active
    _audit(session, by, "user.enabled" if active else "user.disabled", user)
    return user


def reset_password(session: Session, user_id: int, password: str, *, by: User) -> User:
    """Set a new password (stored as a salted hash only); InvalidInput naming ``password``."""
    _check_password(password)
    user = get_user(session, user_id)
    user.password_hash = generate_password_hash(password)
    _audit(session, by, "user.password_reset", user)
    return user


def find_user(session: Session, email: str) -> User | None:
    """The user with this email (any case), or None."""
    return session.scalar(select(User).where(func.lower(User.email) == normalize_email(email)))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user whose email and password match, else None (never says which part was wrong)."""
    user = find_user(session, email)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.is_active:
        return None
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by email."""
    return list(session.scalars(select(User).order_by(User.email)))
