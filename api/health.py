"""Liveness and readiness probes for the operator and the load balancer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from domain import schema

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("/live")
def live() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> ResponseReturnValue:
    ctx = current_app.extensions["giftrec"]
    checks: dict[str, Any] = {}
    ok = True
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = schema.current_revision(ctx.engine), schema.head_revision()
        checks["migrations"] = {"current": current, "head": head}
        if current != head:
            ok = False
            checks["migrations"]["error"] = (
                "database is not at the newest migration: run `giftrec db upgrade`"
            )
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
        ok = False
        checks["database"] = f"error: {type(exc).__name__}: {exc}"
    for name, probe in ctx.readiness_probes.items():
        status = probe()
        checks[name] = status
        if isinstance(status, dict) and status.get("ok") is False:
            ok = False
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return jsonify(body), (200 if ok else 503)
