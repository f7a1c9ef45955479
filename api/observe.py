"""The outermost WSGI door: a request id on every request and response, its latency, and JSON logs.

Every request gets an id: the load balancer's ``X-Request-ID`` when it sends a sensible one (1 to 128
characters of letters, digits and ``._-:``), else a new random one. It is echoed in the response's
``X-Request-ID`` (problem responses, the fast path's answers and Flask's error pages alike: this door
wraps them all), kept in the environ as ``giftrec.request_id`` and added to every log record written
while the request runs (``domain.logs.RequestIdFilter``), so one line of the access log and the app's
own lines can be joined (the log format is :mod:`domain.logs`, shared with the scheduler and the
commands). The request's latency is observed into ``giftrec_http_request_duration_seconds`` by route
(the Flask endpoint, or the fast path's) and status.

:func:`configure_logging` makes the process log one JSON object per line (``python-json-logger``);
``giftrec serve`` gives gunicorn's own lines and its access log the same shape (``api/gunicorn_conf.py``).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask

from api.fastpath import ENV_ROUTE
from domain.logs import configure_logging, current_request_id, json_handler
from domain.metrics import REQUEST_LATENCY

__all__ = ["ENV_REQUEST_ID", "HEADER", "Observed", "configure_logging", "json_handler", "request_id_of"]

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Where the request id and the route label are kept in the WSGI environ.
ENV_REQUEST_ID = "giftrec.request_id"
HEADER = "X-Request-ID"
#: Histograms of label sets kept per process.
MAX_LABELLED = 1000
_random_bits = random.getrandbits
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")


def request_id_of(environ: dict[str, Any]) -> str:
    """The load balancer's id when it is sensible, else a new one (32 hex digits).

    A new id is 128 random bits of the process's generator (``random``, seeded from the system's
    randomness at start and again in each forked worker): an id to join log lines, not a secret, so no
    system call per request as ``uuid.uuid4`` makes."""
    given = environ.get("HTTP_X_REQUEST_ID")
    if given and _ACCEPTED.match(given):
        return str(given)
    return f"{_random_bits(128):032x}"


class Observed:
    """WSGI middleware: request id in and out, latency by route and status."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        # (route, method, status) -> its histogram: ``labels()`` checks and joins the labels and takes a
        # lock on every call; the routes, methods and statuses an app answers are a few dozen.
        self._latency: dict[tuple[str, str, str], Any] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = environ[ENV_REQUEST_ID] = request_id_of(environ)
        token = current_request_id.set(rid)
        status_code = ["500"]

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_code[0] = status[:3]
            headers.append((HEADER, rid))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            current_request_id.reset(token)
            labels = (
                environ.get(ENV_ROUTE) or "unmatched",
                environ.get("REQUEST_METHOD", ""),
                status_code[0],
            )
            histogram = self._latency.get(labels)
            if histogram is None:
                if len(self._latency) >= MAX_LABELLED:  # odd methods, say: never an unbounded dict
                    self._latency.clear()
                histogram = self._latency[labels] = REQUEST_LATENCY.labels(*labels)
            histogram.observe(time.perf_counter() - started)


def init_app(app: Flask) -> None:
    """Wrap the app's WSGI door and label Flask's requests with their endpoint. Called last by
    ``create_app``: this door stands outside the fast path, so that both are observed."""

    @app.url_value_preprocessor
    def _label(endpoint: str | None, values: dict[str, Any] | None) -> None:
        from flask import request

        request.environ[ENV_ROUTE] = endpoint or "unmatched"

    # Flask's documented place for WSGI middleware (the fast path, if any, is already inside).
    app.wsgi_app = Observed(app.wsgi_app)  # type: ignore[method-assign]
