"""Benchmark: training time and peak memory on real data and on a synthetic 1M x 100k x 50M matrix.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.bench_train [UCI_PATH] [--repeat 3] [--pairs 2] [--database DB_PATH]
        [--skip-sample] [--skip-uci] [--skip-synthetic] [--synthetic-scale 1.0]

UCI_PATH defaults to ../shared/data/online_retail.csv.gz. Every measured run is a fresh child process, so
its peak resident memory (``ru_maxrss`` from ``wait4``) is its own.

1. **Real data** (the bundled sample, then the full UCI file): the file is imported once into a temporary
   SQLite database (not part of the figures; with ``--database``, an SQLite file already made by
   ``giftrec import orders`` stands in for the full UCI file), then ``domain.serving.training.train_model``
   runs with the default settings, as ``giftrec train`` does, ``--repeat`` times. Phases come from the
   run's own metrics: matrix build (read interactions + build the matrix), the hybrid model's
   recent-popularity prior (the run's ``popularity_seconds``: reading the sales and counting), model
   fit, artifact save; total is the wall time of the whole call plus the commit (total CPU: its CPU
   time, every thread); child CPU is the child process's user + system time, start-up included (less
   sensitive than wall time to other processes on the machine).
2. **Synthetic**: a seeded users x items matrix with power-law (Zipf, s=1) item popularity and lognormal
   user activity, built once in numpy and saved to the temporary directory. Each child loads it, then runs
   either bare ``implicit.cpu.als.AlternatingLeastSquares.fit`` or giftrec's ``ALSRecommender.fit`` +
   ``save_artifact``, with the same parameters (64 factors, 15 iterations, regularization 0.01, alpha 1,
   fixed random_state, implicit threads = all cores, BLAS pinned to one thread). ``--pairs`` pairs of
   runs, alternating which goes first; the ratio giftrec/bare is of the medians of this one invocation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine_line, median, print_table, rss_mib, run_child, vm_hwm_mib

DEFAULT_UCI = "../shared/data/online_retail.csv.gz"
SAMPLE = "data/online_retail_sample.csv.gz"

SYN_USERS, SYN_ITEMS, SYN_NNZ = 1_000_000, 100_000, 50_000_000
SYN_SEED = 20240601
ALS_PARAMS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.01,
    "alpha": 1.0,
    "iterations": 15,
    "random_state": 42,
    "num_threads": 0,
}


# ------------------------------------------------------------------------------------------ real data
def _settings(workdir: str, database: str | None = None) -> Any:
    from config import load_settings

    # environ={}: the default settings, whatever GIFTREC_* variables the shell has.
    db_path = Path(database).resolve() if database else Path(workdir) / "bench.db"
    return load_settings(
        environ={},
        database={"url": f"sqlite:///{db_path}"},
        server={"instance_dir": str(Path(workdir) / "instance")},
        model={"artifact_dir": str(Path(workdir) / "models")},
    )


def child_import(path: str, workdir: str) -> None:
    """Migrate a new SQLite database in `workdir` and import `path` into it (setup, not measured)."""
    from domain import schema
    from domain.customers.imports import import_orders
    from domain.db import make_engine, make_session_factory, session_scope

    settings = _settings(workdir)
    schema.upgrade(settings.database.url)
    engine = make_engine(settings.database.url)
    started = time.perf_counter()
    with session_scope(make_session_factory(engine)) as session:
        summary = import_orders(session, path, "online-retail", instance_dir=settings.server.instance_dir)
    engine.dispose()
    print(json.dumps({"rows": summary.rows, "seconds": time.perf_counter() - started}))


def child_train(workdir: str, database: str = "") -> None:
    """One ``train_model`` with the default settings on the database in `workdir` (or `database`); prints
    its phases."""
    import domain.serving.training as training
    from domain.db import make_engine, make_session_factory, session_scope

    settings = _settings(workdir, database or None)
    engine = make_engine(settings.database.url)
    sessions = make_session_factory(engine)
    rss_before = rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    with session_scope(sessions) as session:
        run = training.train_model(session, settings)
        status, error = run.status, run.error
        metrics, shape = dict(run.metrics), (run.n_users, run.n_items, run.n_interactions)
    total, train_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    engine.dispose()
    if status != "succeeded":
        raise SystemExit(f"training failed: {error}")
    popularity = metrics["popularity_seconds"]
    print(
        json.dumps(
            {
                "algorithm": settings.model.algorithm,
                "users": shape[0],
                "items": shape[1],
                "nnz": shape[2],
                "rows": metrics["rows"],
                "build": metrics["load_seconds"],
                "popularity": popularity,
                "fit": metrics["fit_seconds"] - popularity,
                "save": metrics["save_seconds"],
                "total": total,
                "train_cpu": train_cpu,
                "rss_before_mib": rss_before,
            }
        )
    )


def bench_real(label: str, path: str, repeat: int, database: str = "") -> list[Any]:
    """`repeat` trainings on `path` imported into a new database, or on the existing SQLite `database`
    (each run adds its model run there; artifacts go to a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="giftrec-bench-train-") as workdir:
        if database:
            print(f"{label}: the existing database {database} (not imported again)")
        else:
            imported = run_child(["-m", "bench.bench_train", "--child", "import", path, workdir])
            print(
                f"{label}: imported {imported['rows']:,} rows in {imported['seconds']:.1f} s (not included)"
            )
        runs = [
            run_child(["-m", "bench.bench_train", "--child", "train", workdir, database])
            for _ in range(repeat)
        ]
    for i, r in enumerate(runs, 1):
        print(
            f"  run {i}: build {r['build']:.2f} s, popularity {r['popularity']:.2f} s, fit {r['fit']:.2f} s, "
            f"save {r['save']:.2f} s, total {r['total']:.2f} s (CPU {r['train_cpu']:.2f} s), "
            f"child CPU {r['cpu_seconds']:.2f} s, "
            f"peak {r['peak_rss_mib']:.0f} MiB"
        )
    first = runs[0]
    return [
        label,
        first["algorithm"],
        f"{first['users']:,}x{first['items']:,}",
        first["nnz"],
        *(
            median([r[k] for r in runs])
            for k in ("build", "popularity", "fit", "save", "total", "train_cpu", "cpu_seconds")
        ),
        round(median([r["peak_rss_mib"] for r in runs])),
    ]


# ------------------------------------------------------------------------------------------ synthetic
def make_synthetic(n_users: int, n_items: int, nnz: int, seed: int, out: Path) -> dict[str, Any]:
    """Write a canonical float32 CSR (users x items, exactly `nnz` cells) as .npy files in `out`.

    Item popularity follows Zipf (s=1) over a random permutation of the items; user activity is
    lognormal (sigma 1), at least one draw each. Repeated draws of a cell add up (values are counts).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1))
    cdf /= cdf[-1]
    items_by_rank = rng.permutation(n_items).astype(np.int64)
    activity = rng.lognormal(0.0, 1.0, n_users)
    draws = int(nnz * 1.15)
    while True:
        counts = np.clip(np.round(activity / activity.sum() * draws), 1, n_items).astype(np.int64)
        rows = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        ranks = np.searchsorted(cdf, rng.random(rows.size))
        keys = rows * n_items + items_by_rank[np.minimum(ranks, n_items - 1)]
        del rows, ranks
        keys, values = np.unique(keys, return_counts=True)
        if keys.size >= nnz:
            break
        draws = int(draws * 1.1 * nnz / keys.size)
    if keys.size > nnz:
        keep = np.zeros(keys.size, dtype=bool)
        keep[rng.choice(keys.size, nnz, replace=False)] = True
        keys, values = keys[keep], values[keep]
    user_of = (keys // n_items).astype(np.int32)
    indices = (keys % n_items).astype(np.int32)
    del keys
    indptr = np.zeros(n_users + 1, dtype=np.int32 if nnz < 2**31 else np.int64)
    np.cumsum(np.bincount(user_of, minlength=n_users), out=indptr[1:])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "indptr.npy", indptr)
    np.save(out / "indices.npy", indices)
    np.save(out / "data.npy", values.astype(np.float32))
    shape = {"users": n_users, "items": n_items, "nnz": int(nnz)}
    (out / "shape.json").write_text(json.dumps(shape))
    shape["csr_mib"] = round((indptr.nbytes + indices.nbytes + nnz * 4) / 2**20)
    shape["max_row"] = int(np.diff(indptr).max())
    shape["max_col"] = int(np.bincount(indices, minlength=n_items).max())
    return shape


def _load_synthetic(directory: Path) -> Any:
    import numpy as np
    from scipy.sparse import csr_matrix

    shape = json.loads((directory / "shape.json").read_text())
    arrays = [np.load(directory / f"{name}.npy") for name in ("data", "indices", "indptr")]
    return csr_matrix(tuple(arrays), shape=(shape["users"], shape["items"]))


def _digest(array: Any) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()[:12]


def child_bare(directory: str) -> None:
    """Bare implicit: pin BLAS, load the matrix, time ``fit``."""
    import implicit.cpu.als
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    user_items = _load_synthetic(Path(directory))
    rss_before = rss_mib()
    model = implicit.cpu.als.AlternatingLeastSquares(**ALS_PARAMS)
    started = time.perf_counter()
    model.fit(user_items, show_progress=False)
    fit = time.perf_counter() - started
    print(
        json.dumps(
            {
                "fit": fit,
                "save": 0.0,
                "total": fit,
                "rss_before_mib": rss_before,
                "hwm_mib": vm_hwm_mib(),
                "factors": _digest(model.item_factors),
            }
        )
    )


def child_giftrec(directory: str) -> None:
    """giftrec: load the matrix, time ``ALSRecommender.fit`` + ``save_artifact`` (removed afterwards)."""
    import numpy as np

    from recommender.artifacts import save_artifact
    from recommender.collaborative import ALSRecommender
    from recommender.interactions import IdIndex

    user_items = _load_synthetic(Path(directory))
    users, items = IdIndex(np.arange(user_items.shape[0])), IdIndex(np.arange(user_items.shape[1]))
    root = Path(directory) / "artifacts"
    rss_before = rss_mib()
    started = time.perf_counter()
    model = ALSRecommender(**ALS_PARAMS).fit(user_items)
    fitted = time.perf_counter()
    path = save_artifact(root, f"bench-{os.getpid()}", model, users, items, params=ALS_PARAMS)
    done = time.perf_counter()
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    shutil.rmtree(root)
    print(
        json.dumps(
            {
                "fit": fitted - started,
                "save": done - fitted,
                "total": done - started,
                "rss_before_mib": rss_before,
                "hwm_mib": vm_hwm_mib(),
                "artifact_mib": size / 2**20,
                "factors": _digest(model.item_factors),
            }
        )
    )


def bench_synthetic(scale: float, pairs: int) -> None:
    n_users, n_items = max(10, round(SYN_USERS * scale)), max(10, round(SYN_ITEMS * scale))
    nnz = min(round(SYN_NNZ * scale), n_users * n_items // 2)
    with tempfile.TemporaryDirectory(prefix="giftrec-bench-syn-") as workdir:
        directory = Path(workdir) / "matrix"
        started = time.perf_counter()
        shape = make_synthetic(n_users, n_items, nnz, SYN_SEED, directory)
        print(
            f"synthetic (scale {scale:g}): {n_users:,} users x {n_items:,} items, {nnz:,} cells "
            f"({shape['csr_mib']} MiB of CSR; largest row {shape['max_row']:,}, largest column "
            f"{shape['max_col']:,}), built in {time.perf_counter() - started:.1f} s (not included)"
        )
        runs: dict[str, list[Any]] = {"bare": [], "giftrec": []}
        for i in range(pairs):
            for kind in ("bare", "giftrec") if i % 2 == 0 else ("giftrec", "bare"):
                r = run_child(["-m", "bench.bench_train", "--child", kind, str(directory)])
                runs[kind].append(r)
                print(
                    f"  pair {i + 1} {kind:>7}: fit {r['fit']:.1f} s, save {r['save']:.1f} s, "
                    f"total {r['total']:.1f} s, child CPU {r['cpu_seconds']:.0f} s, "
                    f"peak {r['peak_rss_mib']:.0f} MiB "
                    f"(before fit {r['rss_before_mib']:.0f} MiB), factors {r['factors']}"
                )
    same = {r["factors"] for rs in runs.values() for r in rs}
    fields = ("fit", "save", "total", "peak_rss_mib", "cpu_seconds")
    med = {k: {f: median([r[f] for r in rs]) for f in fields} for k, rs in runs.items()}
    print()
    print(
        f"synthetic ALS, {pairs} runs each (alternating order), medians; "
        f"item factors identical across runs: {'yes' if len(same) == 1 else 'NO'}"
    )
    print_table(
        ["", "fit s", "save s", "total s", "child CPU s", "peak RSS MiB"],
        [
            [
                k,
                med[k]["fit"],
                med[k]["save"],
                med[k]["total"],
                med[k]["cpu_seconds"],
                round(med[k]["peak_rss_mib"]),
            ]
            for k in ("bare", "giftrec")
        ]
        + [
            [
                "giftrec/bare",
                med["giftrec"]["fit"] / med["bare"]["fit"],
                "",
                med["giftrec"]["total"] / med["bare"]["total"],
                med["giftrec"]["cpu_seconds"] / med["bare"]["cpu_seconds"],
                f"{med['giftrec']['peak_rss_mib'] / med['bare']['peak_rss_mib']:.2f}",
            ]
        ],
    )
    ratio = med["giftrec"]["total"] / med["bare"]["total"]
    print(f"goal giftrec total / bare fit <= 1.20: {'met' if ratio <= 1.2 else 'MISSED'} ({ratio:.3f})")


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default=DEFAULT_UCI, help="the full UCI Online Retail file")
    parser.add_argument("--repeat", type=int, default=3, help="training runs per real data set")
    parser.add_argument("--pairs", type=int, default=2, help="bare/giftrec pairs on the synthetic matrix")
    parser.add_argument(
        "--database",
        default="",
        help="train on this SQLite file (made by `giftrec import orders`) instead of importing UCI_PATH",
    )
    parser.add_argument("--skip-sample", action="store_true")
    parser.add_argument("--skip-uci", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--synthetic-scale", type=float, default=1.0, help="users, items, cells x this")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        {"import": child_import, "train": child_train, "bare": child_bare, "giftrec": child_giftrec}[kind](
            *rest
        )
        return

    print(machine_line())
    print(f"command: {' '.join([Path(sys.executable).name, '-m', 'bench.bench_train', *sys.argv[1:]])}")
    rows = []
    if not args.skip_sample:
        rows.append(bench_real("sample", SAMPLE, args.repeat))
    if not args.skip_uci:
        rows.append(bench_real("full UCI", args.path, args.repeat, args.database))
    if rows:
        print()
        print(f"train_model with the default settings, median of {args.repeat} runs (import excluded)")
        print_table(
            [
                "data",
                "model",
                "users x items",
                "cells",
                "build s",
                "popularity s",
                "fit s",
                "save s",
                "total s",
                "total CPU s",
                "child CPU s",
                "peak RSS MiB",
            ],
            rows,
        )
        print()
    if not args.skip_synthetic:
        bench_synthetic(args.synthetic_scale, args.pairs)


if __name__ == "__main__":
    main()
