"""Benchmark: the load generator of ``bench_deploy`` alone: its CPU per request, and gunicorn's, by connection
mode (a new connection per request, or kept) and event loop (asyncio's, uvloop).

Run from the repository root, by hand (never by the test suite), bounded with ``timeout``::

    timeout 300 .venv/bin/python -m bench.bench_loadgen [--seconds 8] [--connections 16]

Two gunicorn processes (one ``gthread`` worker with 4 threads each, the deployment's keepalive) serve a
WSGI app that answers every request with a fixed 250-byte JSON body and no database, so that what is
measured is the HTTP exchange: the generators (``bench/_load.py``, 2 processes, the mix and request bytes of
``bench_deploy``, closed loop) report their CPU seconds; gunicorn's are read from ``/proc`` (each process
with its worker). Printed per mode and loop: requests, req/s, CPU ms per request of the generators and of
gunicorn, connections opened, errors. Wall-clock figures (req/s) depend on the machine's load; the CPU per
request much less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench._common import machine_line, print_table, tree_cpu_seconds
from bench._load import connection_summary, generator, zipf_cum

REPO = Path(__file__).resolve().parent.parent
BODY = json.dumps({"items": [{"sku": f"{i}", "score": 0.5} for i in range(10)]}).encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The trivial WSGI app: reads the request's body, answers 200 with :data:`BODY`."""
    if environ.get("CONTENT_LENGTH"):
        environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="each mode's closed loop")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    from api.gunicorn_conf import keepalive
    from bench.bench_deploy import _bin, _free_port

    print(machine_line())
    ports = [_free_port(), _free_port()]
    servers = [
        subprocess.Popen(
            [_bin("gunicorn"), "--workers", "1", "--threads", "4", "--keep-alive", str(keepalive)]
            + ["--bind", f"127.0.0.1:{port}", "bench.bench_loadgen:app"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    customers = [str(12_000 + i) for i in range(4_000)]
    skus = [f"S{i}" for i in range(3_000)]
    plan: dict[str, Any] = {
        "ports": ports,
        "customers": customers,
        "customer_cum": zipf_cum(len(customers)),
        "skus": skus,
        "sku_cum": zipf_cum(len(skus)),
        "server": "k" * 43,
        "generators": 2,
        "schedule": None,
    }
    per_gen = [args.connections // 2 + args.connections % 2, args.connections // 2]
    table = []
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("gunicorn did not start") from None
                    time.sleep(0.2)
        with tempfile.TemporaryDirectory(prefix="giftrec-bench-loadgen-") as work:
            for keep in (False, True):
                for loop in ("asyncio", "uvloop"):
                    plan.update(keep_alive=keep, uvloop=loop == "uvloop")
                    results = [str(Path(work) / f"gen{i}.json") for i in range(2)]
                    until = time.monotonic() + args.seconds
                    ctx = multiprocessing.get_context("fork")
                    gens = [
                        ctx.Process(target=generator, args=(i, plan, per_gen[i], until, results[i]))
                        for i in range(2)
                    ]
                    before = tree_cpu_seconds([s.pid for s in servers])
                    for g in gens:
                        g.start()
                    for g in gens:
                        g.join()
                    served = tree_cpu_seconds([s.pid for s in servers]) - before
                    outs = [json.loads(Path(r).read_text()) for r in results]
                    rows = [row for out in outs for row in out["rows"]]
                    cpu = sum(out["cpu_seconds"] for out in outs)
                    conns = connection_summary([out["connections"] for out in outs])
                    n = max(1, len(rows))
                    table.append(
                        [
                            "kept" if keep else "one per request",
                            loop,
                            len(rows),
                            len(rows) / args.seconds,
                            f"{cpu * 1000 / n:.3f}",
                            f"{served * 1000 / n:.3f}",
                            conns["connects"],
                            sum(1 for row in rows if row[2] != 200),
                        ]
                    )
    finally:
        for s in servers:
            s.terminate()
        for s in servers:
            s.wait(30)
    print(
        f"closed loop, {args.connections} connections over 2 generator processes, {args.seconds:g} s "
        f"each; gunicorn keepalive {keepalive} s"
    )
    print_table(
        [
            "connections",
            "loop",
            "requests",
            "req/s",
            "generators CPU ms / request",
            "gunicorn CPU ms / request",
            "opened",
            "errors",
        ],
        table,
    )


if __name__ == "__main__":
    main()
