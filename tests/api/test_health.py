"""Health probes."""

from __future__ import annotations

from domain import schema
from tests.api.helpers import bearer


def test_live_answers_without_the_database(client):
    resp = client.get("/health/live")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_ready_reports_database_and_migrations(client, keys):
    resp = client.get("/health/ready", headers=bearer(keys["admin"]))
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"]["current"] == schema.head_revision()


def test_ready_reads_the_migration_scripts_once_per_process(client, keys, monkeypatch):
    """Regression: every readiness probe imported all migration files again (milliseconds of CPU each,
    holding the GIL beside the requests)."""
    from alembic.script import ScriptDirectory

    assert client.get("/health/ready", headers=bearer(keys["admin"])).status_code == 200

    def read_again(*args, **kwargs):
        raise AssertionError("the migration scripts were read again")

    monkeypatch.setattr(ScriptDirectory, "from_config", read_again)
    resp = client.get("/health/ready", headers=bearer(keys["admin"]))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["checks"]["migrations"]["head"] == schema.head_revision()


def test_ready_tells_anyone_ok_or_not_and_internals_only_to_an_admin_key(app, client, keys):
    """Regression: /health/ready needed no key and returned versions and raw exception text."""
    from sqlalchemy import text

    anonymous = client.get("/health/ready").get_json()
    assert set(anonymous["checks"].values()) <= {"ok", "failing"}
    for scope in ("widget", "server"):
        assert client.get("/health/ready", headers=bearer(keys[scope])).get_json() == anonymous
    engine = app.extensions["giftrec"].engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        failing = client.get("/health/ready")
        assert failing.status_code == 503
        assert failing.get_json()["checks"]["migrations"] == "failing"
        assert "older" not in failing.get_data(as_text=True) and "upgrade" not in failing.get_data(
            as_text=True
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": schema.head_revision()})


def test_ready_fails_when_the_database_is_behind(app, tmp_path, keys):
    from sqlalchemy import text

    engine = app.extensions["giftrec"].engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        resp = app.test_client().get("/health/ready", headers=bearer(keys["admin"]))
        assert resp.status_code == 503
        assert "giftrec db upgrade" in resp.get_json()["checks"]["migrations"]["error"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": schema.head_revision()})


def test_a_paused_mail_queue_is_failing_for_anyone_and_explained_to_an_admin_key(app, client, keys):
    import datetime as dt

    from domain.db import session_scope
    from domain.messaging.pause import pause

    settings = app.extensions["giftrec"].settings
    with session_scope(app.extensions["giftrec"].sessions) as session:
        pause(
            session,
            settings.mail,
            reason="login refused: 535 bad credentials",
            now=dt.datetime(2026, 1, 1),
            by="w",
        )
    anyone = client.get("/health/ready")
    assert anyone.status_code == 200  # the web app serves on: a paused queue does not take it out
    assert anyone.get_json()["status"] == "degraded"
    assert anyone.get_json()["checks"]["mail_queue"] == "failing"
    assert "535" not in anyone.get_data(as_text=True)
    admin = client.get("/health/ready", headers=bearer(keys["admin"])).get_json()
    paused = admin["checks"]["mail_queue"]["paused"]
    assert paused["reason"] == "login refused: 535 bad credentials" and paused["next_probe_at"]
    from api.cli import cli

    result = app.test_cli_runner().invoke(cli, args=["outbox", "resume"])
    assert "mail queue resumed" in result.output, result.output
    assert client.get("/health/ready").get_json() == {
        "status": "ok",
        "checks": anyone.get_json()["checks"] | {"mail_queue": "ok"},
    }


def test_ready_is_degraded_not_down_while_the_rate_limit_storage_is_down(settings, sessions, redis_server):
    """Redis down does not take a web process out of the load balancer (the API goes on unlimited, the
    sign-in throttle counts in the process), but /health/ready says so: 200, "degraded"."""
    from domain.access import api_keys
    from domain.db import session_scope
    from tests.redis_server import app_sharing

    app = app_sharing(settings, redis_server)
    try:
        with session_scope(app.extensions["giftrec"].sessions) as session:
            admin = api_keys.create_key(session, "admin")[1]
        client = app.test_client()
        up = client.get("/health/ready", headers=bearer(admin)).get_json()
        assert up["checks"]["rate_limit_storage"] == {"ok": True, "scheme": "redis"}
        redis_server.stop()
        down = client.get("/health/ready", headers=bearer(admin))
        assert down.status_code == 200 and down.get_json()["status"] == "degraded"
        check = down.get_json()["checks"]["rate_limit_storage"]
        assert check["ok"] is False and check["scheme"] == "redis" and "unreachable" in check["error"]
        assert str(redis_server.port) not in down.get_data(as_text=True)  # no address, no password
        assert client.get("/health/ready").get_json()["checks"]["rate_limit_storage"] == "failing"
    finally:
        app.extensions["giftrec"].close()


def test_ready_is_degraded_not_held_while_the_rate_limit_storage_accepts_but_never_answers(
    settings, sessions, redis_server
):
    """Regression: the Redis client had no timeout of ours, so a Redis that accepts connections but never
    answers (here a real one stopped with SIGSTOP: the kernel still accepts) held /health/ready and
    every limited request for redis-py's default of 5 s per call, longer than a load balancer's probe
    waits: the process was taken out instead of reported "degraded". Each call now gives up after
    ``api.rate_limit_storage_timeout``. The bound asserted is far above that timeout (0.2 s) and at
    redis-py's default, which the unfixed client always waits in full."""
    import dataclasses
    import os
    import signal
    import time

    from domain.access import api_keys
    from domain.db import session_scope
    from tests.redis_server import app_sharing

    settings = dataclasses.replace(
        settings, api=dataclasses.replace(settings.api, rate_limit_storage_timeout=0.2)
    )
    app = app_sharing(settings, redis_server)
    assert redis_server.proc is not None
    pid, stopped = redis_server.proc.pid, False
    try:
        with session_scope(app.extensions["giftrec"].sessions) as session:
            admin = api_keys.create_key(session, "admin")[1]
        client = app.test_client()
        assert client.get("/health/ready", headers=bearer(admin)).get_json()["status"] == "ok"
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        started = time.monotonic()
        ready = client.get("/health/ready", headers=bearer(admin))
        limited = client.get("/v1/bestsellers", headers=bearer(admin))
        assert time.monotonic() - started < 5.0
        assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
        check = ready.get_json()["checks"]["rate_limit_storage"]
        assert check["ok"] is False and "unreachable" in check["error"]
        assert limited.status_code == 200  # not limited while the storage does not answer
        assert "X-RateLimit-Remaining" not in limited.headers
        os.kill(pid, signal.SIGCONT)
        stopped = False
        assert client.get("/health/ready", headers=bearer(admin)).get_json()["status"] == "ok"
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        app.extensions["giftrec"].close()


def test_a_warming_model_store_is_not_ready_and_says_so(app, client, keys, monkeypatch):
    """A new process making its first rankings answers 503 (a load balancer waits), "warming" to anyone,
    and how far it is to an admin key."""
    store = app.extensions["giftrec"].services["model_store"]
    warming = {"ranked": 10, "customers": 698, "seconds_left": 58.5}
    monkeypatch.setattr(store, "_warming", lambda: warming)
    answer = client.get("/health/ready")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["model"] == "warming"
    admin = client.get("/health/ready", headers=bearer(keys["admin"])).get_json()
    assert admin["checks"]["model"]["warming"] == warming and admin["checks"]["model"]["ok"] is False
    monkeypatch.setattr(store, "_warming", lambda: None)
    assert client.get("/health/ready").status_code == 200
