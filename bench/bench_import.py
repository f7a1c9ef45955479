"""Benchmark: import an order file into a fresh SQLite database; rows/s and peak memory, median of N runs.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.bench_import [PATH] [--repeat 3] [--format online-retail]

PATH defaults to ../shared/data/online_retail.csv.gz (the full UCI file, 541,909 rows). Each run is a child
process of its own with a new SQLite file. Migrating the empty database is not measured; parsing,
cleaning, inserting and the commit are: "seconds" is their wall time, "cpu s" their CPU time (which hardly
moves when other processes compete for the cores, unlike the wall time). "peak MiB" is the child's peak
resident memory (``ru_maxrss`` from ``wait4``): interpreter, SQLAlchemy and the parsed file included.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench._common import machine_line, median, print_table, run_child

DEFAULT_PATH = "../shared/data/online_retail.csv.gz"


def child(path: str, fmt: str, workdir: str) -> None:
    """One measured import (runs in its own process); prints one JSON line."""
    from domain import schema
    from domain.customers.imports import import_orders
    from domain.db import make_engine, make_session_factory, session_scope

    url = f"sqlite:///{Path(workdir) / 'bench.db'}"
    schema.upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    wall, cpu = time.perf_counter(), time.process_time()
    with session_scope(sessions) as session:
        summary = import_orders(session, path, fmt, instance_dir=workdir)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    print(
        json.dumps({"rows": summary.rows, "lines": summary.order_lines_created, "seconds": wall, "cpu": cpu})
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=DEFAULT_PATH)
    parser.add_argument("--format", default="online-retail", choices=("online-retail", "generic"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.path, args.format, args.child)
        return

    print(machine_line())
    print(f"import {args.path} ({args.format}) into a fresh SQLite file, {args.repeat} runs")
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="giftrec-bench-") as workdir:
            runs.append(
                run_child(
                    ["-m", "bench.bench_import", args.path, "--format", args.format, "--child", workdir]
                )
            )
    table = [
        [str(i), r["rows"], r["lines"], r["seconds"], r["rows"] / r["seconds"], r["cpu"], r["peak_rss_mib"]]
        for i, r in enumerate(runs, start=1)
    ]
    seconds = median([r["seconds"] for r in runs])
    rows = runs[0]["rows"]
    table.append(
        [
            "median",
            rows,
            runs[0]["lines"],
            seconds,
            rows / seconds,
            median([r["cpu"] for r in runs]),
            median([r["peak_rss_mib"] for r in runs]),
        ]
    )
    print_table(["run", "rows", "order lines", "seconds", "rows/s", "cpu s", "peak MiB"], table)


if __name__ == "__main__":
    main()
