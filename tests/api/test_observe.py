"""Request ids and JSON logs (api/observe.py): every response carries the id, every log line too."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api import observe
from tests.api.helpers import bearer
from tests.api.processes import free_port, status, until

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_the_load_balancers_request_id_is_echoed_and_a_missing_one_is_made(app, client, keys, shop):
    given = client.get("/health/live", headers={"X-Request-ID": "lb-7f3a.2:9"})
    assert given.headers["X-Request-ID"] == "lb-7f3a.2:9"
    made = [client.get("/health/live").headers["X-Request-ID"] for _ in range(2)]
    assert all(HEX32.fullmatch(rid) for rid in made) and made[0] != made[1]
    # Not something to paste into logs or headers as is: too long, or characters outside the set.
    for bad in ("x" * 129, "a b", 'a"b', "a\u00e9"):
        rid = client.get("/health/live", headers={"X-Request-ID": bad.encode("utf-8").decode("latin-1")})
        assert HEX32.fullmatch(rid.headers["X-Request-ID"]), bad


def test_made_request_ids_differ_across_requests_and_forked_workers():
    """A made id is 32 hex digits, new for each request, and a forked worker (gunicorn's) does not repeat
    its parent's sequence."""
    made = {observe.request_id_of({}) for _ in range(2000)}
    assert len(made) == 2000 and all(HEX32.fullmatch(rid) for rid in made)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its first id and leaves at once
        os.write(write, observe.request_id_of({}).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert HEX32.fullmatch(child) and child != observe.request_id_of({})


def test_problem_responses_and_the_fast_path_carry_the_request_id(app, client, keys, shop):
    unknown = client.get(
        "/v1/customers/NOPE/recommendations", headers={**bearer(keys["server"]), "X-Request-ID": "r-1"}
    )
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"
    assert unknown.headers["X-Request-ID"] == "r-1"
    invalid = client.get(
        "/v1/customers/C1/recommendations?n=0", headers={**bearer(keys["server"]), "X-Request-ID": "r-2"}
    )
    assert invalid.status_code == 422 and invalid.headers["X-Request-ID"] == "r-2"
    unauthorized = client.get("/v1/bestsellers", headers={"X-Request-ID": "r-3"})
    assert unauthorized.status_code == 401 and unauthorized.headers["X-Request-ID"] == "r-3"
    answered = client.get(
        "/v1/customers/C1/recommendations?n=2", headers={**bearer(keys["server"]), "X-Request-ID": "r-4"}
    )
    assert answered.status_code == 200 and answered.headers["X-Request-ID"] == "r-4"
    assert answered.headers.getlist("X-Request-ID") == ["r-4"]


def test_log_lines_are_json_with_the_request_id(app, client):
    stream = io.StringIO()
    handler = observe.json_handler(stream)
    logger = logging.getLogger("tests.observe")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @app.get("/test-log")
    def _log_something():  # type: ignore[no-untyped-def]
        logger.info("inside the request")
        return {"ok": True}

    try:
        client.get("/test-log", headers={"X-Request-ID": "abc-123"})
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "inside the request" and inside["request_id"] == "abc-123"
    assert inside["level"] == "INFO" and inside["logger"] == "tests.observe" and inside["time"]
    assert outside["request_id"] is None and outside["level"] == "WARNING"


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _serve(settings: Any, tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    """`giftrec serve` (one worker, ``options``) on a free port, its stdout and stderr to files."""
    port = free_port()
    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=settings.database.url,
        GIFTREC_SERVER_INSTANCE_DIR=settings.server.instance_dir,
        GIFTREC_SERVER_SECRET_KEY="test",
        GIFTREC_MODEL_ARTIFACT_DIR=settings.model.artifact_dir,
        GIFTREC_MAIL_SMTP_PORT="9",  # nothing is queued; a catch-up send must not reach a real relay
        # a Redis nobody listens on: the app logs its failure, with a traceback, inside requests
        GIFTREC_API_RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{free_port()}/0",
    )
    giftrec = shutil.which("giftrec", path=os.path.dirname(sys.executable)) or "giftrec"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        serve = subprocess.Popen(
            [giftrec, "serve", "--port", str(port), "--workers", "1", *options],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    return serve, port, out, err


def _records(*files: Path) -> list[dict[str, Any]]:
    """Every line of ``files``, each parsed as one JSON object."""
    lines = [line for name in files for line in name.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return records


@pytest.mark.slow
def test_every_line_giftrec_serve_and_its_scheduler_write_is_json(settings, sessions, tmp_path):
    """Regression: gunicorn's access line was a printf template without JSON escaping (a quote or a
    backslash in a path or user agent broke it), gunicorn's own lines and the scheduler's were plain text.
    Every line the web workers, gunicorn and the scheduler write must parse, hostile requests included."""
    serve, port, out, err = _serve(settings, tmp_path, "--with-scheduler")
    try:
        until(lambda: _answers(port), 120)
        until(lambda: b"job send-outbox" in err.read_bytes(), 120)  # the scheduler ran its catch-up
        hostile = (
            b'GET /v1/no"such\\path%0Anext%22line?q="x\\y HTTP/1.1\r\nHost: localhost\r\n'
            b'User-Agent: agent "quoted" \\back\\ \t tab\r\nX-Request-ID: hostile-1\r\n'
            b"Connection: close\r\n\r\n"
        )
        assert _raw_request(port, hostile).startswith(b"HTTP/1.1 404")
        for path, rid, answer in [
            (b"/health/ready", b"ready-1", b"200"),
            (b"/v1/bestsellers", b"key-1", b"401"),
        ]:
            request = b"GET %s HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: %s\r\n" % (path, rid)
            assert _raw_request(port, request + b"Connection: close\r\n\r\n").startswith(
                b"HTTP/1.1 " + answer
            )
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(90)
    records = _records(out, err)
    access = [r for r in records if r.get("request_id") == "hostile-1" and r["logger"] == "gunicorn.access"]
    assert len(access) == 1, records
    assert access[0]["path"] == '/v1/no"such\\path\nnext"line'
    assert access[0]["query"] == 'q="x\\y'
    assert access[0]["user_agent"] == 'agent "quoted" \\back\\ \t tab'
    assert access[0]["status"] == 404 and access[0]["method"] == "GET"
    # the app's own line inside a request carries its id; the scheduler's and gunicorn's lines are JSON too
    assert any(r["request_id"] == "ready-1" and r["logger"] == "api.health" for r in records)  # degraded
    failed = [r for r in records if r["request_id"] == "key-1" and r["logger"] == "api.auth"]
    assert len(failed) == 1 and "ConnectionError" in failed[0]["exc_info"]  # a traceback, in one line
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "jobs", "jobs.scheduler"} <= loggers, loggers
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def _answers(port: int) -> bool:
    try:
        return status(f"http://127.0.0.1:{port}/health/live", {}) == 200
    except OSError:
        return False


@pytest.mark.slow
def test_giftrec_serve_without_its_access_log_writes_no_access_line(settings, sessions, tmp_path):
    """``--no-access-log``: gunicorn writes no access line (a load balancer's log may make it redundant,
    at 2 to 6 % of a worker's CPU); its own lines and the app's still come, as JSON."""
    serve, port, out, err = _serve(settings, tmp_path, "--no-access-log")
    try:
        until(lambda: _answers(port), 120)
        request = b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: quiet-1\r\n"
        assert _raw_request(port, request + b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(90)
    records = _records(out, err)
    assert not [r for r in records if r["logger"] == "gunicorn.access"], records
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    assert any(r["request_id"] == "quiet-1" and r["logger"] == "api.health" for r in records)  # degraded
