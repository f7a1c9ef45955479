"""Benchmark: import an order file into a fresh database; rows/s, CPU and peak memory, median of N runs.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.bench_import [PATH] [--repeat 3] [--format online-retail]
    timeout 3h .venv/bin/python -m bench.bench_import --generate 500000 2000000 10000000 --repeat 1

PATH defaults to ../shared/data/online_retail.csv.gz (the full UCI file, 541,909 rows). ``--generate N...``
imports generated UCI-like files of N rows instead (``domain.demo.order_files``, seeded), written into a
temporary folder and deleted afterwards, to show that the import's memory does not grow with the file.
Each run is a child process of its own with a new SQLite file, or, with ``--database-url``, a PostgreSQL
database the benchmark may empty (every table is dropped and migrated again before each run).
Migrating the empty database and generating the file are not measured; parsing, cleaning, staging,
inserting and the commit are: "seconds" is their wall time, "cpu s" the child's CPU time during them
(which hardly moves when other processes compete for the cores, unlike the wall time; the database
server's own CPU time is not in it). "peak MiB" is the child's peak resident memory (``ru_maxrss`` from
``wait4``): interpreter, SQLAlchemy, SQLite's page cache and the chunk being parsed included. With
``--tracemalloc``, "heap MiB" is the peak of the Python heap during the import (``tracemalloc``, which
slows the run down about twice: its times are not comparable with runs without it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench._common import machine_line, median, print_table, run_child

DEFAULT_PATH = "../shared/data/online_retail.csv.gz"


def child(path: str, fmt: str, workdir: str, url: str | None, trace: bool) -> None:
    """One measured import (runs in its own process); prints one JSON line."""
    import tracemalloc

    import domain.models  # noqa: F401  (registers the tables)
    from domain import schema
    from domain.customers.imports import import_orders
    from domain.db import Base, make_engine, make_session_factory, session_scope

    if url is None:
        url = f"sqlite:///{Path(workdir) / 'bench.db'}"
    else:
        with make_engine(url).begin() as conn:
            Base.metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    schema.upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    if trace:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    with session_scope(sessions) as session:
        summary = import_orders(session, path, fmt, instance_dir=workdir)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    heap = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    engine.dispose()
    result = {"rows": summary.rows, "lines": summary.order_lines_created, "seconds": wall, "cpu": cpu}
    print(json.dumps({**result, "heap_mib": heap}))


def measure(path: str, fmt: str, repeat: int, url: str | None, trace: bool) -> list[dict[str, float]]:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="giftrec-bench-") as workdir:
            args = ["-m", "bench.bench_import", path, "--format", fmt, "--child", workdir]
            args += ["--database-url", url] if url else []
            args += ["--tracemalloc"] if trace else []
            runs.append(run_child(args))
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=DEFAULT_PATH)
    parser.add_argument("--format", default="online-retail", choices=("online-retail", "generic"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--generate", type=int, nargs="+", metavar="ROWS", help="generated files of ROWS rows"
    )
    parser.add_argument("--seed", type=int, default=18, help="seed of the generated files")
    parser.add_argument("--database-url", help="a PostgreSQL database to empty and import into")
    parser.add_argument("--tracemalloc", action="store_true", help="also the Python heap's peak (slower)")
    parser.add_argument("--child", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.path, args.format, args.child, args.database_url, args.tracemalloc)
        return

    database = "PostgreSQL" if args.database_url else "a fresh SQLite file"
    print(machine_line())
    headers = ["file", "run", "rows", "order lines", "seconds", "rows/s", "cpu s", "peak MiB"]
    headers += ["heap MiB"] if args.tracemalloc else []
    table = []

    def report(name: str, runs: list[dict[str, float]]) -> None:
        for i, r in enumerate(runs, start=1):
            row = [name, str(i), r["rows"], r["lines"], r["seconds"], r["rows"] / r["seconds"], r["cpu"]]
            table.append([*row, r["peak_rss_mib"], *([r["heap_mib"]] if args.tracemalloc else [])])
        if len(runs) > 1:
            seconds = median([r["seconds"] for r in runs])
            row = [name, "median", runs[0]["rows"], runs[0]["lines"], seconds, runs[0]["rows"] / seconds]
            row += [median([r["cpu"] for r in runs]), median([r["peak_rss_mib"] for r in runs])]
            table.append(row + ([median([r["heap_mib"] for r in runs])] if args.tracemalloc else []))

    if args.generate:
        from domain.demo.order_files import write_uci_like

        print(
            f"import generated UCI-like files (seed {args.seed}) into {database}, {args.repeat} run(s) each"
        )
        for rows in args.generate:
            with tempfile.TemporaryDirectory(prefix="giftrec-bench-data-") as folder:
                path = Path(folder) / f"generated-{rows}.csv.gz"
                write_uci_like(path, rows, seed=args.seed)
                report(
                    f"{rows:,}",
                    measure(str(path), "online-retail", args.repeat, args.database_url, args.tracemalloc),
                )
    else:
        print(f"import {args.path} ({args.format}) into {database}, {args.repeat} runs")
        report(
            Path(args.path).name,
            measure(args.path, args.format, args.repeat, args.database_url, args.tracemalloc),
        )
    print_table(headers, table)


if __name__ == "__main__":
    main()
