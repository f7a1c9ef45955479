"""Benchmark: the scaled-out deployment under mixed traffic while a new model is trained and hot-swapped.

Run from the repository root, by hand (never by the test suite), bounded with ``timeout``::

    timeout 1200 .venv/bin/python -m bench.bench_deploy [ORDERS_FILE] [--duration 60] [--connections 16]
        [--rate R] [--keep-alive] [--loop uvloop|asyncio] [--durable] [--mix NAME=SHARE,...]

Needs Debian's ``postgresql`` and ``redis-server``. Setup, not measured: a PostgreSQL server
(``.ci/postgres.sh``: without fsync and with asynchronous commits, as the test server, unless
``--durable``, which keeps PostgreSQL's defaults as a production server would: each write's commit then
waits for its WAL flush) and a Redis server on free loopback ports, ``giftrec db upgrade``, the orders file
imported (default: the bundled sample), a model trained, a server and an admin key. Then two gunicorn web
processes on two ports (their own instance folders: they share only PostgreSQL and Redis; Redis is the
rate-limit storage) and one scheduler (it holds the lease; its jobs are not due during the run).

The load generator (``--generators`` processes, asyncio on uvloop, or ``--loop asyncio``, ``--connections``
concurrent requests in all, ``bench/_load.py``) assigns connections to the two ports round-robin, as a
load balancer does. By default each request goes on a new connection (``Connection: close``), as in the
figures measured before ``--keep-alive`` existed. With ``--keep-alive`` the connections are kept,
HTTP/1.1, as a load balancer keeps its upstream connections (nginx ``keepalive``, docs/deployment.md): in
closed loop each connection has its own kept connection to its port, in open loop each port a pool of
them that any free slot uses. A kept connection that the server closes (``Connection: close``, or closed
while idle, found before the send) is replaced and counted; a request whose connection fails after it was
sent is an error, never sent again. By default it runs closed loop (each connection sends its next
request as soon as the last one returned). With ``--rate R`` it runs open loop, as a storefront's
visitors arrive: R requests a second over all connections at send times drawn in advance (Poisson
arrivals, seeded), at most ``--connections`` in flight, and every latency counts from the request's
scheduled send time, so a request that waited for a free connection counts its wait (no coordinated
omission); the achieved rate, the late and the dropped requests are
printed. Either way it sends a realistic mix:

- 55 % recommendations for a customer drawn from a Zipf distribution (s = 1) over every customer with
  orders, so a few come back often and most are asked for once or twice (not in any worker's cache);
- 15 % similar items of a product drawn the same way over the sold products;
- 10 % bestsellers;
- 10 % writes: 6 % view events, 4 % one-line orders, for Zipf-drawn customers (their rows reload);
- 10 % the bare Flask endpoint ``/health/live`` (no key, no database), measured in the same run.

``--mix`` sends another mix, e.g. ``--mix recommendations=65,similar=15,bestsellers=10,health=10`` (no
writes: what the writes cost the rest, measured as a difference; names ``recommendations``, ``similar``,
``bestsellers``, ``events``, ``orders``, ``health``; relative shares, a kind left out is not sent).

At ``--train-at`` (a share of the duration) ``giftrec train`` runs as a separate process (the scheduler's
host would run it): the new model is stored in PostgreSQL and both web processes load it within their
``model.reload_interval`` (set to ``--reload-interval``), under load. The moment each process serves the
new version is recorded from ``/health/ready``.

Printed: the machine and its load average (before and after), the connection mode and the connections
opened, per endpoint the requests, req/s, p50 and p99 latency (client-side, from the send, a new
connection's connect included, in open loop from the scheduled send, to the last byte) and
errors (any status that is not 2xx, or a failed connection), the run's timeline (``--slices`` parts of
the duration: all requests per second sent in each, and recommendations' p50 and p99), the hot swap's
times, the share of recommendation requests that were a customer's first at that process,
recommendations' p50 and p99 within 2 s of a swap and outside that window, and the rate-limit check: the
counter both processes report for the server key (from ``X-RateLimit-Remaining``) against the requests
sent with it through both ports. One shared budget means the two are equal; per-process counters would
each show about half. Then the CPU each part used during the load (user + system seconds from ``/proc``:
each web process with its workers, PostgreSQL with its backends, Redis, the scheduler, the training's
whole run, the load generators, this process, and the rest of the machine's busy time, which is other
people's work on a shared host), also as CPU ms per request of the run.

Each web process is started as deployed, by ``giftrec serve --workers N`` (``--workers``, default 1): its
gunicorn loads api/gunicorn_conf.py (the ``keepalive`` an idle connection is kept for, JSON access log
lines, written to a file in the run's folder as a log collector would read them) and counts its metrics
in prometheus-client's multiprocess mode. ``--threads N`` gives each gunicorn worker N threads
(``GUNICORN_CMD_ARGS``, as docs/deployment.md says; its ``gthread`` worker; the ``sync`` worker of
``--threads 1`` closes every connection, so ``--keep-alive`` then reconnects for every request).
Figures recorded before 2026-12-03 ran gunicorn directly, without its config: no access log, and the
metrics in one process's memory.
``--train-prefix 'nice -n 19'`` runs the training under that command (docs/deployment.md, web processes
on a small host).

Goals (issue 18): 0 errors; recommendations p99 <= 25 ms at 16 connections; one rate-limit budget.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench._common import (
    buyers_and_skus,
    machine_busy_seconds,
    machine_line,
    percentile,
    print_table,
    tree_cpu_seconds,
)
from bench._load import (
    DRAIN_SECONDS,
    DROPPED,
    LATE_MS,
    MIX,
    MIX_NAMES,
    SEED,
    connection_summary,
    generator,
    open_loop_summary,
    parse_mix,
    poisson_schedule,
    zipf_cum,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "data" / "online_retail_sample.csv.gz"
RATE_LIMIT = 10_000_000


# ---------------------------------------------------------------------------------------------- setup
def child_setup() -> None:
    """Customers with orders, sold SKUs, a server and an admin key (in a child with the bench's env)."""

    from config import load_settings
    from domain.access import api_keys
    from domain.db import make_engine, make_session_factory, session_scope

    engine = make_engine(load_settings().database.url)
    with session_scope(make_session_factory(engine)) as session:
        customers, skus = buyers_and_skus(session)
        server = api_keys.create_key(session, "server", name="bench_deploy")[1]
        admin = api_keys.create_key(session, "admin", name="bench_deploy admin")[1]
    engine.dispose()
    print(json.dumps({"customers": customers, "skus": skus, "server": server, "admin": admin}))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _giftrec(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [_bin("giftrec"), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _get_json(url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return dict(json.load(resp))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _served(port: int, admin: str) -> str | None:
    body = _get_json(f"http://127.0.0.1:{port}/health/ready", {"Authorization": f"Bearer {admin}"})
    if body is None:
        return None
    return body.get("checks", {}).get("model", {}).get("version")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _workers(serve: int) -> list[int]:
    """The gunicorn workers under a `giftrec serve` process (its gunicorn master's children)."""
    return [w for master in _children(serve) for w in _children(master)]


def _wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {seconds} s")
        time.sleep(0.2)


def _mix(text: str) -> tuple[tuple[str, float], ...]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connections_line(conns: dict[str, int], requests: int, args: argparse.Namespace) -> str:
    """What the load generators' connections did: opened, and why kept ones were replaced."""
    opened = f"{conns['connects']} connections opened for {requests} requests"
    failed = f"{conns['failed']} requests failed on their connection (errors, not sent again)"
    if not args.keep_alive:
        return f"connections: a new one per request: {opened}; {failed}"
    reconnects = conns["told_close"] + conns["stale"] + conns["failed"]
    return (
        f"connections: kept (HTTP/1.1): {opened}; {reconnects} reconnects: after the server's "
        f"Connection: close {conns['told_close']}, found closed before a send {conns['stale']} (the "
        f"request then went on a new connection, sent once), after a failed request {conns['failed']}; "
        f"{failed}"
    )


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=16, help="requests in flight (at most, open loop)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: requests per second over all connections (Poisson arrivals); default closed loop",
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="keep each connection (HTTP/1.1) for its next requests; default: a new connection per request",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the load generators' event loop (uvloop takes less of the machine's CPU)",
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="PostgreSQL with fsync and synchronous commit (its defaults); default: off, as the test server",
    )
    parser.add_argument(
        "--mix",
        type=_mix,
        default=MIX,
        help="the request mix as NAME=SHARE,... (names: " + ", ".join(MIX_NAMES) + "; relative shares; "
        "default: the mix above)",
    )
    parser.add_argument("--generators", type=int, default=2, help="load-generating processes")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per web process")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per gunicorn worker (above 1: the gthread worker)"
    )
    parser.add_argument(
        "--slices", type=int, default=12, help="the run's timeline: slices of the duration (default: 12)"
    )
    parser.add_argument("--train-at", type=float, default=0.3, help="share of the run when training starts")
    parser.add_argument("--reload-interval", type=float, default=5.0)
    parser.add_argument(
        "--train-prefix", default="", help="a command the training runs under, e.g. 'nice -n 19'"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "setup":
        child_setup()
        return
    for tool in ("redis-server", "runuser"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")

    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="giftrec-bench-deploy-"))
    work.chmod(0o755)  # the postgres user creates its data folder inside
    procs: list[subprocess.Popen[bytes]] = []
    pg_env = dict(os.environ, PGPORT=str(_free_port()), PGDATA_DIR=str(work / "pg"))
    pg_env.pop("PG_DURABLE", None)
    if args.durable:
        pg_env["PG_DURABLE"] = "1"
    try:
        started = subprocess.run(
            [str(REPO / ".ci" / "postgres.sh"), "start"],
            env=pg_env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        url = started.split("GIFTREC_TEST_DATABASE_URL=", 1)[1].split()[0]
        redis_port = _free_port()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                cwd=work,
                stdout=subprocess.DEVNULL,
            )
        )
        env = dict(
            os.environ,
            GIFTREC_DATABASE_URL=url,
            GIFTREC_API_RATE_LIMIT=f"{RATE_LIMIT}/hour",
            GIFTREC_API_RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{redis_port}/0",
            GIFTREC_SERVER_SECRET_KEY="bench-" + uuid.uuid4().hex,
            GIFTREC_SERVER_INSTANCE_DIR=str(work / "trainer"),
            GIFTREC_MODEL_ARTIFACT_DIR=str(work / "trainer" / "models"),
            GIFTREC_MODEL_RELOAD_INTERVAL=str(args.reload_interval),
            GIFTREC_MODEL_NUM_THREADS="1",
        )
        print(
            f"setup (not measured): PostgreSQL, Redis, migrate, import {Path(args.data).name}, train...",
            flush=True,
        )
        _giftrec(env, "db", "upgrade")
        _giftrec(env, "import", "orders", args.data, "--format", "online-retail")
        _giftrec(env, "train")
        setup = json.loads(
            subprocess.run(
                [sys.executable, "-m", "bench.bench_deploy", "--child", "setup"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        from api.gunicorn_conf import keepalive

        ports = [_free_port(), _free_port()]
        for n, port in enumerate(ports):
            # As deployed (docs/deployment.md): `giftrec serve`, so gunicorn runs with its config
            # (api/gunicorn_conf.py: keep-alive, JSON access log lines) and the metrics in
            # prometheus-client's multiprocess mode; the access log goes to a file, as to a collector.
            own = dict(
                env,
                GIFTREC_SERVER_INSTANCE_DIR=str(work / f"web{n}"),
                GIFTREC_MODEL_ARTIFACT_DIR=str(work / f"web{n}" / "models"),
                GUNICORN_CMD_ARGS=f"--threads {args.threads}",
            )
            serve = [_bin("giftrec"), "serve", "--host", "127.0.0.1", "--port", str(port)]
            with open(work / f"web{n}.log", "wb") as log_file:
                procs.append(
                    subprocess.Popen(
                        [*serve, "--workers", str(args.workers)],
                        env=own,
                        cwd=REPO,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )
        sched_env = dict(env, GIFTREC_SERVER_INSTANCE_DIR=str(work / "scheduler"))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobs"],
                env=sched_env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        admin = setup["admin"]
        _wait(lambda: all(_served(p, admin) for p in ports), 180, "both web processes serving a model")
        before = {p: _served(p, admin) for p in ports}
        rng = random.Random(SEED)
        customers, skus = list(setup["customers"]), list(setup["skus"])
        rng.shuffle(customers)  # popularity rank independent of the id order
        plan = {
            "ports": ports,
            "customers": customers,
            "customer_cum": zipf_cum(len(customers)),
            "skus": skus,
            "sku_cum": zipf_cum(len(skus)),
            "server": setup["server"],
            "generators": args.generators,
            "duration": args.duration,
            "schedule": None if args.rate is None else poisson_schedule(args.rate, args.duration, SEED),
            "keep_alive": args.keep_alive,
            "uvloop": args.loop == "uvloop",
            "mix": args.mix,
        }
        loop = (
            f"{args.connections} connections (closed loop)"
            if args.rate is None
            else f"open loop at {args.rate:g} req/s ({len(plan['schedule'])} send times drawn), at most "
            f"{args.connections} in flight"
        )
        mode = (
            f"kept HTTP/1.1 connections (gunicorn keepalive {keepalive} s)"
            if args.keep_alive
            else "a new connection per request (Connection: close)"
        )
        durability = "durable (fsync, synchronous commit)" if args.durable else "no fsync, async commit"
        print(
            f"{len(customers)} customers, {len(skus)} SKUs; web processes on ports {ports} serving {before}; "
            f"{loop} for {args.duration:.0f} s; {mode}; generators on {args.loop}; PostgreSQL {durability}",
            flush=True,
        )
        per_gen = [
            args.connections // args.generators + (1 if i < args.connections % args.generators else 0)
            for i in range(args.generators)
        ]
        # Open loop: the generators draw their requests before the first send time.
        load_start = time.monotonic() + (0.0 if args.rate is None else 1.0)
        until = load_start + args.duration
        plan["start"] = load_start
        ctx = multiprocessing.get_context("fork")
        results = [work / f"gen{i}.json" for i in range(args.generators)]
        gens = [
            ctx.Process(target=generator, args=(i, plan, per_gen[i], until, str(results[i])))
            for i in range(args.generators)
        ]
        postmaster = int((work / "pg" / "postmaster.pid").read_text().split()[0])
        components = {
            **{f"web process :{p} (gunicorn)": [procs[1 + n].pid] for n, p in enumerate(ports)},
            "PostgreSQL (server + backends)": [postmaster],
            "Redis": [procs[0].pid],
            "scheduler": [procs[3].pid],
        }
        print(
            "pids: "
            + ", ".join(f"{name} {roots[0]}" for name, roots in components.items())
            + "; web workers "
            + str([_workers(procs[1 + n].pid) for n in range(len(ports))]),
            flush=True,
        )
        load_before = os.getloadavg()
        cpu_before = {name: tree_cpu_seconds(roots) for name, roots in components.items()}
        busy_before, self_before = machine_busy_seconds(), resource.getrusage(resource.RUSAGE_SELF)
        for g in gens:
            g.start()
        time.sleep(max(0.0, load_start + args.duration * args.train_at - time.monotonic()))
        train_started = time.monotonic()
        trainer = subprocess.Popen(
            [*args.train_prefix.split(), _bin("giftrec"), "train"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        swapped: dict[int, float] = {}
        new_version: str | None = None
        while time.monotonic() < until:
            for p in ports:
                version = _served(p, admin)
                if p not in swapped and version is not None and version != before[p]:
                    swapped[p] = time.monotonic() - load_start
                    new_version = version
            time.sleep(0.5)
        for g in gens:
            g.join()
        cpu_after = {name: tree_cpu_seconds(roots) for name, roots in components.items()}
        busy_after, self_after = machine_busy_seconds(), resource.getrusage(resource.RUSAGE_SELF)
        load_after = os.getloadavg()
        _, status, trained = os.wait4(trainer.pid, 0)  # the trainer's own CPU (and its children's)
        trainer.returncode = os.waitstatus_to_exitcode(status)
        rows: list[tuple[Any, ...]] = []
        cpu = {name: cpu_after[name] - cpu_before[name] for name in components}
        cpu["training (giftrec train)"] = trained.ru_utime + trained.ru_stime
        cpu[f"load generators ({args.generators} processes)"] = 0.0
        conn_stats = []
        for r in results:
            result = json.loads(r.read_text())
            rows.extend(tuple(x) for x in result["rows"])
            cpu[f"load generators ({args.generators} processes)"] += result["cpu_seconds"]
            conn_stats.append(result["connections"])
        conns = connection_summary(conn_stats)
        cpu["this benchmark (swap monitor)"] = (
            self_after.ru_utime + self_after.ru_stime - self_before.ru_utime - self_before.ru_stime
        )
        busy = busy_after - busy_before
        summary = open_loop_summary(rows, args.duration) if args.rate is not None else None
        rows = [r for r in rows if r[2] != DROPPED]
        cpu["rest of the machine (not this benchmark)"] = max(0.0, busy - sum(cpu.values()))

        # Rate limit: what both processes count for the server key, against what was sent with it.
        sent = sum(1 for r in rows if not r[0].startswith("bare"))
        counted, expected = [], []
        for p in ports:
            req = urllib.request.Request(
                f"http://127.0.0.1:{p}/v1/bestsellers?n=1", headers={"X-Api-Key": setup["server"]}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                sent += 1
                counted.append(RATE_LIMIT - int(resp.headers["X-RateLimit-Remaining"]))
                expected.append(sent)

        table = []
        for kind, _ in args.mix:
            mine = [r for r in rows if r[0] == kind]
            lat = [r[3] for r in mine]
            errors = sum(1 for r in mine if not 200 <= r[2] < 300)
            if not mine:
                continue
            table.append(
                [kind, len(mine), len(mine) / args.duration, percentile(lat, 50), percentile(lat, 99), errors]
            )
        every = [r[3] for r in rows]
        table.append(
            [
                "all",
                len(rows),
                len(rows) / args.duration,
                percentile(every, 50),
                percentile(every, 99),
                sum(1 for r in rows if not 200 <= r[2] < 300),
            ]
        )
        print()
        print(
            f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
            f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
        )
        print_table(["endpoint", "requests", "req/s", "p50 ms", "p99 ms", "errors"], table)
        print(f"\n{_connections_line(conns, len(rows), args)}")
        if summary is not None:
            print(
                f"\nopen loop: {args.rate:g} req/s asked, {summary['scheduled']} send times in "
                f"{args.duration:.0f} s ({summary['scheduled'] / args.duration:.1f}/s); answered "
                f"{summary['answered']} ({summary['achieved_per_s']:.1f} req/s achieved), dropped "
                f"{summary['dropped']} (no connection free within {DRAIN_SECONDS:.0f} s of the end); "
                f"late (sent over {LATE_MS:g} ms after its time) {summary['late']}, of which every "
                f"connection busy {summary['queued']}; wait before the send p50 {summary['wait_p50_ms']:.2f} "
                f"ms, p99 {summary['wait_p99_ms']:.2f} ms. Latencies count from each request's send time "
                "as scheduled, the wait included."
            )
        print(
            f"\nCPU during the load ({busy:.1f} s busy of {args.duration * (os.cpu_count() or 1):.0f} s on "
            f"{os.cpu_count()} cores; the training's whole run, though it may end after the load):"
        )
        print_table(
            ["component", "CPU s", "CPU ms / request", "share"],
            [
                [name, seconds, seconds * 1000 / max(1, len(rows)), f"{seconds / max(busy, 1e-9):.0%}"]
                for name, seconds in cpu.items()
            ],
        )

        recs = sorted((r for r in rows if r[0] == "recommendations"), key=lambda r: r[4])
        seen: set[tuple[int, str]] = set()
        first = 0
        for r in recs:
            if (r[1], r[5]) not in seen:
                seen.add((r[1], r[5]))
                first += 1
        print(
            f"\nrecommendations: {len({r[5] for r in recs})} distinct customers in {len(recs)} requests; "
            f"{first / max(1, len(recs)):.0%} were the customer's first request at that web process"
        )
        near = [any(abs(r[4] - load_start - s) <= 2.0 for s in swapped.values()) for r in recs]
        for label, part in (
            ("within 2 s of a swap", [r[3] for r, n in zip(recs, near, strict=True) if n]),
            ("outside that window", [r[3] for r, n in zip(recs, near, strict=True) if not n]),
        ):
            if part:
                print(
                    f"  {label}: {len(part)} requests, p50 {percentile(part, 50):.1f} ms, "
                    f"p99 {percentile(part, 99):.1f} ms"
                )
        # Over the run, in slices: where the swap's cost lands (the training, the swap, what follows).
        step = args.duration / args.slices
        slices: list[list[str]] = []
        for k in range(args.slices):
            lo, hi = load_start + k * step, load_start + (k + 1) * step
            part = [r[3] for r in rows if lo <= r[4] < hi]
            mine = [r[3] for r in recs if lo <= r[4] < hi]
            if part and mine:
                slices.append(
                    [
                        f"{k * step:.0f}-{(k + 1) * step:.0f} s",
                        f"{len(part) / step:,.0f}",
                        f"{percentile(mine, 50):.1f}",
                        f"{percentile(mine, 99):.1f}",
                    ]
                )
        print("\nover the run (sent in each slice): all requests per second, recommendations p50 / p99 ms")
        print_table(["slice", "req/s", "p50", "p99"], slices)
        print(
            f"hot swap: training started at {train_started - load_start:.1f} s "
            f"(exit {trainer.returncode}); new version {new_version}; served from "
            + ", ".join(
                f"port {p} at {swapped[p]:.1f} s" if p in swapped else f"port {p}: not within the run"
                for p in ports
            )
        )
        verdict = "one shared budget" if counted == expected else "NOT shared"
        print(
            f"rate limit: requests sent with the server key through both ports when each check was answered "
            f"{expected}; counted by the processes {counted}: {verdict}"
        )
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([str(REPO / ".ci" / "postgres.sh"), "stop"], env=pg_env, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
