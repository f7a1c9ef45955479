"""Benchmark: the CPU of gunicorn's access line as `giftrec serve` writes it (api/gunicorn_conf.py).

Run from the repository root, by hand (never by the test suite)::

    timeout 300 .venv/bin/python -m bench.bench_access_log [--lines 20000] [--rounds 7]

A :class:`~api.gunicorn_conf.JsonLogger` as gunicorn sets it up for ``--access-logfile -``, its stream
replaced by an in-memory one (the write to a pipe or file is the same either way), writes ``--lines``
access lines for a request shaped like a storefront read (its environ, 12 request headers, 9 response
headers). Printed per part, thread CPU per line (``time.thread_time``, median of ``--rounds``): the
whole access line; of it the JSON record alone (``logging``'s record, filter, formatter and write); and
gunicorn's ``atoms()`` for the same request, which the line computed every time until 2026-12-03 and no
longer does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import time
from types import SimpleNamespace
from typing import Any

from bench._common import machine_line, print_table


def _request() -> tuple[Any, Any, dict[str, Any]]:
    headers = [
        ("HOST", "shop.example"),
        ("USER-AGENT", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"),
        ("ACCEPT", "application/json"),
        ("ACCEPT-ENCODING", "gzip, deflate, br"),
        ("ACCEPT-LANGUAGE", "en-GB,en;q=0.9"),
        ("X-API-KEY", "gr_widget_0123456789abcdef"),
        ("X-REQUEST-ID", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        ("REFERER", "https://shop.example/gifts/for-her"),
        ("ORIGIN", "https://shop.example"),
        ("CONNECTION", "keep-alive"),
        ("SEC-FETCH-MODE", "cors"),
        ("SEC-FETCH-SITE", "same-site"),
    ]
    environ = {
        "REMOTE_ADDR": "10.0.0.7",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/v1/customers/C-12345/recommendations?n=8",
        "PATH_INFO": "/v1/customers/C-12345/recommendations",
        "QUERY_STRING": "n=8",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": headers[1][1],
        "HTTP_REFERER": headers[7][1],
        "giftrec.request_id": headers[6][1],
    }
    resp = SimpleNamespace(
        status="200 OK",
        sent=1834,
        headers=[
            ("Content-Type", "application/json"),
            ("Content-Length", "1834"),
            ("ETag", '"a1b2c3"'),
            ("Cache-Control", "private, max-age=60"),
            ("X-RateLimit-Limit", "600"),
            ("X-RateLimit-Remaining", "599"),
            ("X-RateLimit-Reset", "1764748800"),
            ("X-Request-ID", headers[6][1]),
            ("Vary", "X-Api-Key"),
        ],
    )
    return resp, SimpleNamespace(headers=headers), environ


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(machine_line())

    from gunicorn.config import Config

    from api.gunicorn_conf import JsonLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = JsonLogger(cfg)
    sink = io.StringIO()
    for handler in logger.access_log.handlers:
        handler.setStream(sink)  # type: ignore[attr-defined]
    resp, req, environ = _request()
    took = dt.timedelta(microseconds=8_421)
    record_fields = {"request_id": environ["giftrec.request_id"], "path": environ["PATH_INFO"], "status": 200}

    def per_line(call: Any) -> float:
        rounds = []
        for _ in range(args.rounds):
            sink.seek(0)
            sink.truncate()
            started = time.thread_time()
            for _ in range(args.lines):
                call()
            rounds.append((time.thread_time() - started) / args.lines)
        return statistics.median(rounds) * 1e6

    parts = [
        ("the access line (JsonLogger.access)", lambda: logger.access(resp, req, environ, took)),
        (
            "of it, the JSON record (logging: record, filter, formatter, write)",
            lambda: logger.access_log.info("GET /v1/... 200", extra=record_fields),
        ),
        (
            "gunicorn's atoms() of the request (no longer computed)",
            lambda: logger.atoms(resp, req, environ, took),
        ),
    ]
    rows = [[name, f"{per_line(call):.1f}"] for name, call in parts]
    # The same record through python-json-logger's formatter as it is: the time formatted every line.
    from pythonjsonlogger.json import JsonFormatter

    mine = [handler.formatter for handler in logger.access_log.handlers]
    for handler, formatter in zip(logger.access_log.handlers, mine, strict=True):
        before = JsonFormatter.__new__(JsonFormatter)  # the same settings, python-json-logger's class
        before.__dict__.update({k: v for k, v in vars(formatter).items() if k != "_last"})
        handler.setFormatter(before)
    rows.append(
        [
            "the JSON record, its time formatted every line (before)",
            f"{per_line(lambda: logger.access_log.info('GET /v1/... 200', extra=record_fields)):.1f}",
        ]
    )
    for handler, formatter in zip(logger.access_log.handlers, mine, strict=True):
        handler.setFormatter(formatter)
    print_table(["part", "CPU us per line"], rows)


if __name__ == "__main__":
    main()
