"""API keys: stored hashed, shown once, scoped, revocable; the `giftrec keys` commands; rate limits."""

from __future__ import annotations

import contextlib
import hashlib
import time

import pytest
from sqlalchemy import select

from api.cli import cli
from config import ConfigError, load_settings
from domain.access import api_keys
from domain.errors import InvalidInput
from domain.models import ApiKey, AuditLog
from tests.api.helpers import SHOP, bearer, signed


def test_only_a_hash_of_the_key_is_stored(session):
    info, secret = api_keys.create_key(session, "server", name="shop backend")
    row = session.scalars(select(ApiKey)).one()
    assert secret.startswith(info.prefix + ".")
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.split(".", 1)[1] not in (row.key_hash, row.prefix, row.name)
    assert api_keys.verify_key(session, secret) == info
    assert api_keys.verify_key(session, secret + "x") is None
    assert api_keys.verify_key(session, info.prefix + ".wrong-secret-of-some-length") is None
    assert api_keys.verify_key(session, "not a key") is None


def test_a_revoked_key_no_longer_verifies(session):
    info, secret = api_keys.create_key(session, "email")
    api_keys.revoke_key(session, info.prefix)
    assert api_keys.verify_key(session, secret) is None
    actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["api_key.create", "api_key.revoke"]


def test_origins_are_normalized_and_only_for_widget_keys(session):
    info, _ = api_keys.create_key(session, "widget", origins=["https://Shop.Example:443/some/page"])
    assert info.allowed_origins == ("https://shop.example",)
    with pytest.raises(InvalidInput) as err:
        api_keys.create_key(session, "server", origins=[SHOP])
    assert err.value.field == "origin"
    with pytest.raises(InvalidInput):
        api_keys.create_key(session, "widget", origins=["shop.example"])
    with pytest.raises(InvalidInput) as err:
        api_keys.create_key(session, "superuser")
    assert err.value.field == "scope"


def test_a_request_without_a_key_is_401_problem(client, shop):
    resp = client.post("/v1/events", json={"events": []})
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/v1/events", json={}, headers=bearer("gr_00000000.nope")).status_code == 401


def test_scopes_decide_what_a_key_may_call(client, keys, shop):
    product = {"title": "Candle", "price": 9.5}
    assert client.put("/v1/products/CANDLE", json=product, headers=bearer(keys["widget"])).status_code == 403
    assert client.put("/v1/products/CANDLE", json=product, headers=bearer(keys["email"])).status_code == 403
    assert client.put("/v1/products/CANDLE", json=product, headers=bearer(keys["server"])).status_code == 201
    assert (
        client.put("/v1/products/CANDLE", json=product, headers={"X-Api-Key": keys["admin"]}).status_code
        == 200
    )
    assert client.delete("/v1/customers/C2", headers=bearer(keys["widget"])).status_code == 403


def test_a_revoked_key_stops_working(app, client, keys, shop):
    headers = bearer(keys["server"])
    assert client.put("/v1/products/MUG-1", json={"in_stock": True}, headers=headers).status_code == 200
    with app.extensions["giftrec"].sessions() as session:
        api_keys.revoke_key(session, keys["server"].split(".")[0])
        session.commit()
    app.extensions["giftrec"].services["api_key_cache"].clear()  # other workers: within KEY_CACHE_SECONDS
    resp = client.put("/v1/products/MUG-1", json={"in_stock": True}, headers=headers)
    assert resp.status_code == 401


def test_a_verified_secret_is_hashed_once_and_refused_after_revocation(sessions, monkeypatch):
    """The key cache remembers which secret opened which entry of its table, so a key's next requests need
    no SHA-256 again (it was computed on every request); the memo goes with the table, so a revoked key is
    refused at the next read of the table, as before: within KEY_CACHE_SECONDS in every worker."""
    from api.auth import KEY_CACHE_SECONDS, KeyCache

    with sessions() as session:
        info, secret = api_keys.create_key(session, "server")
        session.commit()
    now = [0.0]
    cache = KeyCache(sessions, clock=lambda: now[0])
    hashed: list[str] = []
    real_hash = api_keys.hash_key
    monkeypatch.setattr(api_keys, "hash_key", lambda s: hashed.append(s) or real_hash(s))

    assert [cache.get(secret) for _ in range(5)] == [info] * 5
    assert hashed == [secret], "hashed once, then remembered"
    junk = f"{info.prefix}.{'x' * 43}"
    assert cache.get(junk) is None and cache.get(junk) is None, "another secret of the prefix is checked"
    assert hashed == [secret, junk, junk]

    with sessions() as session:
        api_keys.revoke_key(session, info.prefix)
        session.commit()
    now[0] += KEY_CACHE_SECONDS - 1
    assert cache.get(secret) == info, "the documented window: the table is kept this long"
    now[0] += 2
    assert cache.get(secret) is None, "refused once the table is read again"
    assert cache.get(secret) is None


def test_rate_limit_per_key_is_429_problem(settings, sessions):
    from api import create_app

    limited = load_settings(
        environ={},
        database={"url": settings.database.url},
        server={"instance_dir": settings.server.instance_dir, "secret_key": "test"},
        api={"rate_limit": "3/minute"},
    )
    app = create_app(limited)
    try:
        with app.extensions["giftrec"].sessions() as session:
            _, one = api_keys.create_key(session, "server")
            _, other = api_keys.create_key(session, "server")
            session.commit()
        client = app.test_client()
        responses = [client.delete("/v1/customers/X", headers=bearer(one)) for _ in range(4)]
        assert [r.status_code for r in responses] == [404, 404, 404, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
        assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"3"}
        assert all(len(r.headers.getlist("X-RateLimit-Remaining")) == 1 for r in responses)
        assert int(responses[0].headers["X-RateLimit-Reset"]) > time.time()
        resp = client.delete("/v1/customers/X", headers=bearer(one))
        assert resp.mimetype == "application/problem+json"
        assert 0 < int(resp.headers["Retry-After"]) <= 60
        assert resp.json["errors"][0]["field"] == "Authorization"
        # One counter per key across the API (not per endpoint); preflights are not counted.
        assert client.get("/v1/bestsellers", headers=bearer(one)).status_code == 429
        preflight = client.options(
            "/v1/bestsellers", headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
        )
        assert preflight.status_code == 204
        assert client.delete("/v1/customers/X", headers=bearer(other)).status_code == 404
    finally:
        app.extensions["giftrec"].close()


def test_protected_responses_carry_each_header_once(app, client, keys, shop):
    """Vary, the key's window and (for a widget key at its own origin) CORS: once each, on successes,
    problems and preflights alike."""

    def once(resp, *names):
        for name in names:
            assert len(resp.headers.getlist(name)) == 1, (name, resp.headers)

    window = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    server = client.get("/v1/customers/C1/recommendations?n=2", headers=bearer(keys["server"]))
    assert server.status_code == 200
    once(server, "Vary", *window)
    assert server.headers["Vary"] == "Origin" and "Access-Control-Allow-Origin" not in server.headers
    widget = client.get(
        "/v1/customers/NOBODY/recommendations",
        headers={"X-Api-Key": keys["widget"], "Origin": SHOP, **signed(app, keys["widget"], "NOBODY")},
    )
    assert widget.status_code == 404 and widget.mimetype == "application/problem+json"
    once(widget, "Vary", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers", *window)
    assert widget.headers["Access-Control-Allow-Origin"] == SHOP
    elsewhere = client.get(
        "/v1/bestsellers", headers={"X-Api-Key": keys["widget"], "Origin": "https://other.example"}
    )
    assert elsewhere.status_code == 403 and "Access-Control-Allow-Origin" not in elsewhere.headers
    once(elsewhere, "Vary", *window)
    cached = client.get("/v1/bestsellers?n=2", headers=bearer(keys["server"]))
    assert cached.headers["Vary"] == "Origin"  # joined to, not repeated, when a view sets Vary itself
    preflight = client.options(
        "/v1/bestsellers", headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == SHOP
    once(preflight, "Vary", "Access-Control-Allow-Origin")
    assert "X-RateLimit-Remaining" not in preflight.headers  # preflights are not counted
    anonymous = client.get("/v1/bestsellers")
    assert anonymous.status_code == 401
    once(anonymous, "Vary", "WWW-Authenticate", *window)


def test_a_keyed_view_outside_the_guard_fails_loudly(app, keys):
    """require() finds the key cache through the guard: on a blueprint never given to protect() (no rate
    limit, no CORS) a call is an error, not an unguarded endpoint."""
    from flask import Blueprint

    from api import auth

    bp = Blueprint("unguarded", __name__, url_prefix="/unguarded")

    @bp.get("/ping")
    @auth.require("server")
    def ping():  # type: ignore[no-untyped-def]
        return {"ok": True}

    app.register_blueprint(bp)
    with pytest.raises(RuntimeError, match="protect"):
        app.test_client().get("/unguarded/ping", headers=bearer(keys["server"]))
    auth.protect(app, bp)
    resp = app.test_client().get("/unguarded/ping", headers=bearer(keys["server"]))
    assert resp.status_code == 200 and resp.headers["X-RateLimit-Limit"]


def test_cli_creates_lists_and_revokes_keys(runner, app):
    created = runner.invoke(
        cli, args=["keys", "create", "--scope", "widget", "--origin", SHOP, "--name", "shop"]
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    prefix = secret.split(".")[0]
    listed = runner.invoke(cli, args=["keys", "list"])
    assert prefix in listed.output and SHOP in listed.output and secret not in listed.output
    shown = runner.invoke(cli, args=["keys", "identity-secret", prefix])
    assert shown.exit_code == 0, shown.output
    from domain.access.identity import sign_customer, verify_customer

    verify_customer(shown.stdout.strip(), "C1", sign_customer(shown.stdout.strip(), "C1"), time.time())
    assert signed(app, secret, "C1")["X-Customer-Signature"] == sign_customer(shown.stdout.strip(), "C1")
    assert runner.invoke(cli, args=["keys", "create", "--scope", "widget"]).exit_code != 0
    revoked = runner.invoke(cli, args=["keys", "revoke", prefix])
    assert revoked.exit_code == 0, revoked.output
    with app.extensions["giftrec"].sessions() as session:
        assert api_keys.verify_key(session, secret) is None
    missing = runner.invoke(cli, args=["keys", "revoke", "gr_ffffffff"])
    assert missing.exit_code == 1 and "not found" in missing.output
    assert runner.invoke(cli, args=["keys", "identity-secret", prefix]).exit_code == 1, "revoked"


def test_cli_demo_key_is_created_once_and_reused(runner, app):
    first = runner.invoke(cli, args=["keys", "demo"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, args=["keys", "demo"])
    assert second.stdout.strip() == first.stdout.strip()
    with app.extensions["giftrec"].sessions() as session:
        info = api_keys.verify_key(session, first.stdout.strip())
    assert info is not None and info.scope == "widget"
    assert "http://127.0.0.1:5000" in info.allowed_origins


def test_the_in_process_window_counts_as_limits_does():
    """SweptMemoryStorage.hit is limits' incr + get_expiry in one call: same counts, same window ends,
    a new window after the old one expired."""
    from limits.storage import MemoryStorage

    from api.auth import SweptMemoryStorage

    ours, theirs = SweptMemoryStorage(), MemoryStorage()
    for step in range(7):
        if step == 4:  # the window ends: both storages see it as over
            for storage in (ours, theirs):
                storage.expirations["k"] = time.time() - 1
        count, reset = ours.hit("k", 60)
        assert count == theirs.incr("k", 60)
        assert reset == pytest.approx(theirs.get_expiry("k"), abs=1)
        assert count == (step + 1 if step < 4 else step - 3)
        assert ours.get("k") == count and ours.get_expiry("k") == reset
    assert ours.hit("other", 60)[0] == 1


def test_a_failing_rate_limit_store_lets_requests_through_and_logs(settings, sessions, caplog):
    """A remote counter store (redis, memcached) that is down must not take the API down with it."""
    from api import create_app

    class DownStorage:
        def incr(self, *args: object, **kwargs: object) -> int:
            raise ConnectionError("counter store unreachable")

        def get_expiry(self, key: str) -> float:
            raise ConnectionError("counter store unreachable")

    app = create_app(settings)
    try:
        with app.extensions["giftrec"].sessions() as session:
            _, key = api_keys.create_key(session, "server")
            session.commit()
        app.extensions["giftrec"].services["rate_limit"].storage = DownStorage()
        client = app.test_client()
        with caplog.at_level("ERROR", logger="api.auth"):
            statuses = [client.delete("/v1/customers/X", headers=bearer(key)).status_code for _ in range(2)]
        assert statuses == [404, 404]
        assert "X-RateLimit-Remaining" not in client.delete("/v1/customers/X", headers=bearer(key)).headers
        assert [r.message for r in caplog.records].count(
            "rate-limit storage failed; requests are not limited until it recovers"
        ) == 1
    finally:
        app.extensions["giftrec"].close()


@pytest.mark.parametrize("uri", ["nosuch://x", "async+memory://"])
def test_an_unusable_rate_limit_storage_stops_start_up_naming_the_key(settings, uri):
    from api.auth import KeyRateLimit

    with pytest.raises(ConfigError) as info:
        KeyRateLimit("10/minute", uri)
    assert info.value.key == "api.rate_limit_storage"


def _limited_app(settings, limit: str = "3/minute", storage: str = "memory://"):  # type: ignore[no-untyped-def]
    from api import create_app

    return create_app(
        load_settings(
            environ={},
            database={"url": settings.database.url},
            server={"instance_dir": settings.server.instance_dir, "secret_key": "test"},
            api={"rate_limit": limit, "rate_limit_storage": storage},
        )
    )


def test_junk_secrets_under_a_keys_prefix_never_throttle_that_key(settings, sessions):
    """Regression: the limit counted the presented prefix before the key was verified, so anyone who knew
    a prefix (it is in `keys list` and the audit log) could get that key throttled with made-up secrets."""
    app = _limited_app(settings)
    try:
        with app.extensions["giftrec"].sessions() as session:
            info, real = api_keys.create_key(session, "server")
            session.commit()
        client = app.test_client()
        junk = f"{info.prefix}.{'x' * 40}"
        attacker = {"REMOTE_ADDR": "198.51.100.7"}
        answers = [
            client.delete("/v1/customers/X", headers=bearer(junk), environ_base=attacker).status_code
            for _ in range(5)
        ]
        assert answers == [401, 401, 401, 429, 429], "junk is limited per client address"
        assert [client.delete("/v1/customers/X", headers=bearer(real)).status_code for _ in range(3)] == [
            404,
            404,
            404,
        ], "the real key still has its whole window"
    finally:
        app.extensions["giftrec"].close()


def test_made_up_secrets_cost_no_query_each(settings, sessions):
    """Verification reads the key table into memory: a flood of made-up secrets (known or unknown
    prefixes) costs no SELECT per request, only a re-read of the table at most once a second."""
    from sqlalchemy import event

    app = _limited_app(settings, "100000/minute")
    try:
        ctx = app.extensions["giftrec"]
        with ctx.sessions() as session:
            info, _ = api_keys.create_key(session, "server")
            session.commit()
        reads: list[str] = []

        def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            if "api_keys" in statement and statement.lstrip().upper().startswith("SELECT"):
                reads.append(statement)

        event.listen(ctx.engine, "before_cursor_execute", count)
        client = app.test_client()
        started = time.monotonic()
        for i in range(200):
            prefix = info.prefix if i % 2 else f"gr_{i:08x}"
            client.get("/v1/bestsellers", headers=bearer(f"{prefix}.made-up-secret-{i:04d}-abcdefgh"))
        elapsed = time.monotonic() - started
        event.remove(ctx.engine, "before_cursor_execute", count)
        assert len(reads) <= elapsed + 2, (
            f"{len(reads)} key-table reads for 200 bad requests in {elapsed:.1f} s"
        )
    finally:
        app.extensions["giftrec"].close()


def test_while_redis_is_down_api_requests_go_through_unlimited_and_are_counted(
    settings, sessions, redis_server
):
    """The documented outage with a real Redis stopped and started again: requests answered, not limited
    (no window headers), every failed counter call counted in /metrics; limited again once it is back."""
    from prometheus_client import REGISTRY

    def failures() -> float:
        labels = {"limit": "api"}
        return REGISTRY.get_sample_value("giftrec_rate_limit_storage_failures_total", labels) or 0.0

    app = _limited_app(settings, "2/hour", redis_server.url)
    try:
        with app.extensions["giftrec"].sessions() as session:
            _, key = api_keys.create_key(session, "server")
            session.commit()
        client = app.test_client()
        up = client.delete("/v1/customers/X", headers=bearer(key))
        assert up.status_code == 404 and up.headers["X-RateLimit-Remaining"] == "1"
        before = failures()
        redis_server.stop()
        down = [client.delete("/v1/customers/X", headers=bearer(key)) for _ in range(3)]  # past the limit
        assert [r.status_code for r in down] == [404] * 3
        assert not any("X-RateLimit-Remaining" in r.headers for r in down)
        assert failures() == before + 3
        redis_server.start()  # empty: the window starts again
        statuses = [client.delete("/v1/customers/X", headers=bearer(key)).status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
    finally:
        app.extensions["giftrec"].close()


@contextlib.contextmanager
def redis_limited(settings, redis_server, limit: str):  # type: ignore[no-untyped-def]
    """A test client of an app limited to ``limit`` per key, counted in ``redis_server``; the headers of a
    server key; and a Redis client to look at the counters."""
    import redis

    app = _limited_app(settings, limit, redis_server.url)
    watcher = redis.Redis(port=redis_server.port)
    try:
        with app.extensions["giftrec"].sessions() as session:
            _, key = api_keys.create_key(session, "server")
            session.commit()
        yield app.test_client(), bearer(key), watcher
    finally:
        watcher.close()
        app.extensions["giftrec"].close()


def test_with_redis_each_api_request_is_one_round_trip_and_its_window_expires(
    settings, sessions, redis_server
):
    """Regression (issue 18, the deployment benchmark): the rate limit called Redis twice per request (the
    counter, then its time to live for ``X-RateLimit-Reset``). One script now counts, sets the window's
    expiry on the first hit and returns the time to live. Counted with a real Redis's slow log (every
    command, each with the client that sent it; a script's own calls have no client address)."""
    with redis_limited(settings, redis_server, "3/hour") as (client, headers, watcher):
        first = client.get("/v1/bestsellers", headers=headers)  # loads the script into Redis
        assert first.headers["X-RateLimit-Remaining"] == "2"
        watcher.config_set("slowlog-log-slower-than", 0)
        watcher.slowlog_reset()
        answers = [client.get("/v1/bestsellers", headers=headers) for _ in range(3)]
        sent = [
            entry["command"].split()[0].upper()
            for entry in watcher.slowlog_get(100)
            if entry["client_address"] != b"?:0" and not entry["command"].upper().startswith(b"SLOWLOG")
        ]
        assert sent == [b"EVALSHA"] * 3  # one per request
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert [a.headers.get("X-RateLimit-Remaining") for a in answers] == ["1", "0", "0"]
        reset = int(answers[2].headers["X-RateLimit-Reset"])
        assert 3590 < reset - time.time() <= 3601
        assert 3590 < int(answers[2].headers["Retry-After"]) <= 3601
        keys = watcher.keys("*giftrec-api*")
        assert len(keys) == 1 and 3590 < int(watcher.ttl(keys[0])) <= 3600
