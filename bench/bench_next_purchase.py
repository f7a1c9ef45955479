"""Benchmark: training the next-purchase ranker once, and what a web process pays to serve it.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.bench_next_purchase [UCI_PATH] [--repeat 2] [--database DB_PATH]

UCI_PATH defaults to ../shared/data/online_retail.csv.gz; it is imported once into a temporary SQLite
database (not part of the figures; with ``--database``, an SQLite file made by ``giftrec import orders``
stands in for it). Every measured run is a fresh child process, so its peak resident memory (``ru_maxrss``
from ``wait4``) and CPU (user + system, start-up included) are its own.

1. **train** (``--repeat`` times): ``train_next_purchase`` as ``giftrec train --next-purchase`` runs it:
   the ranker's fit (read the purchases, the candidates and features of the training windows, the
   classifier, the scores of every customer's candidates), the artifact saved and stored in the database,
   the commit. Reported: fit wall and CPU (the run's own metrics), save, total wall and CPU, artifact size.
2. **serve** (once per trained version, the newest): a web process's service on the same database, as
   ``api.next_purchase`` builds it. Reported: the model store's first load (the data every request needs,
   not this change's), then the ranker's load (fetch the artifact from the database, verify its checksums,
   unpickle: what a swap costs), the first answer, and the median of answers for 200 distinct customers,
   each with its CPU; the resident memory before and after the load; and how many times the ranker was
   fitted in that process (must be 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine_line, median, print_table, rss_mib, run_child

DEFAULT_UCI = "../shared/data/online_retail.csv.gz"
ANSWERS = 200


def _settings(workdir: str, database: str) -> Any:
    from bench.bench_train import _settings as train_settings

    return train_settings(workdir, database or None)


def child_train(workdir: str, database: str) -> None:
    """One ``train_next_purchase`` committed; prints its figures."""
    from domain.db import make_engine, make_session_factory, session_scope
    from domain.serving.next_purchase_runs import train_next_purchase

    settings = _settings(workdir, database)
    engine = make_engine(settings.database.url)
    started, cpu = time.perf_counter(), time.process_time()
    with session_scope(make_session_factory(engine)) as session:
        run = train_next_purchase(session, settings)
        status, error, metrics = run.status, run.error, dict(run.metrics)
        shape = (run.n_customers, run.n_items)
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    if status != "succeeded":
        raise SystemExit(f"training failed: {error}")
    print(json.dumps({**metrics, "customers": shape[0], "items": shape[1], "total": total, "cpu": total_cpu}))


def _timed(call: Any) -> tuple[Any, float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    value = call()
    return value, time.perf_counter() - started, time.process_time() - cpu


def child_serve(workdir: str, database: str) -> None:
    """A web process's next-purchase service on the database: load, first answer, answers; prints figures."""
    from sqlalchemy import func, select

    from domain.catalog.snapshot import CatalogSnapshot
    from domain.db import make_engine, make_session_factory
    from domain.models import Customer, Order
    from domain.serving.model_store import ModelStore
    from domain.serving.next_purchase import next_purchase_for
    from domain.serving.next_purchase_service import NextPurchaseService
    from domain.serving.recommendations import Serving
    from recommender.next_basket import NextBasketRanker

    fits: list[object] = []
    fit = NextBasketRanker.fit

    def counted(self: NextBasketRanker, *args: Any, **kwargs: Any) -> NextBasketRanker:
        fits.append(self)
        return fit(self, *args, **kwargs)

    NextBasketRanker.fit = counted  # type: ignore[method-assign]  # counts; the real fit would still run
    settings = _settings(workdir, database)
    engine = make_engine(settings.database.url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        customers = list(
            session.scalars(
                select(Customer.external_id)
                .join(Order, Order.customer_id == Customer.id)
                .where(Order.kind == "sale")
                .group_by(Customer.external_id)
                .order_by(func.count().desc(), Customer.external_id)
                .limit(ANSWERS + 1)
            )
        )
    store = ModelStore(settings, sessions, background=False)
    serving = Serving(settings, store, CatalogSnapshot(sessions))
    _, store_wall, store_cpu = _timed(store.current)
    serving.catalog.current()
    service = NextPurchaseService(serving, sessions, background=False)
    rss_before = rss_mib()
    _, load_wall, load_cpu = _timed(service.refresh)
    rss_after = rss_mib()
    if service.version is None:
        raise SystemExit(f"no ranker loaded: {service.error}")
    first, first_wall, first_cpu = _timed(lambda: next_purchase_for(service, customers[0], 10))
    walls, cpus = [], []
    for customer in customers[1:]:
        _, wall, cpu = _timed(lambda c=customer: next_purchase_for(service, c, 10))
        walls.append(wall)
        cpus.append(cpu)
    engine.dispose()
    print(
        json.dumps(
            {
                "version": service.version,
                "note": first.note,
                "store_wall": store_wall,
                "store_cpu": store_cpu,
                "load_wall": load_wall,
                "load_cpu": load_cpu,
                "rss_before_load": rss_before,
                "rss_after_load": rss_after,
                "first_wall": first_wall,
                "first_cpu": first_cpu,
                "answer_wall_median": median(walls),
                "answer_cpu_median": median(cpus),
                "answers": len(walls),
                "fits": len(fits),
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_UCI)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--database", default="", help="an SQLite file already imported (not imported again)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        {"train": child_train, "serve": child_serve}[kind](*rest, *([""] * (2 - len(rest))))
        return
    if not args.database and not Path(args.data).exists():
        print(f"no such file: {args.data}", file=sys.stderr)
        raise SystemExit(2)
    print(machine_line())
    database = str(Path(args.database).resolve()) if args.database else ""
    with tempfile.TemporaryDirectory(prefix="giftrec-bench-next-purchase-") as workdir:
        if not database:
            imported = run_child(["-m", "bench.bench_train", "--child", "import", args.data, workdir])
            print(f"imported {imported['rows']:,} rows in {imported['seconds']:.1f} s (not included)")
        trains = [
            run_child(["-m", "bench.bench_next_purchase", "--child", "train", workdir, database])
            for _ in range(args.repeat)
        ]
        serve = run_child(["-m", "bench.bench_next_purchase", "--child", "serve", workdir, database])
    print(f"train: {trains[0]['customers']:,} customers x {trains[0]['items']:,} products")
    print_table(
        ["run", "fit s", "fit CPU s", "save s", "total s", "total CPU s", "child CPU s", "peak MiB", "MiB"],
        [
            [
                i,
                t["fit_seconds"],
                t["fit_cpu_seconds"],
                t["save_seconds"],
                t["total"],
                t["cpu"],
                t["cpu_seconds"],
                round(t["peak_rss_mib"]),
                round(t["artifact_bytes"] / 2**20, 1),
            ]
            for i, t in enumerate(trains, 1)
        ],
    )
    print(f"serve: ranker {serve['version']} (note: {serve['note']}), fitted here {serve['fits']} times")
    ms = {
        key: (1000 * serve[f"{key}_wall"], 1000 * serve[f"{key}_cpu"]) for key in ("store", "load", "first")
    }
    ms["answer"] = (1000 * serve["answer_wall_median"], 1000 * serve["answer_cpu_median"])
    print_table(
        ["step", "wall ms", "CPU ms"],
        [
            ["model store first load (not this change)", *ms["store"]],
            ["ranker load (fetch, verify, unpickle)", *ms["load"]],
            ["first answer", *ms["first"]],
            [f"answer, median of {serve['answers']}", *ms["answer"]],
        ],
    )
    print(
        f"serve: RSS {serve['rss_before_load']:.0f} MiB before the load, {serve['rss_after_load']:.0f} MiB "
        f"after; peak {serve['peak_rss_mib']:.0f} MiB; child CPU {serve['cpu_seconds']:.2f} s"
    )


if __name__ == "__main__":
    main()
