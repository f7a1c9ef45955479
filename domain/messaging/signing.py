"""Signed links in emails: HMAC tokens, one salt per purpose, so that they cannot be forged or re-purposed."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode, want_bytes

from config import Settings
from domain.errors import DomainError


class InvalidLink(DomainError):
    """A token that was not signed by us, was altered, or names something that is gone."""

    status = 404

    def __init__(self) -> None:
        super().__init__("this link is not valid")


def load_secret_key(settings: Settings) -> str:
    """``server.secret_key``, else the key kept in the instance folder (made once, shared)."""
    if settings.server.secret_key:
        return settings.server.secret_key
    path = Path(settings.server.instance_dir) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_text().strip()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


class _KeyedOnceSigner(Signer):
    """itsdangerous' signer (HMAC-SHA1, key derived from the secret and the salt) with the key derived and
    the HMAC keyed once, not for every link: the same signatures for less work (an email signs five or
    six links, a nightly run tens of thousands of emails)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key = super().derive_key()
        self._mac = hmac.new(self._key, digestmod=self.digest_method)

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._key if secret_key is None else super().derive_key(secret_key)

    def get_signature(self, value: str | bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


class _Serializer(URLSafeSerializer):
    """The URL-safe serializer with one signer for its salt, made once (itsdangerous makes one per token)."""

    def __init__(self, secret_key: str, salt: str) -> None:
        super().__init__(secret_key, salt=salt, signer=_KeyedOnceSigner)
        self._signer = super().make_signer(salt)

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        return self._signer if salt is None or salt == self.salt else super().make_signer(salt)


class LinkSigner:
    """HMAC-signed tokens, one salt per purpose so that a click token never works as an unsubscribe one."""

    PURPOSES = ("click", "stop", "unsubscribe")

    def __init__(self, secret_key: str, base_url: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to sign links")
        self.base_url = base_url.rstrip("/")
        self._serializers = {p: _Serializer(secret_key, salt=f"giftrec.link.{p}") for p in self.PURPOSES}

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        return cls(load_secret_key(settings), settings.server.base_url)

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        return str(self._serializers[purpose].dumps(payload))

    def load(self, purpose: str, token: str) -> dict[str, Any]:
        """The payload of a token we signed for ``purpose``; :class:`InvalidLink` for anything else."""
        try:
            payload = self._serializers[purpose].loads(token)
        except BadSignature:
            raise InvalidLink() from None
        if not isinstance(payload, dict):
            raise InvalidLink()
        return payload

    def click_url(self, *, customer_id: int, selection_id: int, product_id: int) -> str:
        token = self.sign("click", {"c": customer_id, "s": selection_id, "p": product_id})
        return f"{self.base_url}/r/{token}"

    def stop_url(self, *, customer_id: int, occasion_key: str) -> str:
        return f"{self.base_url}/stop/{self.sign('stop', {'c': customer_id, 'o': occasion_key})}"

    def unsubscribe_url(self, *, customer_id: int) -> str:
        return f"{self.base_url}/unsubscribe/{self.sign('unsubscribe', {'c': customer_id})}"


def payload_int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidLink()
    return value
