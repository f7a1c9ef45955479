"""Liveness and readiness probes for the operator and the load balancer.

``/health/ready`` says ok or not per check to anyone (a load balancer has no key); what failed and why
(versions, errors) only to an admin key, and to the log. A non-blocking check (the mail queue paused)
fails without taking the web app out of service: 200 with status "degraded".
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from api import auth
from domain import schema

log = logging.getLogger(__name__)

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
    degraded = False
    for name, probe in ctx.readiness_probes.items():
        try:
            status = probe()
        except Exception as exc:  # noqa: BLE001 - a probe that cannot answer is failing; say why
            status = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        checks[name] = status
        if isinstance(status, dict) and status.get("ok") is False:
            if status.get("blocking", True):
                ok = False
            else:  # failing, but this process still serves (the mail queue is paused)
                degraded = True
    if not ok or degraded:
        log.warning("not ready or degraded: %s", checks)
    if not _asked_by_an_operator(ctx):
        checks = {name: _verdict(value) for name, value in checks.items()}
    body = {"status": ("degraded" if degraded else "ok") if ok else "unavailable", "checks": checks}
    return jsonify(body), (200 if ok else 503)


def _verdict(check: Any) -> str:
    """One check as ok / failing, without versions or error text."""
    if isinstance(check, dict):
        if check.get("warming") and "error" not in check:
            return "warming"  # a new process making its rankings: ready within seconds
        return "failing" if check.get("ok") is False or "error" in check else "ok"
    return "ok" if check == "ok" else "failing"


def _asked_by_an_operator(ctx: Any) -> bool:
    """Whether the request carries an admin API key (then the checks say what failed and why)."""
    secret = auth.presented_key(request.environ)
    keys = ctx.services.get("api_key_cache")
    key = keys.get(secret) if secret is not None and keys is not None else None
    return key is not None and key.scope == "admin"
