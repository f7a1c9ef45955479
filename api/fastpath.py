"""A WSGI door in front of Flask for the storefront's hottest read: its well-formed requests skip Flask.

Under gunicorn, Flask's own work for one request to a keyed /v1 view (request and app contexts, URL
matching, the guard's two hooks, the response object and its headers) costs more CPU than the kept ranking
it serves (docs/performance.md). A route given to :func:`route` is tried first, for GET only: its handler
either answers, with the body and every header, or returns None, and the request then goes on to Flask
untouched. Errors, preflights, HEAD and anything unusual therefore keep Flask's one behaviour (problem+json
with the field at fault, hooks, logging): a handler answers only what it is sure of, exactly as its Flask
view would (tests/api/test_fastpath.py compares the two doors response by response). ``api.fast_path =
false`` sends every request through Flask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

#: What a handler answers: the body and all its headers (status 200), or None to let Flask answer.
Answer = tuple[bytes, list[tuple[str, str]]] | None
#: (the request's WSGI environ, the path segment between the route's prefix and suffix) -> Answer.
Handler = Callable[[dict[str, Any], str], Answer]
#: Where a request's route is named for metrics (the Flask endpoint, which this door names too).
ENV_ROUTE = "giftrec.route"


class FastPath:
    """WSGI middleware: ``GET <prefix><one path segment><suffix>`` goes to its handler first, the rest (and
    whatever a handler declines) to ``app``."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.routes: list[tuple[str, str, Handler, str]] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET":
            answer = self._answer(environ)
            if answer is not None:
                environ[ENV_ROUTE] = answer[2]
                body, headers, _ = answer
                start_response("200 OK", headers)
                return [body]
        return self.app(environ, start_response)

    def _answer(self, environ: WSGIEnvironment) -> tuple[bytes, list[tuple[str, str]], str] | None:
        path: str = environ.get("PATH_INFO", "")
        for prefix, suffix, handler, endpoint in self.routes:
            if not (path.startswith(prefix) and path.endswith(suffix)):
                continue
            segment = path[len(prefix) : len(path) - len(suffix)]
            # One segment, as Flask's default converter takes it; werkzeug decodes a non-ASCII path itself.
            if not segment or "/" in segment or not segment.isascii():
                return None
            try:
                answer = handler(environ, segment)
            except Exception:  # a bug in a handler: logged here, and Flask answers the request
                log.exception("the fast path failed on %s; Flask answers", path)
                return None
            return None if answer is None else (*answer, endpoint)
        return None


def route(app: Flask, prefix: str, suffix: str, handler: Handler, endpoint: str) -> FastPath:
    """Answer ``GET <prefix><segment><suffix>`` with ``handler`` before Flask (whose view for the same URL,
    ``endpoint``, answers whatever the handler declines)."""
    door = app.wsgi_app
    if not isinstance(door, FastPath):
        # Flask's documented place for WSGI middleware (as for werkzeug's ProxyFix).
        door = app.wsgi_app = FastPath(app.wsgi_app)  # type: ignore[method-assign]
    door.routes.append((prefix, suffix, handler, endpoint))
    return door
