"""gunicorn settings that ``giftrec serve`` loads (``--config python:api.gunicorn_conf``): JSON log lines
for gunicorn's own messages and its access log, and the metrics of exited workers."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from gunicorn import glogging

from api.observe import ENV_REQUEST_ID
from domain.logs import JsonLines, RequestIdFilter, json_formatter


class JsonLogger(glogging.Logger):
    """gunicorn's logger, writing what :mod:`domain.logs` writes: one JSON object per line.

    gunicorn fills its access-log template (``--access-logformat``) by printf, without escaping: a ``"`` or
    ``\\`` in a path or a user agent, or a percent-encoded newline in a path, broke the line. Here the
    access line is a record whose fields python-json-logger escapes, with the request id the app set; to
    gunicorn's own stream or file handlers the same line is written without making the record.
    """

    #: The access log's handlers last looked at, and whether a line goes to them directly (see
    #: :func:`_direct`).
    _seen: tuple[tuple[logging.Handler, ...], bool] = ((), False)

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(json_formatter())
                    handler.addFilter(RequestIdFilter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: dt.timedelta) -> None:
        """One access line, its fields taken as gunicorn's atoms would give them. Not through
        :meth:`atoms`, which also formats the time, the request line and every request and response
        header into a dict for a template this logger never fills: a tenth of a worker's time under load
        went to this line (docs/performance.md)."""
        if not self.access_log_enabled:
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
            status = int(status) if status.isdigit() else status
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        fields = {
            "request_id": environ.get(ENV_REQUEST_ID),
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": method,
            "path": path,
            "query": environ.get("QUERY_STRING"),
            "status": status,
            "bytes": getattr(resp, "sent", None),
            "duration_us": request_time.seconds * 1_000_000 + request_time.microseconds,
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "referer": environ.get("HTTP_REFERER"),
        }
        log = self.access_log
        handlers = tuple(log.handlers)
        seen = self._seen
        if seen[0] != handlers:
            seen = self._seen = (handlers, _direct(log))
        if not (seen[1] and log.isEnabledFor(logging.INFO)):
            log.info("%s %s %s", method, path, status, extra=fields)
            return
        # The line the record would give, written as its handlers would write it (docs/performance.md:
        # the access line took 6 to 8 % of a worker's CPU under load, about half of it the record's).
        message, created = f"{method} {path} {status}", time.time()
        for handler in handlers:
            assert isinstance(handler, logging.StreamHandler) and isinstance(handler.formatter, JsonLines)
            line = handler.formatter.line(created, "INFO", log.name, message, fields)
            handler.acquire()  # as Handler.handle: one line at a time
            try:
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
            except Exception:  # noqa: BLE001 - as logging's emit: reported on stderr, never raised
                handler.handleError(logging.makeLogRecord({"name": log.name, "msg": message}))
            finally:
                handler.release()


def _direct(log: logging.Logger) -> bool:
    """Whether an access line can be written to ``log``'s handlers without a record: each a plain stream
    or file handler, open, with the JSON formatter and no filter but the request id's, on a logger that
    filters nothing and passes nothing up. Any other handler (syslog, a rotating file, a test's capture)
    gets the record."""
    if log.propagate or log.filters or not log.handlers:
        return False
    return all(
        type(handler) in (logging.StreamHandler, logging.FileHandler)
        and isinstance(handler, logging.StreamHandler)
        and handler.stream is not None
        and isinstance(handler.formatter, JsonLines)
        and handler.level <= logging.INFO
        and all(isinstance(f, RequestIdFilter) for f in handler.filters)
        for handler in log.handlers
    )


logger_class = JsonLogger

#: Seconds a ``gthread`` worker (``--threads`` above 1) keeps an idle HTTP/1.1 connection open for the next
#: request (the ``sync`` worker closes every connection whatever this says). A load balancer that keeps its
#: upstream connections (nginx ``upstream { keepalive N; }``, docs/deployment.md) must close an idle one
#: before gunicorn does: nginx's ``keepalive_timeout`` there is 60 s, so gunicorn waits longer. With
#: gunicorn's default of 2 s it closes connections the balancer may be about to reuse, and a POST sent on
#: one as it closes fails (nginx retries only idempotent requests on another connection).
keepalive = 75


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges leave /metrics (prometheus-client's multiprocess mode); its
    counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
