"""Generated order files in the UCI Online Retail layout, of any length, written as they are drawn.

For the import's memory: a file of ten million lines (ten years of a busy shop) is generated, seeded,
into a temporary folder and never kept (``bench.bench_import --generate``; the tests use short ones).
Nothing here touches the database, and nothing is held per line: only the customer and product tables.

The model, close to the real file's shape (541,909 lines; about 20 lines an invoice, 4,372 customers,
3,684 products, a quarter of the lines without a customer):

- **Invoices** of ``1 + Poisson(19)`` lines, numbered from 536365, placed in time order over
  ``rows / 2,740`` days (ten years for ten million lines) between 08:00 and 18:00; 10% are guest
  invoices (no customer).
- **Customers** (one per 120 lines) are drawn with a skew (a few buy very often); each has a country,
  nine in ten the United Kingdom. Their ids are written as floats in one invoice of twenty (``17850.0``),
  as the spreadsheet export does.
- **Products** (3,000 plus one per 300 lines, at most 50,000) are drawn with a stronger skew; each has a
  stock code (some with a letter, some spelled in lower case), a description (one in fifty with a comma,
  so quoted) and a log-normal price around 2.50.
- **What the cleaning rules see:** 2% of the customers' invoices are followed by a cancellation
  (``C...``, negative quantities), 0.5% of invoices have a ``POST`` line (a non-product), 0.05% of lines
  have a price of 0.0 and 0.1% of invoices a stock adjustment line (negative quantity on a sale invoice):
  all of them are counted, dropped or rejected, as in the real file.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from pathlib import Path
from typing import IO

import numpy as np

from domain.customers.parsing import ONLINE_RETAIL_COLUMNS

__all__ = ["UCI_HEADER", "write_uci_like"]

UCI_HEADER = ONLINE_RETAIL_COLUMNS
ROWS_PER_DAY = 2_740
_START = dt.datetime(2010, 12, 1, 8, 0)
_QUANTITIES = np.array([1, 2, 3, 4, 6, 8, 10, 12, 24, 48])
_QUANTITY_P = np.array([0.18, 0.14, 0.08, 0.08, 0.14, 0.06, 0.06, 0.16, 0.07, 0.03])
_COUNTRIES = ("Germany", "France", "EIRE", "Spain", "Netherlands", "Belgium", "Switzerland", "Portugal")
_WORDS = (
    ("RED", "WHITE", "PINK", "BLUE", "GREEN", "IVORY", "VINTAGE", "RETROSPOT", "REGENCY", "PAISLEY"),
    ("HANGING", "HEART", "METAL", "GLASS", "WOODEN", "CERAMIC", "ENAMEL", "PAPER", "FELT", "LACE"),
    ("LANTERN", "CAKE STAND", "TEA SET", "BUNTING", "DOORSTOP", "MUG", "CANDLE", "BAG", "CLOCK", "TIN"),
)


def write_uci_like(path: str | Path, rows: int, *, seed: int = 18) -> int:
    """Write a header and ``rows`` data rows to ``path`` (gzip, fast level, when it ends in ``.gz``);
    return the number of rows written. The same ``rows`` and ``seed`` give the same file."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    n_customers = max(50, rows // 120)
    n_products = min(50_000, 3_000 + rows // 300)
    countries = np.where(
        rng.random(n_customers) < 0.9, "United Kingdom", rng.choice(_COUNTRIES, n_customers)
    ).tolist()
    codes, descriptions, prices = _products(rng, n_products)
    span_minutes = max(30, rows // ROWS_PER_DAY) * 600
    expected_invoices = max(1, rows // 20)
    out: IO[str]
    if path.suffix == ".gz":
        out = gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1)
    else:
        out = path.open("w", encoding="utf-8", newline="")
    written = 0
    invoice_no = 536_365
    with out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(UCI_HEADER)
        while written < rows:
            k = invoice_no - 536_365
            offset = min(span_minutes - 1, span_minutes * k // expected_invoices)
            at = _START + dt.timedelta(days=offset // 600, minutes=offset % 600)
            stamp = at.strftime("%Y-%m-%d %H:%M:00")
            guest = rng.random() < 0.1
            customer = "" if guest else 12_346 + int(n_customers * rng.random() ** 2)
            country = countries[(customer or 0) % n_customers] if not guest else "United Kingdom"
            customer_text = "" if guest else (f"{customer}.0" if rng.random() < 0.05 else str(customer))
            n = min(rows - written, 1 + int(rng.poisson(19)))
            items = (n_products * rng.random(n) ** 3).astype(int)
            quantities = rng.choice(_QUANTITIES, n, p=_QUANTITY_P)
            zero = rng.random(n) < 0.0005
            batch = []
            for item, quantity, free in zip(items.tolist(), quantities.tolist(), zero.tolist(), strict=True):
                price = "0.0" if free else prices[item]
                batch.append(
                    (
                        invoice_no,
                        codes[item],
                        descriptions[item],
                        quantity,
                        stamp,
                        price,
                        customer_text,
                        country,
                    )
                )
            if len(batch) < rows - written and rng.random() < 0.005:
                batch.append((invoice_no, "POST", "POSTAGE", 1, stamp, "18.0", customer_text, country))
            if len(batch) < rows - written and rng.random() < 0.001:
                item = int(n_products * rng.random())
                batch.append((invoice_no, codes[item], "damaged", -12, stamp, "0.0", "", "United Kingdom"))
            writer.writerows(batch)
            written += len(batch)
            invoice_no += 1
            if not guest and written < rows and rng.random() < 0.02:
                m = min(rows - written, 1 + int(rng.poisson(0.5)))
                back = [
                    (
                        f"C{invoice_no}",
                        codes[i],
                        descriptions[i],
                        -int(q),
                        stamp,
                        prices[i],
                        customer_text,
                        country,
                    )
                    for i, q in zip(items[:m].tolist(), quantities[:m].tolist(), strict=False)
                ]
                writer.writerows(back)
                written += len(back)
                invoice_no += 1
    return written


def _products(rng: np.random.Generator, n: int) -> tuple[list[str], list[str], list[str]]:
    """Stock codes, descriptions and prices (as the file writes them) of ``n`` products."""
    codes, descriptions = [], []
    letters = "ABCDEFGHJKLMNP"
    for i in range(n):
        code = str(10_000 + i)
        if rng.random() < 0.15:
            letter = letters[int(rng.integers(len(letters)))]
            code += letter.lower() if rng.random() < 0.05 else letter
        codes.append(code)
        words = [group[int(rng.integers(len(group)))] for group in _WORDS]
        text = " ".join(words)
        if rng.random() < 0.02:
            text = f"{words[0]} {words[2]},{words[1]} DESIGN"
        descriptions.append(text)
    raw = np.exp(rng.normal(np.log(2.5), 0.8, n)).clip(0.1, 300)
    prices = [f"{p:.2f}".rstrip("0").rstrip(".") for p in raw.round(2)]
    return codes, descriptions, prices
