"""Every HTML page carries a CSP that runs only the app's own scripts and forbids framing; every response
says nosniff; HSTS only over TLS."""

from __future__ import annotations

import pytest

from tests.api.helpers import bearer


@pytest.mark.parametrize("path", ["/demo?customer=C1", "/r/not-a-token", "/unsubscribe/not-a-token"])
def test_html_pages_carry_the_security_headers(client, keys, shop, path):
    resp = client.get(path)
    assert resp.mimetype == "text/html", resp.status_code
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in resp.headers, "plain http: no HSTS"


def test_api_responses_are_not_sniffed_and_tls_gets_hsts(client, keys):
    resp = client.get("/v1/bestsellers", headers=bearer(keys["server"]))
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in resp.headers, "JSON is not rendered"
    secure = client.get("/health/live", base_url="https://giftrec.example")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
