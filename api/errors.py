"""Every error as application/problem+json, with the field at fault where there is one."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, json
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from domain.errors import DomainError, InvalidInput, NotFound

PROBLEM = "application/problem+json"
#: Seconds a client is asked to wait (Retry-After) while the database is unavailable.
DB_RETRY_AFTER = 5


def problem(
    status: int,
    title: str,
    detail: str = "",
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _flatten(messages: Any, prefix: str = "") -> list[dict[str, Any]]:
    """marshmallow/webargs messages {"json": {"field": ["msg"]}} -> [{field, message}]."""
    out: list[dict[str, Any]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and prefix):
                name = f"{prefix}[{key}]"  # marshmallow keys list items by index: events[3].sku
            else:
                name = str(key) if not prefix else f"{prefix}.{key}"
            if prefix == "" and key in ("json", "query", "path", "form", "headers", "cookies", "view_args"):
                name = ""
            out.extend(_flatten(value, name))
    elif isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages):
        out.extend({"field": prefix or None, "message": m} for m in messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            out.extend(_flatten(value, f"{prefix}[{i}]" if prefix else str(i)))
    else:
        out.append({"field": prefix or None, "message": str(messages)})
    return out


def register_error_handlers(app: Flask) -> None:
    error_processor = getattr(app, "error_processor", None)
    if error_processor is not None:  # apiflask: validation and abort() errors come through here

        @error_processor
        def _apiflask(error: Any) -> Response:
            errors = _flatten(error.detail) if error.detail else None
            return problem(error.status_code, error.message, "", errors, dict(error.headers or {}))

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        if isinstance(exc, InvalidInput):
            return problem(
                exc.status, "Invalid input", exc.message, [{"field": exc.field, "message": exc.detail}]
            )
        if isinstance(exc, NotFound):
            return problem(exc.status, "Not found", exc.message)
        return problem(exc.status, type(exc).__name__, exc.message)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_unavailable(exc: Exception) -> Response:
        # The database went away (stopped, restarting, unreachable): a temporary condition, not a bug. The
        # engine's pre-ping replaces dead connections, so requests succeed again once it is back.
        current_app.logger.warning("database unavailable: %s", exc)
        detail = "the database is unavailable; try again shortly"
        return problem(503, "Service Unavailable", detail, headers={"Retry-After": str(DB_RETRY_AFTER)})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = exc.description or ""
        errors = None
        # apiflask HTTPError / validation errors carry structured detail
        extra = getattr(exc, "detail", None) or getattr(exc, "data", None)
        if isinstance(extra, dict) and extra:
            errors = _flatten(extra.get("messages", extra))
        return problem(
            status,
            exc.name,
            detail if isinstance(detail, str) else "",
            errors,
            dict(getattr(exc, "headers", None) or {}),
        )
