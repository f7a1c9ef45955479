"""A WSGI door in front of Flask for the storefront's hot reads: their well-formed requests skip Flask.

Under gunicorn, Flask's own work for one request to a keyed /v1 view (request and app contexts, URL
matching, the guard's two hooks, apiflask's input and output wrappers, the response object and its
headers) costs more CPU than the kept ranking or list it serves (docs/performance.md). A route given to
:func:`route` is a Flask rule with at most one variable segment (``/v1/products/<sku>/similar``) or none
(``/v1/bestsellers``; its handler gets an empty segment), tried first, for GET only: its handler either
answers, with the body and every header, or returns None, and the request then goes on to Flask
untouched. Errors, preflights, HEAD and anything unusual therefore keep Flask's one behaviour
(problem+json with the field at fault, hooks, logging): a handler answers only what it is sure of,
exactly as its Flask view would (tests/api/test_fastpath.py compares the two doors response by
response). ``api.fast_path = false`` sends every request through Flask.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

#: What a handler answers: the body and all its headers (status 200), or None to let Flask answer.
Answer = tuple[bytes, list[tuple[str, str]]] | None
#: (the request's WSGI environ, the path segment in place of the rule's variable, or "") -> Answer.
Handler = Callable[[dict[str, Any], str], Answer]
#: Where a request's route is named for metrics (the Flask endpoint, which this door names too).
ENV_ROUTE = "giftrec.route"


_VARIABLE = re.compile(r"<(?:[a-z_]+:)?[A-Za-z_][A-Za-z0-9_]*>")


class FastPath:
    """WSGI middleware: ``GET <prefix><one path segment><suffix>``, or ``GET <path>`` of a rule without a
    variable, goes to its handler first, the rest (and whatever a handler declines) to ``app``."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.routes: list[tuple[str, str, Handler, str]] = []
        self.paths: dict[str, tuple[Handler, str]] = {}  # rules without a variable: one dict lookup

    def add(self, rule: str, handler: Handler, endpoint: str) -> None:
        """Route ``rule`` (``/v1/x/<name>/y`` or ``/v1/x``) to ``handler``, named ``endpoint`` for metrics."""
        found = _VARIABLE.findall(rule)
        if len(found) > 1 or not rule.startswith("/"):
            raise ValueError(f"a fast route has at most one variable segment: {rule!r}")
        if not found:
            self.paths[rule] = (handler, endpoint)
            return
        prefix, suffix = rule.split(found[0])
        if not prefix.endswith("/") or (suffix and not suffix.startswith("/")):
            raise ValueError(f"the variable of a fast route must be a whole segment: {rule!r}")
        self.routes.append((prefix, suffix, handler, endpoint))

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
        exact = self.paths.get(path)
        if exact is not None:
            return self._call(exact[0], environ, "", path, exact[1])
        for prefix, suffix, handler, endpoint in self.routes:
            if not (path.startswith(prefix) and path.endswith(suffix)):
                continue
            segment = path[len(prefix) : len(path) - len(suffix)]
            # One segment, as Flask's default converter takes it; werkzeug decodes a non-ASCII path itself.
            if not segment or "/" in segment or not segment.isascii():
                return None
            return self._call(handler, environ, segment, path, endpoint)
        return None

    @staticmethod
    def _call(
        handler: Handler, environ: WSGIEnvironment, segment: str, path: str, endpoint: str
    ) -> tuple[bytes, list[tuple[str, str]], str] | None:
        try:
            answer = handler(environ, segment)
        except Exception:  # a bug in a handler: logged here, and Flask answers the request
            log.exception("the fast path failed on %s; Flask answers", path)
            return None
        return None if answer is None else (*answer, endpoint)


def route(app: Flask, rule: str, handler: Handler, endpoint: str) -> FastPath:
    """Answer ``GET rule`` (a Flask rule with at most one variable segment) with ``handler`` before Flask
    (whose view for the same URL, ``endpoint``, answers whatever the handler declines)."""
    door = app.wsgi_app
    if not isinstance(door, FastPath):
        # Flask's documented place for WSGI middleware (as for werkzeug's ProxyFix).
        door = app.wsgi_app = FastPath(app.wsgi_app)  # type: ignore[method-assign]
    door.add(rule, handler, endpoint)
    return door
