"""JSON log lines for every process: web workers, gunicorn, the scheduler and the `giftrec` commands.

One object per line (``python-json-logger``): ``time``, ``level``, ``logger``, ``message``, ``request_id``
(None outside a request) and ``exc_info`` when there is an exception, every value JSON-escaped, so that
no request path, user agent or traceback can break a line. The request id is set by the web door
(``api/observe.py``) in :data:`current_request_id`; a record that brings its own (gunicorn's access line)
keeps it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from types import TracebackType
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

#: The id of the request this thread (or task) is answering, for log records.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record that does not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JsonLines(JsonFormatter):
    """python-json-logger's formatter with the time formatted once a second: its format has no fraction
    of a second, and a web worker writes an access line for every request."""

    _last: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        last = self._last
        if last[0] != second:
            last = self._last = (second, super().formatTime(record, datefmt))
        return last[1]

    def line(self, created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> str:
        """The line :meth:`format` writes for a record of ``logger`` at ``level`` made at ``created``,
        whose message is ``message`` and whose ``extra`` is ``fields`` (with its ``request_id``), made
        without the record: the same fields in the same order, serialised by the same call.

        For gunicorn's access line, written once per request: a logging call spends most of its time
        on the record (the caller's frame, the thread and process names) and on finding its extra
        fields among the record's attributes (docs/performance.md)."""
        last = self._last
        when = last[1] if last[0] == int(created) else self._time_of(created)
        data: dict[str, Any] = {
            "time": when,
            "level": level,
            "logger": logger,
            "message": message,
            "request_id": fields.get("request_id"),
        }
        data.update(fields)
        return self.serialize_log_record(self.process_log_record(data))

    def _time_of(self, created: float) -> str:
        record = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
        record.created = created
        return self.formatTime(record, self.datefmt)


def json_formatter() -> logging.Formatter:
    """time, level, logger, message, request id; any ``extra`` fields of a record after them."""
    return JsonLines(
        "{asctime}{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler that writes one JSON object per record to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    handler.giftrec_json = True  # type: ignore[attr-defined]  # recognised by configure_logging
    return handler


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None, force: bool = False) -> None:
    """The process logs JSON lines to stderr at ``level``, its warnings and uncaught exceptions included.

    Like ``logging.basicConfig``, it leaves a root logger that already has handlers alone unless ``force``
    (a test's log capture); once configured, a later call only changes the level.
    """
    root = logging.getLogger()
    if any(getattr(h, "giftrec_json", False) for h in root.handlers):
        root.setLevel(level)
        return
    if root.handlers and not force:
        return
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(json_handler(stream))
    root.setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("giftrec").critical("uncaught exception", exc_info=(kind, value, tb))
