"""Cut the bundled sample data/online_retail_sample.csv.gz out of the full UCI Online Retail file.

Usage (from the repository root)::

    python data/cut_sample.py [PATH_TO_FULL_FILE] [--out data/online_retail_sample.csv.gz]

PATH_TO_FULL_FILE defaults to ../shared/data/online_retail.csv.gz. The cut is deterministic: the same input
gives a byte-identical output (fixed seed, sorted ids, gzip without a timestamp).

What is kept, in the original order and with the original columns:

1. every row of CUSTOMERS customers drawn with random.Random(SEED) from the sorted distinct CustomerIDs
   (their cancellations, postage lines and zero-price rows included);
2. every row of GUEST_INVOICES invoices without a CustomerID, drawn with the same generator;
3. so that each cleaning rule is exercised: the first EXTRA_PER_RULE rows (by line) of each non-product
   stock code, of zero-price rows, of negative-quantity rows on sale invoices (stock adjustments), and the
   rows priced 0.001, when not already kept.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
from pathlib import Path

SEED = 2012
CUSTOMERS = 700
GUEST_INVOICES = 100
EXTRA_PER_RULE = 3

# Kept in step with domain.customers.sources.NON_PRODUCT_CODES; repeated here so that the script
# runs on its own.
NON_PRODUCT = {"POST", "DOT", "C2", "M", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}


def _rule(row: list[str]) -> str | None:
    """The cleaning rule a row exercises, if any (for the 'extra rows' part of the cut)."""
    invoice, code, _desc, quantity, _date, price, _customer, _country = row
    code = code.upper()
    if code in NON_PRODUCT or code.startswith("GIFT_0001_"):
        return f"non-product {code}"
    if price == "0.001":
        return "price 0.001"
    if float(price) == 0:
        return "zero price"
    if int(quantity) < 0 and not invoice.startswith("C"):
        return "stock adjustment"
    return None


def cut(source: Path) -> tuple[list[str], list[list[str]], dict[str, int]]:
    with gzip.open(source, "rt", encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader)
        rows = list(reader)

    customers = sorted({row[6] for row in rows if row[6]})
    guest_invoices = sorted({row[0] for row in rows if not row[6]})
    rng = random.Random(SEED)
    chosen_customers = set(rng.sample(customers, CUSTOMERS))
    chosen_invoices = set(rng.sample(guest_invoices, GUEST_INVOICES))

    keep = [(row[6] in chosen_customers) or (not row[6] and row[0] in chosen_invoices) for row in rows]
    extra_taken: dict[str, int] = {}
    for i, row in enumerate(rows):
        rule = _rule(row)
        if rule is None:
            continue
        if keep[i]:
            extra_taken.setdefault(rule, 0)
            continue
        if extra_taken.get(rule, 0) < EXTRA_PER_RULE:
            keep[i] = True
            extra_taken[rule] = extra_taken.get(rule, 0) + 1

    kept = [row for row, k in zip(rows, keep, strict=True) if k]
    stats = {
        "customers": CUSTOMERS,
        "guest_invoices": GUEST_INVOICES,
        "rows": len(kept),
        "extra_rows": sum(extra_taken.values()),
    }
    return header, kept, stats


def write(out: Path, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue().encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="../shared/data/online_retail.csv.gz", type=Path)
    parser.add_argument("--out", default=Path(__file__).with_name("online_retail_sample.csv.gz"), type=Path)
    args = parser.parse_args(argv)
    header, rows, stats = cut(args.source)
    write(args.out, header, rows)
    print(f"{args.out}: {stats['rows']} rows ({stats}), {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
