"""Benchmark: the CPU a web process spends reloading customers' rows after their writes, in-process.

Run from the repository root, by hand (never by the test suite)::

    timeout 900 .venv/bin/python -m bench.bench_reload [ORDERS_FILE] [--database-url URL] [--rounds 5]

Setup, not measured: the orders file (default: the bundled sample) imported into the database (default: a
temporary SQLite file; a PostgreSQL URL is emptied and migrated first), a model trained and loaded into a
:class:`~domain.serving.model_store.ModelStore` that checks inline, on a clock this benchmark moves. Then,
``--rounds`` times, customers have their rows reloaded through ``Freshness.reload`` (the store's): every
customer one at a time (what a request does for a customer its process just wrote for), and in batches
of ``--batch`` (the freshness check's, for the other process's writes); then one at a time as a request
does it (``ModelStore.customer`` after ``customer_changed``: its own session and connection check-out,
with its wall time). First whole (no watermark has settled yet, so every reload reads all of a
customer's rows), then, after freshness checks for longer than ``freshness_overlap`` on the moved clock,
with the rows of customers with at least ``KEEP_FROM`` rows kept (:mod:`domain.serving.kept_rows`): a
reload then reads only the orders and events above the settled watermark (none arrive during the run,
so this is a kept reload's fixed cost). The customers with at least ``KEEP_FROM`` rows are measured both
ways. Printed per kind: the rows read from the database per reload, the thread CPU per reload and per
customer (``time.thread_time``, median of the rounds), and of it the read alone
(``load_customer_rows``, the same rows).

Last, the customers with kept rows each have a view event written as the API writes it
(``record_events``, the store told with the rows written), then, in one pass, the request's reload
(``ModelStore.customer``: the written rows added to the kept ones, no read), the same reload when the
store is told without the rows (it reads what is above the settled watermark), and the whole
personal-picks call after such a write (``recommend_for_customer``: that reload, the customer folded in
and ranked, the picks explained). On PostgreSQL, the server's CPU per call too (user + system of the
server and its backends, from /proc, in ticks: a median over rounds of many calls).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import machine_line, print_table, tree_cpu_seconds
from bench.bench_writes import SAMPLE, _postmaster, setup


class _Clock:
    """The store's monotonic clock, moved by hand: whether it has a settled watermark is this run's choice."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def measure(settings: Any, rounds: int, batch: int) -> None:
    from sqlalchemy import select

    from domain.customers import events
    from domain.customers.interactions import load_customer_rows
    from domain.db import make_engine, make_session_factory
    from domain.models import Customer, Product
    from domain.serving.kept_rows import KEEP_FROM
    from domain.serving.recommendations import build_serving, recommend_for_customer

    engine = make_engine(settings.database.url)
    sessions = make_session_factory(engine)
    clock = _Clock()
    serving = build_serving(settings, sessions, background=False, clock=clock)
    store = serving.store
    data = store.current()
    ids = [int(c) for c in data.users.ids]
    rows: list[list[str]] = []
    with sessions() as session:
        counts = {c: len(load_customer_rows(session, [c])) for c in ids}
    active = [[c] for c in ids if counts[c] >= KEEP_FROM]

    def cpu_of(call: Any, groups: list[list[int]]) -> float:
        started = time.thread_time()
        for group in groups:
            call(group)
        return time.thread_time() - started

    def in_session(name: str, groups: list[list[int]]) -> None:
        with sessions() as session:

            def reload(group: list[int]) -> None:
                store._fresh.reload(session, data, group)

            def read(group: list[int]) -> None:
                load_customer_rows(session, group, after=store._fresh.settled())

            cpu_of(reload, groups)  # warm up: statements compiled, caches filled, rows kept
            reloads = [cpu_of(reload, groups) for _ in range(rounds)]
            reads = [cpu_of(read, groups) for _ in range(rounds)]
            read_rows = sum(len(load_customer_rows(session, g, after=store._fresh.settled())) for g in groups)
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
    def as_request(name: str, groups: list[list[int]]) -> None:
        def one(group: list[int]) -> None:
            store.customer_changed(group[0])
            store.customer(data, group[0])

        one(groups[0])
        walls, cpus = [], []
        for _ in range(rounds):
            wall = time.perf_counter()
            cpus.append(cpu_of(one, groups))
            walls.append(time.perf_counter() - wall)
        cpu = statistics.median(cpus) / len(groups) * 1e6
        wall_us = statistics.median(walls) / len(groups) * 1e6
        rows.append([name, str(len(groups)), "", f"{cpu:.0f}", f"{cpu:.0f}", "", f"{wall_us:.0f}"])

    # Read whole: no watermark has settled yet on this clock (a store's first seconds, or a customer's
    # first reload), so nothing is kept.
    singles = [[c] for c in ids]
    in_session("one customer, whole", singles)
    in_session(f"batch of {batch}, whole", [ids[i : i + batch] for i in range(0, len(ids), batch)])
    as_request("one customer, as a request, whole", singles)
    in_session(f"one customer of >= {KEEP_FROM} rows, whole", active)
    as_request(f"one customer of >= {KEEP_FROM} rows, as a request, whole", active)
    # Freshness checks for longer than the overlap: a settled watermark, then rows are kept and only
    # what is above it is read (nothing here: no write arrives during the run).
    for _ in range(int(store._overlap) + 2):
        clock.now += 1.0
        store.current()
    in_session(f"one customer of >= {KEEP_FROM} rows, kept", active)
    as_request(f"one customer of >= {KEEP_FROM} rows, as a request, kept", active)
    print_table(
        ["reload", "reloads", "rows read each", "CPU us", "CPU us per customer", "of it read us", "wall us"],
        rows,
    )

    # After the customer's own write, as the API records it and tells the store (with the rows written).
    with sessions() as session:
        external = dict(session.execute(select(Customer.id, Customer.external_id)).all())
        skus = list(session.scalars(select(Product.sku).order_by(Product.id).limit(500)))
    postgres = 0 if settings.database.url.startswith("sqlite") else _postmaster(engine)
    kept = [g[0] for g in active if g[0] in data.kept]
    written = [0]
    # A checkout from before the rows written were passed (an A/B of this benchmark) tells it without them.
    passes_rows = "rows" in inspect.signature(store.customer_changed).parameters

    def write(customer_id: int, passed: bool) -> None:
        written[0] += 1
        sku = skus[written[0] % len(skus)]
        view = events.EventInput(uuid.uuid4().hex, "view", sku, external[customer_id])
        with sessions.begin() as session:
            result = events.record_events(session, settings, [view])
        told: dict[str, Any] = {"event_ids": result.event_ids[customer_id]}
        if passed and passes_rows:
            told["rows"] = result.rows[customer_id]
        store.customer_changed(customer_id, **told)

    after: list[list[str]] = []
    calls: list[tuple[str, bool, Any]] = [
        ("the request's reload, the rows written added", True, lambda c: store.customer(data, c)),
        ("the same without the rows written: read", False, lambda c: store.customer(data, c)),
        (
            "personal picks (reload, ranking, explanations)",
            True,
            lambda c: recommend_for_customer(serving, external[c]),
        ),
    ]
    for name, passed, call in calls:
        cpus, servers = [], []
        for _ in range(rounds + 1):  # the first round warms up
            cpu = server = 0.0
            for customer_id in kept:
                write(customer_id, passed)
                before = tree_cpu_seconds([postgres]) if postgres else 0.0
                started = time.thread_time()
                call(customer_id)
                cpu += time.thread_time() - started
                server += tree_cpu_seconds([postgres]) - before if postgres else 0.0
            cpus.append(cpu / len(kept))
            servers.append(server / len(kept))
        server_us = f"{statistics.median(servers[1:]) * 1e6:.0f}" if postgres else ""
        after.append([name, str(len(kept)), f"{statistics.median(cpus[1:]) * 1e6:.0f}", server_us])
    print(f"\nafter the customer's own view event ({len(kept)} customers with kept rows, {rounds} rounds):")
    print_table(["call", "customers", "CPU us", "PostgreSQL CPU us"], after)
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
