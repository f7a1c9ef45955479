"""Health probes."""

from __future__ import annotations

from domain import schema


def test_live_answers_without_the_database(client):
    resp = client.get("/health/live")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_ready_reports_database_and_migrations(client):
    resp = client.get("/health/ready")
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"]["current"] == schema.head_revision()


def test_ready_fails_when_the_database_is_behind(app, tmp_path):
    from sqlalchemy import text

    engine = app.extensions["giftrec"].engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        resp = app.test_client().get("/health/ready")
        assert resp.status_code == 503
        assert "giftrec db upgrade" in resp.get_json()["checks"]["migrations"]["error"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": schema.head_revision()})
