"""Signed links: the signer made once per purpose signs exactly as itsdangerous' own serializer."""

from __future__ import annotations

from itsdangerous import URLSafeSerializer

from domain.messaging.signing import LinkSigner


def test_links_are_signed_as_itsdangerous_signs_them_and_load_both_ways():
    """The key is derived and the HMAC keyed once per purpose, not once per link; the tokens must stay
    byte for byte what `URLSafeSerializer.dumps` makes, so links already in sent emails keep working,
    compressed payloads included."""
    signer = LinkSigner("s3cret", "https://giftrec.example")
    payloads = [{"c": c, "s": 500_000 + c, "p": 1 + c % 97} for c in range(0, 5000, 37)]
    payloads += [{"c": 12345, "s": 12345, "p": 12345}, {"c": 7, "o": "birthday:" + "x" * 200}]
    for purpose in LinkSigner.PURPOSES:
        plain = URLSafeSerializer("s3cret", salt=f"giftrec.link.{purpose}")
        for payload in payloads:
            token = signer.sign(purpose, payload)
            assert token == plain.dumps(payload)
            assert signer.load(purpose, token) == payload == plain.loads(token)
    assert any(signer.sign("stop", p).startswith(".") for p in payloads)  # a compressed one among them
