"""Benchmark: the CPU a web process spends reloading customers' rows after their writes, in-process.

Run from the repository root, by hand (never by the test suite)::

    timeout 900 .venv/bin/python -m bench.bench_reload [ORDERS_FILE] [--database-url URL] [--rounds 5]

Setup, not measured: the orders file (default: the bundled sample) imported into the database (default: a
temporary SQLite file; a PostgreSQL URL is emptied and migrated first), a model trained and loaded into a
:class:`~domain.serving.model_store.ModelStore` that checks inline. Then, ``--rounds`` times, every
customer of the loaded data has their rows reloaded through ``ModelStore._reload_customers``: one at a
time (what a request does for a customer its process just wrote for), and in batches of ``--batch`` (the
freshness check's, for the other process's writes); then one at a time as a request does it
(``ModelStore.customer`` after ``customer_changed``: its own session and connection check-out, with its
wall time). Printed per kind: the thread CPU per reload and per
customer (``time.thread_time``, median of the rounds), and of it the read alone (``load_interactions``
on the same customers), with the rows read per reload.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine_line, print_table
from bench.bench_writes import SAMPLE, setup


def measure(settings: Any, rounds: int, batch: int) -> None:
    from domain.customers.interactions import load_interactions
    from domain.db import make_engine, make_session_factory
    from domain.serving.model_store import ModelStore

    engine = make_engine(settings.database.url)
    sessions = make_session_factory(engine)
    store = ModelStore(settings, sessions, background=False)
    data = store.current()
    ids = [int(c) for c in data.users.ids]
    kinds = {
        "one customer": [[c] for c in ids],
        f"batch of {batch}": [ids[i : i + batch] for i in range(0, len(ids), batch)],
    }
    rows = []
    with sessions() as session:

        def cpu_of(call: Any, groups: list[list[int]]) -> float:
            started = time.thread_time()
            for group in groups:
                call(group)
            return time.thread_time() - started

        def reload(group: list[int]) -> None:
            store._reload_customers(session, data, group)

        def read(group: list[int]) -> None:
            load_interactions(session, customer_ids=group)

        for name, groups in kinds.items():
            cpu_of(reload, groups)  # warm up: statements compiled, caches filled
            reloads = [cpu_of(reload, groups) for _ in range(rounds)]
            reads = [cpu_of(read, groups) for _ in range(rounds)]
            read_rows = sum(len(load_interactions(session, customer_ids=g)) for g in groups)
            per = statistics.median(reloads) / len(groups)
            rows.append(
                [
                    name,
                    str(len(groups)),
                    f"{read_rows / len(groups):.0f}",
                    f"{per * 1e6:.0f}",
                    f"{per / len(groups[0]) * 1e6:.0f}",
                    f"{statistics.median(reads) / len(groups) * 1e6:.0f}",
                    "",
                ]
            )

    # As a request does it after its process wrote for the customer: its own session (a connection from
    # the pool, pinged), the read, and the session closed. Wall time counts the round trips, and the
    # database server's work on them; thread CPU only this process's.
    def as_request(group: list[int]) -> None:
        store.customer_changed(group[0])
        store.customer(data, group[0])

    groups = kinds["one customer"]
    as_request(groups[0])
    walls, cpus = [], []
    for _ in range(rounds):
        wall = time.perf_counter()
        cpus.append(cpu_of(as_request, groups))
        walls.append(time.perf_counter() - wall)
    rows.append(
        [
            "one customer, as a request (own session)",
            str(len(groups)),
            "",
            f"{statistics.median(cpus) / len(groups) * 1e6:.0f}",
            f"{statistics.median(cpus) / len(groups) * 1e6:.0f}",
            "",
            f"{statistics.median(walls) / len(groups) * 1e6:.0f}",
        ]
    )
    print_table(
        ["reload", "reloads", "rows each", "CPU us", "CPU us per customer", "of it read us", "wall us"], rows
    )
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orders_file", nargs="?", default=str(SAMPLE))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args(argv)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="giftrec-bench-reload-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        settings = setup(url, args.orders_file, workdir)[0]
        measure(settings, args.rounds, args.batch)


if __name__ == "__main__":
    main()
