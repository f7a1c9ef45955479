"""Time the nightly lifecycle run (RFM snapshot + every trigger) on generated data, with a trained model.

Usage (from the repository root)::

    timeout 1800 .venv/bin/python bench/bench_lifecycle.py [--customers 100000] [--lines 1000000]
        [--products 10000] [--day 2011-03-01] [--profile] [--keep-data DIR]

Generates (deterministically, seed ``--seed``) a catalogue, customers and two years of orders in a
temporary SQLite database: the orders of `bench_planning` (three random lines each) plus repeat orders in
which every customer mostly rebuys two or three favourite products, up to ``--lines`` order lines; cart
events for 2% of the customers in the last day; products added in the last month. Then trains the
configured model (`giftrec train`, timed apart: it is its own nightly job) and times the lifecycle job's
two transactions as ``jobs/lifecycle.py`` runs them: the RFM snapshot of every customer, then every
trigger evaluated, assignments recorded and selections curated (with the trained model's scores, one
batch per run) for those who fire, and prints a table of wall and CPU seconds (this process) per phase:
loading, RFM scoring, writing, and per trigger finding, assigning, curation and queueing, each commit.
``--profile`` runs the lifecycle under cProfile and prints the 30 costliest functions by cumulative time.
``--keep-data DIR`` keeps the generated, trained database and starts each later run from a fresh copy.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


import domain.models as m  # noqa: E402
from bench._common import machine_line, print_table  # noqa: E402
from bench.bench_planning import _chunked_insert, generate, temporary_database  # noqa: E402
from domain.db import session_scope  # noqa: E402
from domain.lifecycle.snapshots import take_snapshot  # noqa: E402
from domain.lifecycle.trigger_runs import run_triggers  # noqa: E402
from domain.serving.training import train_model  # noqa: E402


def add_repeat_orders(
    session, rng: random.Random, n_customers: int, n_products: int, n_lines: int, day: dt.date
):  # type: ignore[no-untyped-def]
    """Repeat orders up to `n_lines` more lines: each customer rebuys a few favourites (80%) or anything."""
    start = dt.datetime.combine(day, dt.time()) - dt.timedelta(days=730)
    favourites = [rng.sample(range(1, n_products + 1), 3) for _ in range(n_customers)]
    orders, lines, written = [], [], 0
    o = 10_000_000
    while written < n_lines:
        o += 1
        c = rng.randint(1, n_customers)
        orders.append(
            {
                "id": o,
                "external_id": f"R{o:08d}",
                "customer_id": c,
                "kind": "sale",
                "ordered_at": start + dt.timedelta(minutes=rng.randint(0, 730 * 1440 - 1)),
                "created_at": start,
            }
        )
        k = min(rng.randint(1, 4), n_lines - written)
        picks = {
            rng.choice(favourites[c - 1]) if rng.random() < 0.8 else rng.randint(1, n_products)
            for _ in range(k)
        }
        for line_no, pid in enumerate(sorted(picks), start=1):
            lines.append(
                {
                    "order_id": o,
                    "line_no": line_no,
                    "product_id": pid,
                    "quantity": rng.randint(1, 4),
                    "unit_price": round(rng.lognormvariate(3.0, 0.9), 2) + 0.5,
                }
            )
        written += len(picks)
    _chunked_insert(session, m.Order, orders)
    _chunked_insert(session, m.OrderLine, lines)
    return len(orders), len(lines)


def add_recent_activity(session, rng: random.Random, n_customers: int, n_products: int, day: dt.date) -> None:  # type: ignore[no-untyped-def]
    """Cart events of 2% of the customers on the evening before `day`; 1% of the products new this month;
    an email address for everybody (the generated customers have consent but no address)."""
    session.execute(m.Customer.__table__.update().values(email="c" + m.Customer.external_id + "@example.com"))
    evening = dt.datetime.combine(day, dt.time()) - dt.timedelta(hours=6)
    events = [
        {
            "customer_id": c,
            "product_id": rng.randint(1, n_products),
            "kind": "cart",
            "occurred_at": evening + dt.timedelta(minutes=rng.randint(0, 180)),
        }
        for c in rng.sample(range(1, n_customers + 1), n_customers // 50)
    ]
    _chunked_insert(session, m.Event, events)
    recent = dt.datetime.combine(day, dt.time()) - dt.timedelta(days=10)
    for pid in rng.sample(range(1, n_products + 1), max(1, n_products // 100)):
        session.execute(m.Product.__table__.update().where(m.Product.id == pid).values(created_at=recent))


def generate_and_train(args: argparse.Namespace, sessions, settings, now: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    """The generated data (seeded, labelled generated in the output), then the nightly training job."""
    rng = random.Random(args.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    with session_scope(sessions) as s:
        n_orders, n_lines = generate(s, rng, args.customers, 1000, args.products, args.day)
        more_orders, more_lines = add_repeat_orders(
            s, rng, args.customers, args.products, args.lines - n_lines, args.day
        )
        add_recent_activity(s, rng, args.customers, args.products, args.day)
    print(
        f"generated {args.customers:,} customers, {args.products:,} products, {n_orders + more_orders:,} "
        f"orders / {n_lines + more_lines:,} lines (seed {args.seed}) in {time.perf_counter() - t0:.1f} s "
        f"wall, {time.process_time() - c0:.1f} s CPU"
    )
    t0, c0 = time.perf_counter(), time.process_time()
    with session_scope(sessions) as s:
        run = train_model(s, settings, now=now.replace(tzinfo=None))
    print(
        f"trained {settings.model.algorithm} ({run.status}) in {time.perf_counter() - t0:.1f} s wall, "
        f"{time.process_time() - c0:.1f} s CPU (its own nightly job: not part of the lifecycle run)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2011, 3, 1))
    parser.add_argument("--seed", type=int, default=2011)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--keep-data",
        metavar="DIR",
        help="keep the generated, trained database in DIR and start later runs from a copy of it",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        cached = None
        if args.keep_data:
            name = f"lifecycle-{args.customers}-{args.lines}-{args.products}-{args.seed}-{args.day}.db"
            cached = Path(args.keep_data) / name
        now = dt.datetime.combine(args.day, dt.time(6, 0), tzinfo=dt.UTC)
        if cached is not None and cached.exists():
            shutil.copyfile(cached, Path(tmp) / "bench.db")
            engine, sessions, settings = temporary_database(tmp)
            print(f"generated data and trained model reused from {cached} (a fresh copy)")
        else:
            engine, sessions, settings = temporary_database(tmp)
            generate_and_train(args, sessions, settings, now)
            if cached is not None:
                engine.dispose()
                cached.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / "bench.db", cached)

        phases: list[tuple[str, float, float]] = []
        results: list[str] = []
        profiler = cProfile.Profile() if args.profile else None

        def since(start: tuple[float, float]) -> tuple[float, float]:
            return time.perf_counter() - start[0], time.process_time() - start[1]

        def lifecycle() -> None:
            # the job's two transactions (jobs/lifecycle.py); each commit is timed as a phase of its own
            with session_scope(sessions) as s:
                snap = take_snapshot(s, settings.rfm, now.date())
                start = (time.perf_counter(), time.process_time())
            phases.extend((name, wall, cpu) for name, (wall, cpu) in snap.phases.items())
            phases.append(("RFM: commit", *since(start)))
            results.append(snap.summary())
            with session_scope(sessions) as s:
                triggers = run_triggers(s, settings, now)
                start = (time.perf_counter(), time.process_time())
            phases.extend((name, wall, cpu) for name, (wall, cpu) in triggers.phases.items())
            phases.append(("triggers: commit", *since(start)))
            results.append(triggers.summary())

        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.runcall(lifecycle)
        else:
            lifecycle()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        for line in results:
            print(line)
        print(machine_line())
        print_table(
            ["phase", "wall s", "CPU s"],
            [(name, w, c) for name, w, c in phases if w >= 0.005]
            + [("total (both transactions, with commits)", wall, cpu)],
        )
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            print(out.getvalue())
        engine.dispose()


if __name__ == "__main__":
    main()
