"""Benchmark: what one storefront write costs in the web process, in-process (no server, no network).

Run from the repository root, by hand (never by the test suite)::

    timeout 900 .venv/bin/python -m bench.bench_writes [ORDERS_FILE] [--database-url URL] [--calls 400]

Setup, not measured: the orders file (default: the bundled sample) imported into the database (default: a
temporary SQLite file; a PostgreSQL URL is emptied and migrated first), a model trained, a server key, the
app built as ``create_app`` builds it and warmed up. Then, through Flask's test client, ``--calls`` times
each: a one-event ``POST /v1/events`` (a view), a one-line ``POST /v1/orders``, a recommendation request
for a customer who just wrote (the write's follow-up read), the same read again (nothing to reload), and
an event write followed at once by the read for its customer (the freshness check runs in between, once
a second, as in a web process), for customers drawn in turn from the buyers. Printed per kind: the web
process's CPU per call (``time.process_time``, every thread), the SQL statements per call (counted with a
SQLAlchemy ``before_cursor_execute`` listener: SAVEPOINT and RELEASE included, the COMMIT, which the
driver sends by itself, not), on PostgreSQL the server's CPU per call (user + system of the server and
its backends, from /proc), and the customers' rows reloaded (after a write, by this process's next read
or its freshness check) with the thread CPU they took.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench._common import buyers_and_skus, machine_line, print_table, tree_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "online_retail_sample.csv.gz"


def _postmaster(engine: Any) -> int:
    """The pid of the PostgreSQL server the engine talks to (its data directory's postmaster.pid)."""
    with engine.connect() as conn:
        directory = conn.exec_driver_sql("SHOW data_directory").scalar_one()
    return int(Path(directory, "postmaster.pid").read_text().split()[0])


def setup(url: str, orders_file: str, workdir: Path) -> Any:
    from config import load_settings
    from domain import schema
    from domain.access import api_keys
    from domain.customers.imports import import_orders
    from domain.db import Base, make_engine, make_session_factory, session_scope
    from domain.serving.training import train_model

    settings = load_settings(
        environ={},
        database={"url": url},
        server={"instance_dir": str(workdir / "instance"), "secret_key": "bench"},
        model={"artifact_dir": str(workdir / "models"), "num_threads": 1},
        api={"rate_limit": "1000000/minute"},
    )
    if not url.startswith("sqlite"):
        eng = make_engine(url)
        with eng.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        eng.dispose()
    schema.upgrade(url)
    eng = make_engine(url)
    sessions = make_session_factory(eng)
    with session_scope(sessions) as session:
        import_orders(session, orders_file, "online-retail", instance_dir=settings.server.instance_dir)
    with session_scope(sessions) as session:
        run = train_model(session, settings)
        assert run.status == "succeeded", run.error
    with session_scope(sessions) as session:
        key = api_keys.create_key(session, "server", name="bench")[1]
        customers, skus = buyers_and_skus(session, sku_limit=500)
    eng.dispose()
    return settings, key, customers, skus


def measure(settings: Any, key: str, customers: list[str], skus: list[str], calls: int) -> None:
    from api import create_app

    app = create_app(settings)
    client = app.test_client()
    ctx = app.extensions["giftrec"]
    statements: collections.Counter[str] = collections.Counter()
    counting = [False]
    engine = ctx.sessions.kw["bind"]

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if counting[0]:
            statements[statement.split(None, 1)[0].upper()] += 1

    # The rows reloaded (after a write, by this process's next read or by the freshness check, which
    # runs on a thread of its own) and the CPU they take, apart.
    store = ctx.services["serving"].store
    reloads = {"customers": 0, "cpu": 0.0}
    reload = store._fresh.reload

    def counted_reload(session: Any, data: Any, customer_ids: Any) -> None:
        ids = list(customer_ids)
        started = time.thread_time()
        reload(session, data, ids)
        reloads["cpu"] += time.thread_time() - started
        reloads["customers"] += len(ids)

    store._fresh.reload = counted_reload
    headers = {"X-Api-Key": key}
    postgres = _postmaster(engine) if not settings.database.url.startswith("sqlite") else 0

    def event_write(i: int) -> Any:
        ev = {"id": uuid.uuid4().hex, "type": "view", "sku": skus[i % len(skus)], "customer_id": who(i)}
        return client.post("/v1/events", json={"events": [ev]}, headers=headers)

    def order_write(i: int) -> Any:
        line = {"sku": skus[(i * 7) % len(skus)], "quantity": 1, "unit_price": "4.95"}
        body = {"order_id": f"B-{uuid.uuid4().hex[:20]}", "customer_id": who(i), "lines": [line]}
        return client.post("/v1/orders", json=body, headers=headers)

    def read_after(i: int) -> Any:
        return client.get(f"/v1/customers/{who(i)}/recommendations?n=10", headers=headers)

    def event_then_read(i: int) -> Any:
        event_write(i + calls)  # other customers than the phases above
        return read_after(i + calls)

    def who(i: int) -> str:
        return customers[i % len(customers)]

    # Warm up: the model loaded, every customer's rows cut and ranked once.
    for i in range(min(len(customers), 3 * calls)):
        read_after(i)
    rows = []
    for name, call, expect in (
        ("event write", event_write, 200),
        ("order write", order_write, 201),
        ("read after own write", read_after, 200),
        ("read, no write", read_after, 200),
        ("event write, then a read", event_then_read, 200),
    ):
        if name == "read after own write":
            offset = 0  # the customers the writes above named
        elif name == "read, no write":
            for i in range(calls):  # the same customers, their write's reload done
                read_after(i)
            offset = 0
        else:
            offset = 0
        statements.clear()
        reloads.update(customers=0, cpu=0.0)
        counting[0] = True
        pg_before = tree_cpu_seconds([postgres]) if postgres else 0.0
        cpu = time.process_time()
        for i in range(calls):
            response = call(i + offset)
            assert response.status_code == expect, response.get_data(as_text=True)
        cpu = time.process_time() - cpu
        pg = (tree_cpu_seconds([postgres]) - pg_before) if postgres else float("nan")
        counting[0] = False
        per = {k: v / calls for k, v in statements.items()}
        rows.append(
            [
                name,
                f"{cpu / calls * 1000:.2f}",
                f"{sum(per.values()):.1f}",
                " ".join(f"{k} {v:.1f}" for k, v in sorted(per.items())),
                f"{pg / calls * 1000:.2f}",
                f"{reloads['customers'] / calls:.2f}",
                f"{reloads['cpu'] / calls * 1000:.2f}",
            ]
        )
    print_table(
        ["call", "web CPU ms", "statements", "by verb", "PostgreSQL CPU ms", "reloads", "reload CPU ms"], rows
    )
    ctx.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orders_file", nargs="?", default=str(SAMPLE))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--profile", default="", help="write a cProfile of the measured calls to this file")
    args = parser.parse_args(argv)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="giftrec-bench-writes-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        settings, key, customers, skus = setup(url, args.orders_file, workdir)
        if args.profile:
            import cProfile

            with cProfile.Profile() as prof:
                measure(settings, key, customers, skus, args.calls)
            prof.dump_stats(args.profile)
        else:
            measure(settings, key, customers, skus, args.calls)
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
