"""Signed customer identity: the shop's backend proves to a public widget key which customer is logged in.

A widget key sits in the shop's page source, so anyone can use it. Personal answers (a customer's picks,
events in a customer's name) therefore need, beside the key, a signature of that very customer's id made by
the shop's backend with the key's **identity secret**, the way established widget vendors do it (a "user
hash"): ``HMAC-SHA256(identity_secret, "<expires>:<customer_id>")`` in hex, sent as ``<expires>.<hex>``
(``expires`` in Unix seconds, ``0`` for never; a bare ``<hex>`` means ``0``). The identity secret of a key
is derived from the server's secret key and the key's prefix, so nothing more is stored and every process
agrees; `giftrec keys identity-secret PREFIX` prints it for the shop's backend.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from domain.errors import DomainError

#: The request header (or query parameter ``customer_signature``) that carries the signature.
HEADER = "X-Customer-Signature"
_SALT = "giftrec.customer-identity.v1"
_TOKEN = re.compile(r"^(?:(?P<expires>\d{1,12})\.)?(?P<digest>[0-9a-f]{64})$")


class IdentityError(DomainError):
    """A personal request from a widget without a valid signature of that customer (nothing is done)."""

    field = HEADER

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def identity_secret(server_secret: str, key_prefix: str) -> str:
    """The identity secret of the widget key ``key_prefix`` (hex), for the shop's backend only."""
    if not server_secret:
        raise ValueError("a server secret key is required to derive identity secrets")
    message = f"{_SALT}:{key_prefix}".encode()
    return hmac.new(server_secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_customer(secret: str, customer_id: str, expires: int = 0) -> str:
    """What the shop's backend computes for the logged-in customer (and the demo page for its customer)."""
    digest = hmac.new(secret.encode("utf-8"), f"{expires}:{customer_id}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{digest}"


def verify_customer(secret: str, customer_id: str, signature: str | None, now: float) -> None:
    """Raise :class:`IdentityError` unless ``signature`` is a valid, unexpired one of ``customer_id``.

    Missing or malformed: 401 (send one); expired or made for another customer: 403.
    """
    if not signature:
        raise IdentityError(
            401, f"a widget key needs {HEADER}: the shop's signature of the logged-in customer's id"
        )
    match = _TOKEN.match(signature.strip())
    if match is None:
        raise IdentityError(401, f"{HEADER} must be <expires>.<64 hex digits> or <64 hex digits>")
    expires = int(match["expires"] or 0)
    expected = sign_customer(secret, customer_id, expires).partition(".")[2]
    if not hmac.compare_digest(expected, match["digest"]):
        raise IdentityError(
            403, f"{HEADER} is not a signature of customer {customer_id!r} by this key's shop"
        )
    if expires and expires <= now:
        raise IdentityError(403, f"{HEADER} expired at {expires} (Unix time); sign the customer again")
