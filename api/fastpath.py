"""A WSGI door in front of Flask for the storefront's hot reads and writes: well-formed requests skip Flask.

Under gunicorn, Flask's own work for one request to a keyed /v1 view (request and app contexts, URL
matching, the guard's two hooks, apiflask's input and output wrappers, the response object and its
headers) costs more CPU than the kept ranking or list it serves (docs/performance.md). A route given to
:func:`route` is a Flask rule with at most one variable segment (``/v1/products/<sku>/similar``) or none
(``/v1/bestsellers``; its handler gets an empty segment), tried first for its method (GET unless
routed for another): its handler either
answers, with the body and every header, or returns None, and the request then goes on to Flask
untouched. Errors, preflights, HEAD and anything unusual therefore keep Flask's one behaviour
(problem+json with the field at fault, hooks, logging): a handler answers only what it is sure of,
exactly as its Flask view would (tests/api/test_fastpath.py compares the two doors response by
response). ``api.fast_path = false`` sends every request through Flask.

A write (``POST``) is routed the same way: its handler reads the body with :func:`json_body`, which puts
it back for Flask, and declines (None) whatever it is not sure of, or any failure before its commit,
which leaves nothing stored: Flask's view then does the same write and answers, errors included. It
answers with :class:`Answered` for a status other than 200.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from flask import Flask

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)


class Answered(NamedTuple):
    """A handler's answer with its status line (a plain ``(body, headers)`` pair answers 200)."""

    body: bytes
    headers: list[tuple[str, str]]
    status: str = "200 OK"


#: What a handler answers: the body and all its headers (status 200, or :class:`Answered`'s), or None
#: to let Flask answer.
Answer = tuple[bytes, list[tuple[str, str]]] | Answered | None
#: (the request's WSGI environ, the path segment in place of the rule's variable, or "") -> Answer.
Handler = Callable[[dict[str, Any], str], Answer]
#: Where a request's route is named for metrics (the Flask endpoint, which this door names too).
ENV_ROUTE = "giftrec.route"
#: Set by a write's handler once it has committed: a failure after it is not handed to Flask (which
#: would write again) but raised, as the view's own would be.
ENV_COMMITTED = "giftrec.fast.committed"


_VARIABLE = re.compile(r"<(?:[a-z_]+:)?[A-Za-z_][A-Za-z0-9_]*>")


class FastPath:
    """WSGI middleware: ``GET <prefix><one path segment><suffix>``, or ``GET <path>`` of a rule without a
    variable, goes to its handler first, the rest (and whatever a handler declines) to ``app``."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        #: By method: the rules with a variable segment, and those without (one dict lookup).
        self.routes: dict[str, list[tuple[str, str, Handler, str]]] = {}
        self.paths: dict[str, dict[str, tuple[Handler, str]]] = {}

    def add(self, rule: str, handler: Handler, endpoint: str, method: str = "GET") -> None:
        """Route ``method rule`` (``/v1/x/<name>/y`` or ``/v1/x``) to ``handler``, named ``endpoint`` for
        metrics."""
        found = _VARIABLE.findall(rule)
        if len(found) > 1 or not rule.startswith("/"):
            raise ValueError(f"a fast route has at most one variable segment: {rule!r}")
        paths, routes = self.paths.setdefault(method, {}), self.routes.setdefault(method, [])
        if not found:
            paths[rule] = (handler, endpoint)
            return
        prefix, suffix = rule.split(found[0])
        if not prefix.endswith("/") or (suffix and not suffix.startswith("/")):
            raise ValueError(f"the variable of a fast route must be a whole segment: {rule!r}")
        routes.append((prefix, suffix, handler, endpoint))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method in self.routes:
            answer = self._answer(environ, method)
            if answer is not None:
                body, headers, status, environ[ENV_ROUTE] = answer
                start_response(status, headers)
                return [body]
        return self.app(environ, start_response)

    def _answer(
        self, environ: WSGIEnvironment, method: str
    ) -> tuple[bytes, list[tuple[str, str]], str, str] | None:
        path: str = environ.get("PATH_INFO", "")
        exact = self.paths[method].get(path)
        if exact is not None:
            return self._call(exact[0], environ, "", path, exact[1])
        for prefix, suffix, handler, endpoint in self.routes[method]:
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
    ) -> tuple[bytes, list[tuple[str, str]], str, str] | None:
        try:
            answer = handler(environ, segment)
        except Exception:  # a bug in a handler: logged here, and Flask answers the request
            if environ.get(ENV_COMMITTED):
                raise
            log.exception("the fast path failed on %s; Flask answers", path)
            return None
        if answer is None:
            return None
        status = answer.status if isinstance(answer, Answered) else "200 OK"
        return answer[0], answer[1], status, endpoint


def _is_json(content_type: str) -> bool:
    """werkzeug's ``Request.is_json`` for a Content-Type header."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def json_body(environ: WSGIEnvironment, max_bytes: int) -> Any:
    """The request's JSON body, parsed as Flask's ``request.get_json()`` parses it, when it has a JSON
    content type and a Content-Length of at most ``max_bytes``; else None, with nothing read. What is read
    is put back as ``wsgi.input``, for Flask should the handler decline."""
    if not _is_json(environ.get("CONTENT_TYPE", "")) or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    announced = environ.get("CONTENT_LENGTH") or ""
    length = int(announced) if announced.isdigit() else -1
    if not 0 <= length <= max_bytes:
        return None
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    if len(raw) != length:  # the client sent less than it announced: Flask's error
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def route(app: Flask, rule: str, handler: Handler, endpoint: str, method: str = "GET") -> FastPath:
    """Answer ``method rule`` (a Flask rule with at most one variable segment) with ``handler`` before
    Flask (whose view for the same URL, ``endpoint``, answers whatever the handler declines)."""
    door = app.wsgi_app
    if not isinstance(door, FastPath):
        # Flask's documented place for WSGI middleware (as for werkzeug's ProxyFix).
        door = app.wsgi_app = FastPath(app.wsgi_app)  # type: ignore[method-assign]
    door.add(rule, handler, endpoint, method)
    return door
