"""API keys: the secret is shown once; stored are a prefix and a SHA-256 hash, compared in constant time."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.errors import Conflict, InvalidInput, NotFound
from domain.models import API_KEY_SCOPES, ApiKey, AuditLog
from domain.models._types import utcnow

#: Every key starts with this marker, so that a leaked key is recognisable (secret scanners, logs).
KEY_MARKER = "gr_"
#: Length of the public part of a key: the marker and 8 hex digits, e.g. ``gr_1a2b3c4d``.
PREFIX_LENGTH = len(KEY_MARKER) + 8


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a request needs to know about a verified key (no secret, no ORM state)."""

    id: int
    prefix: str
    scope: str
    name: str
    allowed_origins: tuple[str, ...]


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def key_prefix(secret: str) -> str | None:
    """The public part of a presented key, or None when it cannot be one of ours."""
    if not secret.startswith(KEY_MARKER) or len(secret) <= PREFIX_LENGTH + 1:
        return None
    if secret[PREFIX_LENGTH] != ".":
        return None
    return secret[:PREFIX_LENGTH]


def normalize_origin(origin: str, field: str = "origin") -> str:
    """``https://Shop.example:443/path`` -> ``https://shop.example``: what a browser sends as Origin."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(field, f"{origin!r} is not an http(s) origin such as https://shop.example")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(field, f"{origin!r} has a bad port") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def _check(scope: str, origins: Sequence[str]) -> list[str]:
    if scope not in API_KEY_SCOPES:
        raise InvalidInput("scope", f"must be one of {', '.join(API_KEY_SCOPES)}")
    normalized = [normalize_origin(o) for o in origins]
    if normalized and scope != "widget":
        raise InvalidInput("origin", "only widget keys are bound to origins")
    return sorted(set(normalized))


def _info(key: ApiKey) -> KeyInfo:
    return KeyInfo(key.id, key.prefix, key.scope, key.name, tuple(key.allowed_origins or ()))


def _store(session: Session, secret: str, scope: str, name: str, origins: list[str], actor: str) -> KeyInfo:
    prefix = key_prefix(secret)
    assert prefix is not None
    key = ApiKey(prefix=prefix, key_hash=hash_key(secret), scope=scope, name=name, allowed_origins=origins)
    session.add(key)
    session.flush()
    session.add(
        AuditLog(
            actor=actor,
            action="api_key.create",
            entity_type="api_key",
            entity_id=prefix,
            details={"scope": scope, "name": name, "origins": origins},
        )
    )
    return _info(key)


def create_key(
    session: Session,
    scope: str,
    *,
    name: str = "",
    origins: Sequence[str] = (),
    actor: str = "cli",
) -> tuple[KeyInfo, str]:
    """Create a key; returns its description and the secret, which is not stored and cannot be shown again."""
    normalized = _check(scope, origins)
    while True:
        prefix = KEY_MARKER + secrets.token_hex(4)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    secret = f"{prefix}.{secrets.token_urlsafe(32)}"
    return _store(session, secret, scope, name, normalized, actor), secret


def register_key(
    session: Session,
    secret: str,
    scope: str,
    *,
    name: str = "",
    origins: Sequence[str] = (),
    actor: str = "cli",
) -> KeyInfo:
    """Store a key whose secret the operator chose (e.g. ``GIFTREC_DEMO_API_KEY``); a no-op if it exists.

    The secret must look like a generated one (``gr_`` + 8 hex digits + ``.`` + at least 20 characters).
    """
    prefix = key_prefix(secret)
    if (
        prefix is None
        or len(secret) < PREFIX_LENGTH + 21
        or not all(c in "0123456789abcdef" for c in prefix[len(KEY_MARKER) :])
    ):
        raise InvalidInput("key", "must look like gr_<8 hex digits>.<at least 20 characters>")
    normalized = _check(scope, origins)
    existing = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if existing is not None:
        if not hmac.compare_digest(existing.key_hash, hash_key(secret)):
            raise Conflict(f"another key already uses the prefix {prefix}")
        if existing.revoked_at is not None:
            raise Conflict(f"key {prefix} was revoked")
        if existing.scope != scope or sorted(existing.allowed_origins or []) != normalized:
            existing.scope = scope
            existing.allowed_origins = normalized
        return _info(existing)
    return _store(session, secret, scope, name, normalized, actor)


def verify_key(session: Session, secret: str) -> KeyInfo | None:
    """The key a request presented, or None if it is unknown, revoked or wrong.

    The hash comparison runs in constant time; a well-formed key with an unknown prefix is compared
    against a dummy hash so that timing does not tell which prefixes exist.
    """
    prefix = key_prefix(secret)
    if prefix is None:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    expected = key.key_hash if key is not None else "0" * 64
    matches = hmac.compare_digest(expected, hash_key(secret))
    if key is None or not matches or key.revoked_at is not None:
        return None
    key.last_used_at = utcnow()
    return _info(key)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A live key as a serving process keeps it: what requests need, and the hash to check a secret."""

    info: KeyInfo
    key_hash: str


def key_table(session: Session) -> dict[str, KeyEntry]:
    """Every key not revoked, by prefix: one query, for a process to verify secrets without another."""
    rows = session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))
    return {k.prefix: KeyEntry(_info(k), k.key_hash) for k in rows}


def check_secret(entry: KeyEntry | None, secret: str) -> KeyInfo | None:
    """The key ``secret`` opens, given the table's entry for its prefix (None: no such key).

    The comparison runs in constant time, against a dummy hash when the prefix is unknown, so that timing
    does not tell which prefixes exist.
    """
    expected = entry.key_hash if entry is not None else "0" * 64
    matches = hmac.compare_digest(expected, hash_key(secret))
    return entry.info if entry is not None and matches else None


def mark_used(session: Session, key_ids: Sequence[int], at: dt.datetime) -> None:
    """Record that these keys were used (``last_used_at``), in one statement."""
    if key_ids:
        session.execute(update(ApiKey).where(ApiKey.id.in_(list(key_ids))).values(last_used_at=at))


def revoke_key(session: Session, prefix: str, *, actor: str = "cli") -> KeyInfo:
    """Revoke the key with ``prefix`` (the part before the dot); revoking twice is harmless."""
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix.strip()))
    if key is None:
        raise NotFound("API key", prefix)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(AuditLog(actor=actor, action="api_key.revoke", entity_type="api_key", entity_id=prefix))
    return _info(key)


@dataclass(frozen=True, slots=True)
class KeyListing:
    prefix: str
    scope: str
    name: str
    allowed_origins: tuple[str, ...]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


def list_keys(session: Session, *, include_revoked: bool = True) -> list[KeyListing]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [
        KeyListing(
            k.prefix,
            k.scope,
            k.name,
            tuple(k.allowed_origins or ()),
            k.created_at.isoformat(timespec="seconds"),
            k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else None,
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else None,
        )
        for k in session.scalars(query)
    ]
