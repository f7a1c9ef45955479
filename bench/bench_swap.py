"""Benchmark: a model hot swap inside one serving process, step by step, and what requests beside it wait.

Run from the repository root, by hand (never by the test suite), bounded with ``timeout``::

    timeout 900 .venv/bin/python -m bench.bench_swap [ORDERS_FILE] [--swaps 3] [--workdir DIR]

Setup (not measured): a SQLite database in a temporary folder (or ``--workdir``, kept), the orders file
imported (default: the bundled sample), two models trained. Then, in this process:

1. **Steps.** Each step of loading the other model, alone, ``--swaps`` times: the artifact's fetch from
   the database, its checksums, the unpickling (with what serving derives from the model), the
   interaction data's rebuild for it (where the store keeps the sales of the data it serves, the previous
   load's are kept), and the precomputed rankings. Wall and CPU (this thread's) medians.
2. **Requests beside a swap.** The main thread asks for personal picks (``recommend_for_customer``, a
   storefront's filters) in a loop, for customers drawn from a Zipf distribution (s = 1) over every
   customer with orders, while the store swaps models in a background thread as a serving process does
   (``model.reload_interval``). Latency of the calls made before the swap (``idle``) and while it runs
   until it and its precomputation are over (``during``), and ``after`` (the next seconds: customers'
   first requests at the new model), as medians and p99; the swap's CPU is the process's CPU less the
   request loop's own.

The in-process latency counts the time a request waits for the GIL held by the swap's Python code; on a
busy machine it also counts other processes' work, so read it with the load average printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import in_workdir, machine_line, median, percentile, run_child

SAMPLE = str(Path(__file__).resolve().parent.parent / "data" / "online_retail_sample.csv.gz")
SEED = 7
#: Seconds a request sleeps before and after the call, as for its sockets (not counted in its latency).
IO_WAIT = 0.0002


def _stats(values: list[float]) -> str:
    if not values:
        return "no calls"
    ms = [v * 1000 for v in values]
    p50, p99 = median(ms), percentile(ms, 99)
    return f"{len(ms):>6,} calls  p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  max {max(ms):7.1f} ms"


def _timed(fn: Any) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.thread_time()
    out = fn()
    return out, time.perf_counter() - w, time.thread_time() - c


def measure(workdir: str, swaps: int, window: float) -> None:
    import numpy as np

    from bench.bench_train import _settings
    from domain.db import make_engine, make_session_factory
    from domain.leftovers import held_temp_folder
    from domain.serving import training
    from domain.serving.artifact_store import fetch_artifact
    from domain.serving.data import rows_as_read
    from domain.serving.model_store import ModelStore
    from domain.serving.precomputed import fill
    from domain.serving.ranked import PrecomputedRankings
    from domain.serving.recommendations import build_serving, recommend_for_customer
    from recommender.artifacts import ITEMS_FILE, MODEL_DIR, USERS_FILE, _verified, load_artifact
    from recommender.threads import pin_blas_threads

    pin_blas_threads()
    settings = _settings(workdir)
    engine = make_engine(settings.database.url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        runs = [r for r in training.list_runs(session) if r.status == "succeeded"]
    versions = [r.version for r in sorted(runs, key=lambda r: r.id)][-2:]
    if len(versions) < 2:
        raise SystemExit("needs two trained models in the workdir")

    # ---------------------------------------------------------------- 1. steps, one at a time
    steps: dict[str, list[tuple[float, float]]] = {}
    store = ModelStore(settings, sessions, background=False)
    bare = ModelStore(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, precomputed_customers=0)),
        sessions,
        background=False,
    )
    required = (USERS_FILE, ITEMS_FILE, f"{MODEL_DIR}/model.npz", f"{MODEL_DIR}/model.json")
    previous = None
    for k in range(swaps):
        version = versions[k % 2]
        with sessions() as session:
            run = training.find_run(session, version)
            with held_temp_folder(prefix="giftrec-bench-swap-") as tmp:
                folder = tmp / version
                folder.mkdir()
                _, w, c = _timed(lambda: fetch_artifact(session, version, folder))  # noqa: B023
                steps.setdefault("fetch", []).append((w, c))
                _, w, c = _timed(lambda: _verified(folder, required))  # noqa: B023
                steps.setdefault("checksums", []).append((w, c))
                _, w2, c2 = _timed(lambda: load_artifact(folder))  # noqa: B023
                steps.setdefault("unpickle", []).append((max(0.0, w2 - w), max(0.0, c2 - c)))
            loaded, w, c = _timed(lambda: store._load_run(session, run))  # noqa: B023
            steps.setdefault("load_run (all of the above + derive)", []).append((w, c))
            if "previous" in inspect.signature(bare._build).parameters:
                # A swap keeps the serving data's sales (the data of the previous load here).
                data, w, c = _timed(lambda: bare._build(session, loaded, previous)[0])  # noqa: B023
            else:
                data, w, c = _timed(lambda: bare._build(session, loaded))  # noqa: B023
            previous = data
            steps.setdefault("interactions rebuild", []).append((w, c))
            ahead = PrecomputedRankings.most_active(
                data.user_items, data.users.ids, loaded.n_items, settings.api.precomputed_customers
            )
            data.precomputed = ahead

            def rows_of(customer_id: int, data: Any = data) -> Any:
                return rows_as_read(data, customer_id)

            _, w, c = _timed(lambda: fill(ahead, loaded, rows_of))  # noqa: B023
            steps.setdefault(f"precompute ({len(ahead):,} customers)", []).append((w, c))
    print("steps (medians of", swaps, "loads; CPU of the loading thread):")
    for name, values in steps.items():
        walls = [v[0] * 1000 for v in values]
        cpus = [v[1] * 1000 for v in values]
        print(f"  {name:<42} wall {median(walls):8.1f} ms   CPU {median(cpus):8.1f} ms")

    # ---------------------------------------------------------------- 2. requests beside a swap
    serving = build_serving(settings, sessions)
    serving.store.current()
    serving.catalog.current()
    serving.store.wait(900)
    data = serving.store.current()
    external = {cid: ext for ext, cid in data.customers.items()}
    loaded = data.model
    assert loaded is not None
    ids = [external[int(c)] for c in loaded.user_index.ids if int(c) in external]
    rng = np.random.default_rng(SEED)
    ranks = np.arange(1, len(ids) + 1, dtype=np.float64)
    p = (1.0 / ranks) / (1.0 / ranks).sum()
    draws = [ids[i] for i in rng.choice(len(ids), size=200_000, p=p)]
    at = 0

    def call() -> float:
        # A worker's request waits on sockets (the request, the rate limit's Redis, the response): each
        # wait releases the GIL, and taking it back waits for a thread that holds it.
        nonlocal at
        ext = draws[at % len(draws)]
        at += 1
        t = time.perf_counter()
        time.sleep(IO_WAIT)
        recommend_for_customer(serving, ext, 10, min_price=1, max_price=50)
        time.sleep(IO_WAIT)
        return time.perf_counter() - t - 2 * IO_WAIT

    for _ in range(1000):  # warm: the popular customers' rankings are kept, as in a running worker
        call()
    idle: list[float] = []
    during: list[float] = []
    after: list[float] = []
    swap_wall: list[float] = []
    swap_cpu: list[float] = []
    for k in range(swaps):
        target = versions[k % 2]
        with sessions.begin() as session:
            current = training.serving_run(session)
            if current is not None and current.version == target:
                target = versions[(k + 1) % 2]
            training.promote(session, target, actor="bench")
        t_end = time.perf_counter() + window
        while time.perf_counter() < t_end:
            idle.append(call())
        done = threading.Event()

        def swap(done: threading.Event = done) -> None:
            serving.store.refresh()
            serving.store.wait(900)
            done.set()

        cpu0, own0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
        worker = threading.Thread(target=swap, name="bench-swap")
        worker.start()
        while not done.is_set():
            during.append(call())
        worker.join()
        swap_wall.append(time.perf_counter() - w0)
        swap_cpu.append((time.process_time() - cpu0) - (time.thread_time() - own0))
        served = serving.store.loaded_model()
        assert served is not None and served.version == target, "the swap did not happen"
        t_end = time.perf_counter() + window
        while time.perf_counter() < t_end:
            after.append(call())
    print(f"requests beside {swaps} swaps (in-process recommend_for_customer, Zipf customers):")
    print(f"  idle ({window:g} s before each)   {_stats(idle)}")
    print(f"  during the swap           {_stats(during)}")
    print(f"  after ({window:g} s after each)   {_stats(after)}")
    print(
        f"  the swap: wall median {median(swap_wall) * 1000:.0f} ms, CPU beside the request loop median "
        f"{median(swap_cpu) * 1000:.0f} ms"
    )
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default=SAMPLE, help="orders file (default: the bundled sample)")
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--window", type=float, default=2.0, help="seconds measured before/after each swap")
    parser.add_argument("--workdir", help="reuse a database + models set up by an earlier run (kept)")
    args = parser.parse_args(argv)
    print(machine_line())
    print(f"command: {' '.join([Path(sys.executable).name, '-m', 'bench.bench_swap', *sys.argv[1:]])}")

    def setup(workdir: str) -> None:
        imported = run_child(["-m", "bench.bench_train", "--child", "import", args.path, workdir])
        trained = [run_child(["-m", "bench.bench_train", "--child", "train", workdir]) for _ in range(2)]
        print(
            f"setup: imported {imported['rows']:,} rows, trained {trained[0]['algorithm']} twice on "
            f"{trained[0]['users']:,} x {trained[0]['items']:,} (not measured)"
        )

    in_workdir(
        args.workdir, "giftrec-bench-swap-", setup, lambda workdir: measure(workdir, args.swaps, args.window)
    )


if __name__ == "__main__":
    main()
