"""Benchmark: CPU instructions per API request, counted by valgrind's callgrind (not timed).

Run from the repository root (by hand; needs Debian's ``valgrind``, and the database of a previous
``bench.bench_api`` run)::

    .venv/bin/python -m bench.bench_api_instructions --workdir DIR [--requests 100] [--customers 300]

Time per request on a shared 2-vCPU machine moves with the neighbours by tens of percent; the number of
instructions a request executes does not (callgrind counts them; the same code and inputs give the same
count to within a few hundred per request). So this compares two versions of the hot path, e.g. two
checkouts run one after the other, where ``bench_api`` cannot tell a 5 % change from noise.

In one process under callgrind (about 10 minutes: valgrind runs Python some 50x slower): the app of
``api.wsgi`` on the bench database, called as a WSGI callable (no sockets, no gunicorn); ``--customers``
known customers each asked once and ``--warm`` random recommendations requests (rankings and
explanations kept, as in a warm worker); then, counted, ``--requests`` random recommendations requests
(the ``bench_api`` mix: n=10, a price range, two excluded SKUs), as many to a second app with
``api.picks_cache_customers = 0`` (every request ranks: a customer's first request in a worker), and as
many ``GET /health/live``. Printed: instructions per request of each and their ratio to the trivial one.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import json
import operator
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench._common import machine_line, print_table

SEED = 5
# The counted loops run inside these C functions, which nothing else in a request calls: callgrind
# collects only between entering and leaving them (--toggle-collect).
TOGGLES = {
    "recommendations": "_operator_call",
    "recommendations, ranked per request": "starmap_next",
    "trivial": "functools_reduce",
}


def child(workdir: str, customers: int, warm: int, requests: int) -> None:
    """Runs under callgrind: warm up uncounted, then the counted loops."""
    from api import create_app
    from bench.bench_api import inprocess_settings

    setup = json.loads((Path(workdir) / "setup.json").read_text())
    settings = inprocess_settings(workdir)
    app = create_app(settings)
    ranking_app = create_app(replace(settings, api=replace(settings.api, picks_cache_customers=0)))
    ids, skus, key = setup["customers"][:customers], setup["skus"], setup["key"]

    def call(path: str, query: str, with_key: bool = True, app: Any = app) -> None:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
        }
        if with_key:
            environ["HTTP_X_API_KEY"] = key
        statuses: list[str] = []
        body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        try:
            b"".join(body)
        finally:
            close = getattr(body, "close", None)  # the fast path answers a plain list
            if close is not None:
                close()
        if not statuses[0].startswith("200"):
            raise SystemExit(f"{path}?{query} answered {statuses[0]}")

    rng = random.Random(SEED)

    def recommendations(app: Any = app) -> None:
        lo = rng.randint(0, 3)
        call(
            f"/v1/customers/{rng.choice(ids)}/recommendations",
            f"n=10&min_price={lo}&max_price={lo + rng.randint(5, 40)}"
            f"&exclude={rng.choice(skus)},{rng.choice(skus)}",
            app=app,
        )

    for customer in ids:
        call(f"/v1/customers/{customer}/recommendations", "n=10")
        call(f"/v1/customers/{customer}/recommendations", "n=10", app=ranking_app)
    for _ in range(warm):
        recommendations()
    for _ in range(min(warm, 200)):  # nothing is kept: this only warms the model's and catalog's caches
        recommendations(ranking_app)

    def counted() -> None:
        for _ in range(requests):
            recommendations()

    operator.call(counted)
    list(itertools.starmap(recommendations, [(ranking_app,)] * requests))
    functools.reduce(lambda _, __: call("/health/live", "", with_key=False), range(requests), None)
    app.extensions["giftrec"].close()
    ranking_app.extensions["giftrec"].close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="the --workdir of a bench.bench_api run")
    parser.add_argument("--requests", type=int, default=100, help="counted requests of each endpoint")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--warm", type=int, default=2000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workdir, args.customers, args.warm, args.requests)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    workdir = Path(args.workdir).resolve()
    if not (workdir / "setup.json").exists():
        raise SystemExit(f"{workdir} holds no bench_api run: run bench.bench_api --workdir {workdir} first")
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="giftrec-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            *(f"--toggle-collect={name}" for name in TOGGLES.values()),
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.bench_api_instructions",
            "--child",
            "--workdir",
            str(workdir),
            "--requests",
            str(args.requests),
            "--customers",
            str(args.customers),
            "--warm",
            str(args.warm),
        ]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"the counted run failed:\n{run.stderr[-3000:]}")
        report = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(out)], capture_output=True, text=True, check=True
        ).stdout
    per_request = {}
    for endpoint, function in TOGGLES.items():
        m = re.search(rf"^\s*([\d,]+) .*:{function} ", report, re.MULTILINE)
        if not m:
            raise SystemExit(f"callgrind reported nothing for {function}")
        per_request[endpoint] = int(m.group(1).replace(",", "")) / args.requests
    print()
    print(
        f"instructions per request (callgrind), {args.requests} requests of each, after "
        f"{args.customers} customers and {args.warm} requests of warm-up"
    )
    trivial = per_request["trivial"]
    print_table(
        ["endpoint", "instructions", "ratio to trivial"],
        [[name, round(value), value / trivial] for name, value in per_request.items()],
    )


if __name__ == "__main__":
    main()
