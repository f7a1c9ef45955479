"""Benchmark: import an order file into a fresh database; rows/s, CPU and peak memory, median of N runs.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.bench_import [PATH] [--repeat 3] [--format online-retail]
    timeout 3h .venv/bin/python -m bench.bench_import --generate 500000 2000000 10000000 --repeat 1
    timeout 1h .venv/bin/python -m bench.bench_import --generate 2000000 --repeat 1 --steps \
        --database-url postgresql+psycopg://USER@HOST:PORT/DB

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

``--steps`` also prints where the time went, statement by statement: each SQL statement the import sends
(labelled by its verb and table; those under half a second summed per label) with its wall time and, on
a PostgreSQL server of this machine, the CPU time its backend spent on it (``/proc/PID/stat`` of the
backend, so the benchmark must be allowed to read it). "reading, cleaning, COPY" is the time outside
those statements: parsing the file and staging its chunks (``COPY`` on PostgreSQL goes straight to the
driver's cursor, past SQLAlchemy's events).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import ChildResult, machine_line, median, print_table, run_child

DEFAULT_PATH = "../shared/data/online_retail.csv.gz"


#: A statement's label: its verb and the table it works on.
_LABEL = re.compile(
    r"^\s*(INSERT INTO \S+|UPDATE \S+|DELETE FROM \S+|CREATE (?:UNIQUE )?INDEX \S+|CREATE \w+ TABLE \S+"
    r"|DROP TABLE IF EXISTS \S+|ALTER TABLE \S+ \w+ CONSTRAINT \S+|ANALYZE|SELECT)",
    re.IGNORECASE,
)


def _backend_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a PostgreSQL backend of this machine; 0 when it cannot be read."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StepTimer:
    """Wall and server CPU time of every statement sent through ``engine`` (SQLAlchemy's events)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.steps: list[list[Any]] = []  # [label, wall s, server cpu s]
        self.pending: list[float] = []
        event.listen(engine, "connect", self._connect)
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    @staticmethod
    def _connect(dbapi_connection: Any, record: Any) -> None:
        record.info["backend_pid"] = None
        if type(dbapi_connection).__module__.startswith("psycopg"):
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            record.info["backend_pid"] = cursor.fetchone()[0]
            cursor.close()

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.pending = [time.perf_counter(), _backend_cpu(conn.info.get("backend_pid"))]

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        wall, cpu = self.pending
        found = _LABEL.match(statement)
        label = " ".join(found.group(1).split()) if found else statement.split(None, 1)[0]
        cpu = _backend_cpu(conn.info.get("backend_pid")) - cpu
        self.steps.append([label, time.perf_counter() - wall, cpu])

    def summary(self, total: float, server_total: float) -> list[list[Any]]:
        """The statements of half a second or more in order, the others summed per label, and the rest."""
        rows: list[list[Any]] = []
        small: dict[str, list[Any]] = {}
        for label, wall, cpu in self.steps:
            if wall >= 0.5:
                rows.append([label, wall, cpu])
            else:
                row = small.setdefault(label, [f"{label} (each < 0.5 s)", 0.0, 0.0])
                row[1] += wall
                row[2] += cpu
        rows += [row for row in small.values() if row[1] >= 0.05]
        rest = total - sum(wall for _, wall, _ in self.steps)
        server_rest = server_total - sum(cpu for _, _, cpu in self.steps)
        return [*rows, ["reading, cleaning, COPY (outside statements)", rest, server_rest]]


def child(path: str, fmt: str, workdir: str, url: str | None, trace: bool, steps: bool = False) -> None:
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
    timer = StepTimer(engine) if steps else None
    sessions = make_session_factory(engine)
    if trace:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    with session_scope(sessions) as session:
        pid = session.connection().connection.info.get("backend_pid")
        server = _backend_cpu(pid)
        summary = import_orders(session, path, fmt, instance_dir=workdir)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server = _backend_cpu(pid) - server
    heap = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    engine.dispose()
    result = {"rows": summary.rows, "lines": summary.order_lines_created, "seconds": wall, "cpu": cpu}
    result["server_cpu"] = server
    if timer is not None:
        result["steps"] = timer.summary(wall, server)  # type: ignore[assignment]
    print(json.dumps({**result, "heap_mib": heap}))


def measure(
    path: str, fmt: str, repeat: int, url: str | None, trace: bool, steps: bool = False
) -> list[ChildResult]:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="giftrec-bench-") as workdir:
            args = ["-m", "bench.bench_import", path, "--format", fmt, "--child", workdir]
            args += ["--database-url", url] if url else []
            args += ["--tracemalloc"] if trace else []
            args += ["--steps"] if steps else []
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
    parser.add_argument("--steps", action="store_true", help="also the time of each SQL statement")
    parser.add_argument("--child", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.path, args.format, args.child, args.database_url, args.tracemalloc, args.steps)
        return

    database = "PostgreSQL" if args.database_url else "a fresh SQLite file"
    print(machine_line())
    headers = ["file", "run", "rows", "order lines", "seconds", "rows/s", "cpu s", "peak MiB"]
    headers += ["heap MiB"] if args.tracemalloc else []
    headers += ["server cpu s"] if args.database_url else []
    table = []
    step_tables: list[tuple[str, list[list[Any]]]] = []

    def report(name: str, runs: list[ChildResult]) -> None:
        for i, r in enumerate(runs, start=1):
            row = [name, str(i), r["rows"], r["lines"], r["seconds"], r["rows"] / r["seconds"], r["cpu"]]
            row += [r["peak_rss_mib"], *([r["heap_mib"]] if args.tracemalloc else [])]
            table.append(row + ([r["server_cpu"]] if args.database_url else []))
            if "steps" in r:
                step_tables.append((f"{name}, run {i}", r["steps"]))
        if len(runs) > 1:
            seconds = median([r["seconds"] for r in runs])
            row = [name, "median", runs[0]["rows"], runs[0]["lines"], seconds, runs[0]["rows"] / seconds]
            row += [median([r["cpu"] for r in runs]), median([r["peak_rss_mib"] for r in runs])]
            row += [median([r["heap_mib"] for r in runs])] if args.tracemalloc else []
            table.append(row + ([median([r["server_cpu"] for r in runs])] if args.database_url else []))

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
                    measure(
                        str(path),
                        "online-retail",
                        args.repeat,
                        args.database_url,
                        args.tracemalloc,
                        args.steps,
                    ),
                )
    else:
        print(f"import {args.path} ({args.format}) into {database}, {args.repeat} runs")
        report(
            Path(args.path).name,
            measure(args.path, args.format, args.repeat, args.database_url, args.tracemalloc, args.steps),
        )
    print_table(headers, table)
    for name, steps in step_tables:
        print(f"\nsteps of {name}")
        print_table(["step", "wall s", "server cpu s"], steps)


if __name__ == "__main__":
    main()
