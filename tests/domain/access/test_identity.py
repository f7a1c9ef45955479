"""Signed customer identity: only the shop's backend can sign, for one customer, until it expires."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from domain.access.identity import IdentityError, identity_secret, sign_customer, verify_customer

NOW = 1_800_000_000.0


def test_a_signature_opens_that_customer_only():
    secret = identity_secret("server-secret", "gr_12345678")
    verify_customer(secret, "12748", sign_customer(secret, "12748"), NOW)
    with pytest.raises(IdentityError) as other:
        verify_customer(secret, "12749", sign_customer(secret, "12748"), NOW)
    assert other.value.status == 403 and "12749" in other.value.message


def test_the_bare_hex_form_is_what_a_backend_computes_with_its_own_hmac():
    """The documented snippet: hex HMAC-SHA256 of "0:<customer_id>" under the identity secret."""
    secret = identity_secret("server-secret", "gr_12345678")
    digest = hmac.new(secret.encode(), b"0:12748", hashlib.sha256).hexdigest()
    verify_customer(secret, "12748", digest, NOW)
    verify_customer(secret, "12748", f"0.{digest}", NOW)


def test_expired_missing_malformed_and_foreign_signatures_are_refused():
    secret = identity_secret("server-secret", "gr_12345678")
    cases = {
        None: 401,
        "": 401,
        "not-a-signature": 401,
        "12.abc": 401,
        sign_customer(secret, "12748", expires=int(NOW) - 1): 403,
        sign_customer(identity_secret("server-secret", "gr_87654321"), "12748"): 403,  # another key's
        sign_customer(identity_secret("another-server", "gr_12345678"), "12748"): 403,
    }
    for signature, status in cases.items():
        with pytest.raises(IdentityError) as refused:
            verify_customer(secret, "12748", signature, NOW)
        assert refused.value.status == status, signature
        assert refused.value.field == "X-Customer-Signature"
    verify_customer(secret, "12748", sign_customer(secret, "12748", expires=int(NOW) + 60), NOW)


def test_an_expiry_cannot_be_moved_without_the_secret():
    secret = identity_secret("server-secret", "gr_12345678")
    expires, digest = sign_customer(secret, "12748", expires=int(NOW) + 60).split(".")
    with pytest.raises(IdentityError):
        verify_customer(secret, "12748", f"{int(expires) + 86400}.{digest}", NOW)
