"""Benchmark: what `giftrec train --tune` costs on real data, beside the plain training it adds to.

Run from the repository root (by hand, never by the test suite), bounded::

    timeout 1500 .venv/bin/python -m bench.bench_tune [UCI_PATH] [--repeat 2]

UCI_PATH defaults to ../shared/data/online_retail.csv.gz. The file is imported once into a temporary
SQLite database (not part of the figures); then, `--repeat` times, a plain ``train_model`` and a
``train_model(tune=True)`` run with the default settings, each in a fresh child process (the tuned one
first in every other pair). Phases come from the runs' own metrics: ``tune`` is choosing the blends (the
validation matrix, the ALS and item-kNN fits before the window and scoring every candidate), ``train``
the rest (the served model's matrix, priors, fit and save). Prints a table of medians and each task's
winner on validation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine_line, median, print_table, run_child

DEFAULT_UCI = "../shared/data/online_retail.csv.gz"


def child_train(workdir: str, tune: str) -> None:
    """One ``train_model`` (tuned when `tune` is "1") on the database in `workdir`; prints its phases."""
    import domain.serving.training as training
    from bench.bench_train import _settings
    from domain.db import make_engine, make_session_factory, session_scope
    from domain.serving.tuning import report_lines

    settings = _settings(workdir)
    engine = make_engine(settings.database.url)
    started = time.perf_counter()
    with session_scope(make_session_factory(engine)) as session:
        run = training.train_model(session, settings, tune=tune == "1")
        status, error, metrics = run.status, run.error, dict(run.metrics)
    total = time.perf_counter() - started
    engine.dispose()
    if status != "succeeded":
        raise SystemExit(f"training failed: {error}")
    tuning = metrics.get("tuning")
    print(
        json.dumps(
            {
                "tune": float(metrics.get("tune_seconds", 0.0)) if tune == "1" else 0.0,
                "total": total,
                "report": report_lines(tuning) if tune == "1" and tuning else [],
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=DEFAULT_UCI)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            child_train(*rest)
            return
        raise SystemExit(f"unknown child {kind}")
    print(machine_line())
    plain: list[Any] = []
    tuned: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="giftrec-bench-tune-") as workdir:
        imported = run_child(["-m", "bench.bench_train", "--child", "import", args.path, workdir])
        print(f"imported {imported['rows']:,} rows in {imported['seconds']:.1f} s (not included)")
        for i in range(args.repeat):
            order = ("1", "0") if i % 2 == 0 else ("0", "1")
            for tune in order:
                result = run_child(["-m", "bench.bench_tune", "--child", "train", workdir, tune])
                (tuned if tune == "1" else plain).append(result)
                label = "tuned" if tune == "1" else "plain"
                print(f"  {label}: total {result['total']:.2f} s, tuning {result['tune']:.2f} s", flush=True)
    print_table(
        ["training", "runs", "tuning s (median)", "total s (median)", "child CPU s (median)"],
        [
            [
                name,
                len(runs),
                median([r["tune"] for r in runs]),
                median([r["total"] for r in runs]),
                median([r["cpu_seconds"] for r in runs]),
            ]
            for name, runs in (("plain", plain), ("--tune", tuned))
        ],
    )
    for line in tuned[-1]["report"] if tuned else []:
        print(line)
    print(f"file: {Path(args.path).name}")


if __name__ == "__main__":
    main(sys.argv[1:])
