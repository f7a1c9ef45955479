"""gunicorn's access line and the JSON log lines, against what they replaced (fast, in-process; the slow
`giftrec serve` test in test_observe.py checks every line a real server writes)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from api.gunicorn_conf import JsonLogger
from api.observe import ENV_REQUEST_ID
from domain.logs import json_formatter


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(
    ("status", "sent"), [("200 OK", 812), ("404 Not Found", 0), (503, None), ("499 Client Closed", 3)]
)
def test_the_access_line_has_the_fields_gunicorns_atoms_give(status, sent):
    """The access line takes its fields from the request and response directly, no longer through
    gunicorn's ``atoms`` (a tenth of a worker's time under load): the same values, field for field."""
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = JsonLogger(cfg)
    captured = _Records()
    logger.access_log.addHandler(captured)
    environ = {
        "REMOTE_ADDR": "10.1.2.3",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/v1/a%22b?q=1",
        "PATH_INFO": '/v1/a"b',
        "QUERY_STRING": "q=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'agent "x"',
        ENV_REQUEST_ID: "rid-1",
    }
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "application/json")])
    req = SimpleNamespace(headers=[("USER-AGENT", 'agent "x"')])
    took = dt.timedelta(seconds=1, microseconds=2345)
    logger.access(resp, req, environ, took)
    (record,) = captured.records
    atoms = logger.atoms(resp, req, environ, took)
    expected_status = int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"]
    assert {k: getattr(record, k) for k in ("remote", "method", "path", "query", "status")} == {
        "remote": atoms["h"],
        "method": atoms["m"],
        "path": atoms["U"],
        "query": atoms["q"],
        "status": expected_status,
    }
    assert (record.bytes, record.duration_us, record.request_id) == (atoms["B"], atoms["D"], "rid-1")
    assert (record.user_agent, record.referer) == ('agent "x"', None)
    assert record.getMessage() == f'GET /v1/a"b {expected_status}'


def test_a_json_lines_time_formatted_once_a_second_is_the_time_of_each_record():
    formatter = json_formatter()
    plain = logging.Formatter()
    for created in [1_700_000_000.0, 1_700_000_000.2, 1_700_000_000.999, 1_700_000_001.0, 1_699_999_999.5]:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created = created
        assert formatter.formatTime(record, "%Y-%m-%dT%H:%M:%S%z") == plain.formatTime(
            record, "%Y-%m-%dT%H:%M:%S%z"
        )


_ODD = [
    {"PATH_INFO": '/v1/a"b\\c', "QUERY_STRING": "q=%0A", "HTTP_USER_AGENT": 'agent "x"\n'},
    {
        "PATH_INFO": "/v1/caf\u00e9/\U0001f381",
        "QUERY_STRING": "",
        "HTTP_REFERER": "https://shop.example/\u00e9",
    },
    {"PATH_INFO": "/health/live"},
]


@pytest.mark.parametrize("created", [1_700_000_000.0, 1_700_000_000.7, 1_699_999_999.2])
@pytest.mark.parametrize("extra", _ODD)
def test_a_json_line_made_without_a_record_is_the_records_line(created, extra):
    """``JsonLines.line`` (the access line's direct path) gives, character for character, what
    ``format`` gives for a record of the same message, time and extra fields."""
    fields = {"request_id": "rid-9", "remote": "10.0.0.1", **extra, "status": 499, "bytes": None}
    formatter = json_formatter()
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%s %s", ("GET", "/x"), None)
    record.created = created
    for key, value in fields.items():
        setattr(record, key, value)
    line = formatter.line(created, "INFO", "gunicorn.access", "GET /x", fields)
    assert line == formatter.format(record)
    assert json.loads(line)["request_id"] == "rid-9"


@pytest.mark.parametrize("status", ["200 OK", "499 Client Closed", 503])
@pytest.mark.parametrize("extra", _ODD)
def test_the_access_line_written_directly_is_the_line_its_record_writes(tmp_path, status, extra):
    """A worker's access log (a file, gunicorn's handler) gets its line without a record: the same line,
    field for field and in the same order, as through the record (a second handler on the same logger
    makes it take that path)."""
    direct_file, record_file = tmp_path / "direct.log", tmp_path / "record.log"
    environ = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "POST", ENV_REQUEST_ID: "rid-2", **extra}
    resp = SimpleNamespace(status=status, sent=17, headers=[])
    took = dt.timedelta(microseconds=2345)
    lines = []
    for path, also in ((direct_file, None), (record_file, _Records())):
        cfg = Config()
        cfg.set("accesslog", str(path))
        logger = JsonLogger(cfg)
        # gunicorn's access logger is process-wide: a worker's has gunicorn's handler only, not the test
        # run's (pytest's capture, other tests').
        others = [h for h in logger.access_log.handlers if not getattr(h, "_gunicorn", False)]
        for handler in others:
            logger.access_log.removeHandler(handler)
        if also is not None:
            logger.access_log.addHandler(also)
        logger.access(resp, SimpleNamespace(headers=[]), environ, took)
        logger.access(resp, SimpleNamespace(headers=[]), environ, took)
        assert logger._seen[1] is (also is None)  # written directly, or through the record
        if also is not None:
            assert len(also.records) == 2
        for handler in list(logger.access_log.handlers):
            handler.close()
            logger.access_log.removeHandler(handler)
        for handler in others:
            logger.access_log.addHandler(handler)
        written = path.read_text(encoding="utf-8").splitlines()
        assert len(written) == 2
        lines.append([list(json.loads(line).items()) for line in written])
    direct, through_record = lines
    for a, b in zip(direct, through_record, strict=True):
        assert a[0][0] == b[0][0] == "time"
        assert a[1:] == b[1:]
