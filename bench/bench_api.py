"""Benchmark: the storefront API under gunicorn (2 workers) loaded by wrk from loopback, in one run.

Run from the repository root (by hand, never by the test suite; needs Debian's ``wrk``)::

    .venv/bin/python -m bench.bench_api [UCI_PATH] [--duration 10] [--connections 16] [--workdir DIR]
        [--baseline CHECKOUT]

Setup, not measured: the full UCI file (default ../shared/data/online_retail.csv.gz) is imported into a
temporary SQLite database, every product gets a category (the last word of its title, as in
``bench_recommend``) and the default model is trained, each in a child process, as ``make run`` does;
a server key is created. ``--workdir`` keeps (and reuses) that database between runs.

Then gunicorn serves ``api.wsgi:app`` with 2 workers on 127.0.0.1 as ``giftrec serve`` runs it (its
command line and config: JSON access lines, here written to a file in the work folder, and the metrics in
prometheus-client's multiprocess mode; production settings, except a rate limit high enough for one key
to carry the whole load; before 2026-12-03 it ran gunicorn without that config), each worker is warmed
up (model loaded), and wrk runs for ``--duration`` seconds per endpoint at ``--connections`` connections,
in this order:

- ``trivial``: ``GET /health/live`` of the same app (no key, no database);
- ``recommendations``: ``GET /v1/customers/{id}/recommendations`` with ``n=10``, a price range and two
  excluded SKUs, over random known customers (a wrk Lua script picks them, seeded per thread). Before
  the measured rounds every customer is asked for twice and the same load runs once unmeasured, so that
  the workers keep (nearly) every customer's ranking and its explanations: the steady state of a
  storefront whose visitors come back page after page;
- ``recommendations, ranked per request``: the same load on a second server started with
  ``api.picks_cache_customers = 0``: no ranking is kept, as for a customer's first request in a worker
  (the most active customers' rankings are precomputed once the model is loaded, up to
  ``api.precomputed_customers``: the full file's every customer; in-process, a line measures the same
  request with nothing precomputed, where every request ranks); its rounds
  alternate with its own trivial endpoint's (``trivial (ranked per request server)``), and, with
  ``--baseline DIR`` (another checkout, e.g. ``git worktree add DIR main``), with the same load on a
  third server running that checkout's code (``... (baseline)``): before and after in one run;
- ``recommendations, through Flask``: the same rounds (warm-up, alternation with its own trivial endpoint)
  on a third server started with ``api.fast_path = false``: every request goes through Flask's request
  machinery, as before the fast path (``api/fastpath.py``).

The two are loaded in ``--rounds`` alternating rounds (default 3), so that a neighbour's busy minute on a
shared machine hits both. Printed: each round's requests/s, latency p50/p99 (wrk's HdrHistogram), errors
(socket errors + non-2xx), the CPU time per request of the server (gunicorn's master and workers, from
/proc) and of wrk (which shares the two cores), then the medians over the rounds and the ratio of the
median requests/s to the trivial endpoint's of the same server. Goal: recommendations >= 0.6x trivial
req/s with p99 <= 15 ms, no errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from api.cli.serve import gunicorn_command
from bench._common import buyers_and_skus, machine_line, print_table, run_child

DEFAULT_UCI = "../shared/data/online_retail.csv.gz"
SEED = 11
FLASK_TRIVIAL = "trivial (api.fast_path = false)"
RANKED = "recommendations, ranked per request"
RANKED_TRIVIAL = "trivial (ranked per request server)"
NOTHING_AHEAD = "ranked per request, nothing precomputed"
BASELINE = "recommendations, ranked per request (baseline)"
N_CUSTOMERS = 2000
INPROCESS_BATCHES = 10
INPROCESS_BATCH = 200

LUA_RECS = """
local ids = {%(ids)s}
local skus = {%(skus)s}
local key = "%(key)s"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(%(seed)d + seed)
end
function request()
  local id = ids[math.random(#ids)]
  local lo = math.random(0, 3)
  local hi = lo + math.random(5, 40)
  local path = "/v1/customers/" .. id .. "/recommendations?n=10&min_price=" .. lo .. "&max_price=" .. hi
    .. "&exclude=" .. skus[math.random(#skus)] .. "," .. skus[math.random(#skus)]
  return wrk.format("GET", path, {["X-Api-Key"] = key})
end
"""

LUA_TRIVIAL = """
-- GET /health/live as is: wrk counts non-2xx responses itself.
"""


def child_setup(workdir: str) -> None:
    """Customers to ask for (known to the model), the top SKUs to exclude, and a server key (setup)."""

    from bench.bench_train import _settings
    from domain.access import api_keys
    from domain.db import make_engine, make_session_factory, session_scope

    settings = _settings(workdir)
    engine = make_engine(settings.database.url)
    with session_scope(make_session_factory(engine)) as session:
        customers, skus = buyers_and_skus(session, sku_limit=200)
        _, key = api_keys.create_key(session, "server", name="bench_api")
        _, admin = api_keys.create_key(session, "admin", name="bench_api readiness")
    engine.dispose()
    rng = random.Random(SEED)
    print(
        json.dumps(
            {
                "customers": rng.sample(customers, min(N_CUSTOMERS, len(customers))),
                "skus": skus,
                "key": key,
                "admin_key": admin,
            }
        )
    )


def inprocess_settings(workdir: str) -> Any:
    """The bench database's settings for an app built in this process: one key may carry any load."""
    from bench.bench_train import _settings

    settings = _settings(workdir)
    return replace(
        settings,
        api=replace(settings.api, rate_limit="100000000/minute"),
        server=replace(settings.server, secret_key="bench"),
    )


def child_inprocess(workdir: str, key: str, customers: list[str], skus: list[str]) -> None:
    """CPU ms per request through Flask's test client (no sockets, no gunicorn), and of the use case alone:
    where the time of a recommendations request goes."""

    from api import create_app
    from domain.serving.recommendations import recommend_for_customer

    settings = inprocess_settings(workdir)
    app = create_app(settings)
    client = app.test_client()
    headers = {"X-Api-Key": key}
    rng = random.Random(SEED)

    def recs_path() -> str:
        lo = rng.randint(0, 3)
        return (
            f"/v1/customers/{rng.choice(customers)}/recommendations?n=10&min_price={lo}"
            f"&max_price={lo + rng.randint(5, 40)}&exclude={rng.choice(skus)},{rng.choice(skus)}"
        )

    serving = app.extensions["giftrec"].services["serving"]

    def use_case() -> None:
        lo = rng.randint(0, 3)
        recommend_for_customer(
            serving,
            rng.choice(customers),
            10,
            min_price=lo,
            max_price=lo + rng.randint(5, 40),
            exclude=[rng.choice(skus), rng.choice(skus)],
        )

    cold_app = create_app(replace(settings, api=replace(settings.api, picks_cache_customers=0)))
    cold_client = cold_app.test_client()
    nothing_ahead = create_app(
        replace(settings, api=replace(settings.api, picks_cache_customers=0, precomputed_customers=0))
    ).test_client()
    flask_client = create_app(replace(settings, api=replace(settings.api, fast_path=False))).test_client()
    calls = {
        "trivial": lambda: client.get("/health/live"),
        "bestsellers (cached list)": lambda: client.get("/v1/bestsellers?n=10", headers=headers),
        "bestsellers, through Flask": lambda: flask_client.get("/v1/bestsellers?n=10", headers=headers),
        "similar items": lambda: client.get(f"/v1/products/{rng.choice(skus)}/similar?n=10", headers=headers),
        "similar items, through Flask": lambda: flask_client.get(
            f"/v1/products/{rng.choice(skus)}/similar?n=10", headers=headers
        ),
        "recommendations": lambda: client.get(recs_path(), headers=headers),
        "recommendations, ranked per request": lambda: cold_client.get(recs_path(), headers=headers),
        NOTHING_AHEAD: lambda: nothing_ahead.get(recs_path(), headers=headers),
        "recommendations, through Flask": lambda: flask_client.get(recs_path(), headers=headers),
        "recommend_for_customer alone": use_case,
    }
    for customer in customers:  # every customer's ranking kept, as in the wrk run
        for kept in (client, flask_client):
            kept.get(f"/v1/customers/{customer}/recommendations?n=10", headers=headers)
    for call in calls.values():  # warm up: model, catalog, caches
        for _ in range(50):
            call()
    # The rankings precomputed once the model is loaded (a background thread): all made before measuring.
    cold_app.extensions["giftrec"].services["serving"].store.wait(600)
    # CPU time (this process), batches interleaved across the calls, the least disturbed batch of each:
    # on a shared machine this repeats far better than wall time.
    batches: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(INPROCESS_BATCHES):
        for name, call in calls.items():
            started = time.process_time()
            for _ in range(INPROCESS_BATCH):
                call()
            batches[name].append((time.process_time() - started) / INPROCESS_BATCH * 1000)
    print(json.dumps({name: min(values) for name, values in batches.items()}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 120.0) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of these processes (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _server_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """gunicorn's master and its workers."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [server.pid, *map(int, children)]


def _wrk(url: str, script: Path, duration: int, connections: int, server_pids: list[int]) -> dict[str, Any]:
    """One wrk run: requests/s, latency, errors, and the CPU time per request of the server (master and
    workers) and of wrk itself, which share the machine's two cores."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    server_cpu = _cpu_seconds(server_pids)
    wrk_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    server_cpu = _cpu_seconds(server_pids) - server_cpu
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu_s = used.ru_utime + used.ru_stime - wrk_cpu.ru_utime - wrk_cpu.ru_stime

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not m:
            raise SystemExit(f"wrk printed no {label}% latency:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {
        "rps": rps,
        "p50": ms("50"),
        "p99": ms("99"),
        "errors": errors,
        "requests": requests,
        "server_us": server_cpu / requests * 1e6,
        "wrk_us": wrk_cpu_s / requests * 1e6,
        "raw": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", nargs="?", default=DEFAULT_UCI)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating trivial/recommendations rounds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", help="keep the database here and reuse it on the next run")
    parser.add_argument(
        "--baseline", help="another checkout whose ranked-per-request server alternates with this one's"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child[0] == "setup":
        child_setup(args.child[1])
        return
    if args.child and args.child[0] == "inprocess":
        setup = json.loads(Path(args.child[2]).read_text())
        child_inprocess(args.child[1], setup["key"], setup["customers"], setup["skus"])
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        raise SystemExit("gunicorn is not installed: pip install -e '.[dev]'")

    print(machine_line())
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="giftrec-bench-api-")
        workdir = Path(tmp.name)
    try:
        if not (workdir / "bench.db").exists():
            if not Path(args.path).exists():
                raise SystemExit(f"{args.path} not found: give the UCI Online Retail file's path")
            print(f"setup: importing {args.path}, categories, training (not measured)...", flush=True)
            run_child(["-m", "bench.bench_train", "--child", "import", args.path, str(workdir)])
            run_child(["-m", "bench.bench_recommend", "--child", "categories", str(workdir)])
            run_child(["-m", "bench.bench_train", "--child", "train", str(workdir)])
        setup = run_child(["-m", "bench.bench_api", "--child", "setup", str(workdir)])
        results = _serve_and_load(workdir, setup, args, rounds=args.rounds)
        cold = _serve_and_load(
            workdir,
            setup,
            args,
            rounds=args.rounds,
            warm_passes=0,
            extra_env={"GIFTREC_API_PICKS_CACHE_CUSTOMERS": "0"},
            baseline=Path(args.baseline).resolve() if args.baseline else None,
        )
        results[RANKED_TRIVIAL] = cold["trivial"]
        results[RANKED] = cold["recommendations"]
        if args.baseline:
            results[BASELINE] = cold["baseline"]
        flask_only = _serve_and_load(
            workdir, setup, args, rounds=args.rounds, extra_env={"GIFTREC_API_FAST_PATH": "false"}
        )
        results[FLASK_TRIVIAL] = flask_only["trivial"]
        results["recommendations, through Flask"] = flask_only["recommendations"]
        setup_file = workdir / "setup.json"
        setup_file.write_text(json.dumps(dict(setup)))
        inprocess = run_child(
            ["-m", "bench.bench_api", "--child", "inprocess", str(workdir), str(setup_file)]
        )
    finally:
        if tmp is not None:
            tmp.cleanup()

    print()
    print(
        f"gunicorn {args.workers} workers, wrk 2 threads x {args.connections} connections, "
        f"{args.duration} s per endpoint, {args.rounds} alternating rounds per server; "
        "ranked per request (and its baseline) on a server with api.picks_cache_customers = 0, "
        "the last two rows on one with api.fast_path = false"
    )
    # (column, key in a wrk result, how the rounds are summed up)
    columns = [
        ("req/s", "rps", statistics.median),
        ("p50 ms", "p50", statistics.median),
        ("p99 ms", "p99", statistics.median),
        ("errors", "errors", sum),
        ("requests", "requests", sum),
        ("server CPU us/req", "server_us", statistics.median),
        ("wrk CPU us/req", "wrk_us", statistics.median),
    ]
    names = [name for name, _, _ in columns]
    rows = [
        [name, i, *(r[key] for _, key, _ in columns)]
        for name, runs in results.items()
        for i, r in enumerate(runs, 1)
    ]
    print_table(["endpoint", "round", *names], rows)
    summary = {
        name: {key: total(r[key] for r in runs) for _, key, total in columns}
        for name, runs in results.items()
    }
    flask_rows = (FLASK_TRIVIAL, "recommendations, through Flask")
    ranked_rows = (RANKED_TRIVIAL, RANKED, BASELINE)
    print()
    print("medians over the rounds; ratio: to the trivial endpoint of the same server")
    print_table(
        ["endpoint", *names, "ratio"],
        [
            [name, *(r[key] for _, key, _ in columns), r["rps"] / summary[base]["rps"]]
            for name, r in summary.items()
            for base in [
                FLASK_TRIVIAL if name in flask_rows else RANKED_TRIVIAL if name in ranked_rows else "trivial"
            ]
        ],
    )
    print()
    print(
        "in-process, one thread (Flask test client, no sockets): CPU ms per request, "
        f"best of {INPROCESS_BATCHES} interleaved batches of {INPROCESS_BATCH}"
    )
    print_table(
        ["call", "ms"],
        [[name, value] for name, value in inprocess.items() if name not in ("peak_rss_mib", "cpu_seconds")],
    )
    for name, base in (("recommendations", "trivial"), (RANKED, RANKED_TRIVIAL)):
        recs, own = summary[name], summary[base]
        ok = recs["rps"] >= 0.6 * own["rps"] and recs["p99"] <= 15.0 and recs["errors"] == 0
        print(
            f"goal for {name} (>= 0.6x trivial req/s, p99 <= 15 ms, no errors): {'met' if ok else 'NOT met'}"
        )


def _serve_and_load(
    workdir: Path,
    setup: dict[str, Any],
    args: argparse.Namespace,
    *,
    trivial: bool = True,
    rounds: int = 1,
    warm_passes: int = 2,
    extra_env: dict[str, str] | None = None,
    baseline: Path | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Serve, warm up and load (trivial and recommendations alternating); with ``baseline``, a second
    server runs that checkout's code, warmed alike, and its recommendations rounds alternate too."""
    with _server(workdir, args, extra_env) as (base, server), contextlib.ExitStack() as other:
        servers = [("recommendations", base, server)]
        if baseline is not None:
            url, proc = other.enter_context(_server(workdir, args, extra_env, baseline))
            servers.append(("baseline", url, proc))
        for _, url, _ in servers:
            _warm_up(url, setup, warm_passes)
        scripts = _scripts(workdir, setup)
        results: dict[str, list[dict[str, Any]]] = {}
        pids = {name: _server_pids(proc) for name, _, proc in servers}
        if warm_passes:
            for name, url, _ in servers:  # unmeasured: to steady state
                _wrk(url, scripts["recs"], args.duration, args.connections, pids[name])
        for _ in range(rounds):  # alternating: a noisy neighbour's minute hits every endpoint
            if trivial:
                results.setdefault("trivial", []).append(
                    _wrk(
                        f"{base}/health/live",
                        scripts["trivial"],
                        args.duration,
                        args.connections,
                        pids["recommendations"],
                    )
                )
            for name, url, _ in servers:
                results.setdefault(name, []).append(
                    _wrk(url, scripts["recs"], args.duration, args.connections, pids[name])
                )
        return results


@contextlib.contextmanager
def _server(
    workdir: Path, args: argparse.Namespace, extra_env: dict[str, str] | None, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn serving ``api.wsgi:app`` of the checkout at ``cwd`` (default: this one), until exit."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIFTREC_")},
        "GIFTREC_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "GIFTREC_SERVER_INSTANCE_DIR": str(workdir / "instance"),
        "GIFTREC_MODEL_ARTIFACT_DIR": str(workdir / "models"),
        "GIFTREC_SERVER_SECRET_KEY": "bench",
        # One key carries the whole load here; a shop's server key would not send 5k requests a second.
        "GIFTREC_API_RATE_LIMIT": "100000000/minute",
        **(extra_env or {}),
    }
    # As `giftrec serve` runs it: its config (JSON access lines, here to a file) and the metrics in
    # prometheus-client's multiprocess mode (a folder of this server's own).
    metrics = workdir / f"serve-{port}" / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    # The first request of a worker waits for the model's first load, which on a busy machine takes
    # longer than gunicorn's default 30 s worker timeout (the worker was killed: a 500).
    env["GUNICORN_CMD_ARGS"] = "--timeout 180 --log-level warning"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    access_log = str(workdir / f"serve-{port}" / "access.log")
    server = subprocess.Popen(
        gunicorn_command(gunicorn, "127.0.0.1", port, args.workers, access_log=access_log),
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(f"{base}/health/live", timeout=2) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)
        yield base, server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _warm_up(base: str, setup: dict[str, Any], warm_passes: int) -> None:
    """The first request of a process loads the model and the catalog; then each customer's first
    request ranks and keeps the ranking (in whichever worker takes it)."""
    key = {"X-Api-Key": setup["key"]}
    for customer in setup["customers"][:200] + setup["customers"] * warm_passes:
        status = _get(f"{base}/v1/customers/{customer}/recommendations?n=10", key)
        if status != 200:
            raise SystemExit(f"warm-up: recommendations answered {status}")
    # Each worker ranks its most active customers in a background thread once its model is loaded: wait
    # until 20 readiness answers in a row (from either worker) say it is done, so no round measures it.
    admin = {"X-Api-Key": setup["admin_key"]}
    done, deadline = 0, time.monotonic() + 900
    while done < 20:
        if time.monotonic() > deadline:
            raise SystemExit("warm-up: the precomputed rankings were not made within 900 s")
        req = urllib.request.Request(f"{base}/health/ready", headers=admin)
        with urllib.request.urlopen(req, timeout=60) as resp:
            model = json.loads(resp.read())["checks"].get("model", {})
        ahead = model.get("precomputed") if isinstance(model, dict) else None
        if ahead is None or ahead["ranked"] == ahead["customers"]:
            done += 1
        else:
            done = 0
            time.sleep(0.5)


def _scripts(workdir: Path, setup: dict[str, Any]) -> dict[str, Path]:
    """wrk's Lua scripts: the trivial endpoint, and recommendations over random customers."""
    scripts = workdir / "wrk"
    scripts.mkdir(exist_ok=True)
    trivial_lua = scripts / "trivial.lua"
    trivial_lua.write_text(LUA_TRIVIAL)
    recs = scripts / "recommendations.lua"
    recs.write_text(
        LUA_RECS
        % {
            "ids": ",".join(json.dumps(c) for c in setup["customers"]),
            "skus": ",".join(json.dumps(s) for s in setup["skus"]),
            "key": setup["key"],
            "seed": SEED,
        }
    )
    return {"trivial": trivial_lua, "recs": recs}


if __name__ == "__main__":
    main()
