"""Signing in and out of /manage: hashed passwords, sessions, throttling, cookie flags, safe redirects."""

from __future__ import annotations

import dataclasses

from api import create_app
from tests.api.manage.conftest import PASSWORD, sign_in, token
from tests.redis_server import app_sharing


def test_pages_need_a_signed_in_user(client, people):
    resp = client.get("/manage/")
    assert resp.status_code == 302 and "/manage/login" in resp.headers["Location"]


def test_a_manager_signs_in_lands_on_today_and_signs_out(client, people):
    resp = sign_in(client)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/manage/")
    assert "Anna Manager" in client.get("/manage/").text
    out = client.post("/manage/logout", data={"csrf_token": token(client.get("/manage/").text)})
    assert out.status_code == 302
    assert client.get("/manage/").status_code == 302


def test_a_wrong_password_is_refused_next_to_the_field(client, people):
    resp = sign_in(client, password="wrong password")
    assert resp.status_code == 401
    assert 'id="password-error"' in resp.text and "Wrong email or password." in resp.text
    assert client.get("/manage/").status_code == 302


def test_wrong_passwords_are_throttled_per_account(client, people):
    for _ in range(5):
        assert sign_in(client, password="guess").status_code == 401
    resp = sign_in(client)  # the right password now waits too
    assert resp.status_code == 429 and "Too many failed sign-ins" in resp.text
    assert resp.headers["Retry-After"]
    assert client.get("/manage/").status_code == 302
    assert sign_in(client, "bruno@example.com").status_code == 302  # another account is not held back


def test_wrong_passwords_are_throttled_per_address(client, people):
    for n in range(20):
        assert sign_in(client, f"nobody{n}@example.com", "guess").status_code == 401
    assert sign_in(client).status_code == 429


def test_the_session_cookie_is_http_only_and_same_site(client, people):
    resp = sign_in(client)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_cookies_are_secure_behind_https(settings, sessions):
    https = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, base_url="https://x.example")
    )
    app = create_app(https)
    try:
        assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
    finally:
        app.extensions["giftrec"].close()


def test_sign_in_never_redirects_off_site(client, people):
    page = client.get("/manage/login?next=https://evil.example/")
    resp = client.post(
        "/manage/login",
        data={
            "csrf_token": token(page.text),
            "email": "anna@example.com",
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert resp.headers["Location"].endswith("/manage/")


def test_serve_prints_the_manage_url_and_the_demo_logins(app, people):
    from domain.db import session_scope
    from domain.demo.seed import DEMO_ADMIN, DEMO_MANAGERS, DEMO_PASSWORD, seed_demo

    with session_scope(app.extensions["giftrec"].sessions) as s:
        seed_demo(s)
    with app.app_context():
        lines = [
            line for hook in app.extensions["giftrec"].services["banner_hooks"] for line in hook("http://h:1")
        ]
    assert ["account", "managers", "http://h:1/manage"] in [line.split() for line in lines]
    for email, _ in DEMO_MANAGERS:
        assert any(f"demo manager {email}" in line and DEMO_PASSWORD in line for line in lines)
    assert any(f"demo admin {DEMO_ADMIN[0]}" in line and DEMO_PASSWORD in line for line in lines)


def _store_failures(limit: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("giftrec_rate_limit_storage_failures_total", {"limit": limit}) or 0.0


def test_while_redis_is_down_failed_sign_ins_are_throttled_in_the_process(
    settings, sessions, people, redis_server, caplog
):
    """Regression: with Redis (the shared throttle's storage) down, a sign-in answered 500. It now counts
    failed sign-ins in the web process until Redis is back, rather than failing open (that would give a
    password guesser an unthrottled window exactly while Redis is down); logged once, counted in /metrics."""
    app = app_sharing(settings, redis_server)
    try:
        # Ask Redis on every sign-in (not every 5 s), so that the first one after it is back uses it.
        app.extensions["giftrec"].services["login_throttle"].retry_seconds = 0.0
        client = app.test_client()
        assert sign_in(client, password="guess").status_code == 401  # counted in Redis
        before = _store_failures("sign_in")
        redis_server.stop()
        assert client.get("/manage/login").status_code == 200
        with caplog.at_level("INFO", logger="api.manage.accounts"):
            answers = [sign_in(client, password="guess").status_code for _ in range(5)]
            assert answers == [401] * 5  # this process's own count starts while Redis is down
            assert sign_in(client).status_code == 429  # the right password waits too
            assert sign_in(client, "bruno@example.com").status_code == 302  # other accounts do not
            errors = [r for r in caplog.records if r.levelname == "ERROR"]
            assert [r.getMessage() for r in errors] == [
                "sign-in throttle storage failed; failed sign-ins are counted in this process until it "
                "recovers"
            ]
            # asked twice per failed sign-in (may it be tried? count it), once per other: 5 * 2 + 2
            assert _store_failures("sign_in") == before + 12

            redis_server.start()  # a new, empty Redis: the shared count starts again from zero
            assert sign_in(client).status_code == 302
            assert "sign-in throttle storage recovered" in [r.getMessage() for r in caplog.records]
    finally:
        app.extensions["giftrec"].close()
