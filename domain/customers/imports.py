"""Import order files into customers, products, orders and order lines: one transaction, rejects reported.

``import_orders`` parses the whole file first (:mod:`domain.customers.sources`); a file that is unusable
as a whole raises :class:`~domain.errors.InvalidInput` before the database is touched. Rows that break a
cleaning rule are written to a reject CSV (``line_no, kind, field, reason, raw``) and the rest is imported in
the caller's transaction, so a failure half-way (a constraint, a lost connection) rolls everything back.

- **Idempotent.** Orders are unique by external id (the invoice number; ``C...`` cancellations keep their
  ``C``): orders already in the database are skipped with all their lines. Customers and products are
  looked up by external id / sku and created only when missing. Re-importing a file adds nothing, not even
  an :class:`~domain.models.ImportRun` row: a run is recorded only when the import creates something.
- **New products** take the title most often used for their sku in the file (the sku itself when all are
  blank), the latest sale price, the first sale time as ``created_at`` (it drives "new arrivals"),
  currency GBP, active and in stock. Existing products and customers are never modified: the catalog API
  owns them.
- **New customers** get their external id and the country of their first line; names and emails are not
  in order files.
- **Returns** (cancellation invoices, negative generic quantities) are orders of kind ``return`` with
  positive quantities. Guest lines become orders without a customer.
- **Speed.** Existing keys are pre-loaded into dicts and rows are written with SQLAlchemy Core
  ``executemany`` in chunks: no per-row SELECT. See ``bench/bench_import.py`` and ``docs/performance.md``.

The reject file defaults to ``<instance_dir>/rejects/<input file name>.rejects.csv`` (the input's folder may
be read-only, like ``../shared/data/``); it is written only when there are rejects, and appears only when
the caller's transaction commits (:mod:`domain.customers.rejects`): a failed import leaves none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, insert, select, text
from sqlalchemy.orm import Session

from config import ImportSettings
from domain.customers.rejects import default_reject_path, publish_rejects_on_commit
from domain.customers.sources import Format, OrderLine, ParseResult, read_order_lines
from domain.db import Base
from domain.models import ImportRun
from domain.models._types import utcnow

CHUNK = 20_000
#: SQLite page cache during an import, in KiB (negative = KiB in PRAGMA cache_size).
SQLITE_IMPORT_CACHE_KIB = -256_000
CURRENCY = "GBP"


@dataclass(slots=True)
class ImportSummary:
    """What an import read, cleaned, created and skipped. ``rows == lines + non_product_rows + rejected``."""

    source: str
    format: str
    sha256: str
    rows: int = 0
    lines: int = 0
    sale_lines: int = 0
    return_lines: int = 0
    guest_rows: int = 0
    non_product_rows: int = 0
    rejected: int = 0
    rejected_by_kind: dict[str, int] = field(default_factory=dict)
    non_product_by_code: dict[str, int] = field(default_factory=dict)
    customers_created: int = 0
    products_created: int = 0
    orders_created: int = 0
    returns_created: int = 0
    guest_orders_created: int = 0
    order_lines_created: int = 0
    orders_skipped: int = 0
    lines_skipped: int = 0
    import_run_id: int | None = None
    reject_path: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_text(self) -> str:
        def breakdown(counts: dict[str, int]) -> str:
            if not counts:
                return ""
            parts = ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            return f"  ({parts})"

        rejects = f"  -> {self.reject_path}" if self.reject_path else ""
        return "\n".join(
            [
                f"Imported {self.source} ({self.format}) in {self.seconds:.1f} s",
                f"  rows read            {self.rows:>9,}",
                f"  kept lines           {self.lines:>9,}  ({self.sale_lines:,} sale, "
                f"{self.return_lines:,} return; {self.guest_rows:,} guest lines without a customer)",
                f"  non-product rows     {self.non_product_rows:>9,}{breakdown(self.non_product_by_code)}",
                f"  rejected rows        {self.rejected:>9,}{breakdown(self.rejected_by_kind)}{rejects}",
                f"  created              customers {self.customers_created:,}, products "
                f"{self.products_created:,}, orders {self.orders_created:,} (of which returns "
                f"{self.returns_created:,}, guest {self.guest_orders_created:,}), order lines "
                f"{self.order_lines_created:,}",
                f"  already imported     orders {self.orders_skipped:,} "
                f"({self.lines_skipped:,} lines) skipped",
            ]
        )


def import_orders(
    session: Session,
    path: str | Path,
    fmt: Format,
    *,
    reject_path: str | Path | None = None,
    instance_dir: str | Path = "instance",
    progress: bool = False,
    limits: ImportSettings | None = None,
) -> ImportSummary:
    """Import the order file at ``path`` in the session's transaction (the caller commits).

    Raises InvalidInput (nothing written) when the file as a whole is unusable or over one of the caps
    in ``limits`` (``settings.imports``; the defaults when None). ``progress`` shows a tqdm bar, and only
    when stderr is a terminal.
    """
    started = time.perf_counter()
    path = Path(path)
    show_progress = progress and sys.stderr.isatty()
    reading = _progress_bar("reading", "B") if show_progress else None
    try:
        parsed = read_order_lines(
            path, fmt, progress=_track(reading) if reading is not None else None, limits=limits
        )
    finally:
        if reading is not None:
            reading.close()
    counts = parsed.counts
    summary = ImportSummary(
        source=path.name,
        format=fmt,
        sha256=_sha256(path),
        rows=counts.rows,
        lines=counts.lines,
        sale_lines=counts.sale_lines,
        return_lines=counts.return_lines,
        guest_rows=counts.guest_rows,
        non_product_rows=counts.non_product_rows,
        rejected=counts.rejected,
        rejected_by_kind=dict(counts.rejected_by_kind),
        non_product_by_code=dict(counts.non_product_by_code),
    )
    _load(session, parsed, summary, show_progress=show_progress)
    if parsed.rejects:
        target = Path(reject_path) if reject_path is not None else default_reject_path(path, instance_dir)
        publish_rejects_on_commit(session, target, parsed.rejects)
        summary.reject_path = str(target)
    summary.seconds = time.perf_counter() - started
    return summary


# --- loading ----------------------------------------------------------------------------------------


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(slots=True)
class _ProductFacts:
    """What the file says about one sku: titles used, first sale, latest sale price."""

    titles: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    first_sale: dt.datetime | None = None
    first_seen: dt.datetime | None = None
    latest_at: dt.datetime | None = None
    latest_price: Decimal | None = None
    latest_is_sale: bool = False


def _load(session: Session, parsed: ParseResult, summary: ImportSummary, *, show_progress: bool) -> None:
    existing = set(session.execute(select(_table("orders").c.external_id)).scalars())
    by_order: dict[str, list[OrderLine]] = {}
    for line in parsed.lines:
        if line.order_id in existing:
            summary.lines_skipped += 1
        elif (group := by_order.get(line.order_id)) is None:
            by_order[line.order_id] = [line]
        else:
            group.append(line)
    summary.orders_skipped = len({line.order_id for line in parsed.lines} & existing)
    if not by_order:
        return  # nothing new: not even an ImportRun row

    now = utcnow()
    run = ImportRun(
        source_name=summary.source, format=summary.format, sha256=summary.sha256, counts={}, started_at=now
    )
    session.add(run)
    session.flush()
    customer_ids = _create_customers(session, by_order, summary, now)
    product_ids = _create_products(session, parsed.lines, by_order, summary, now)
    order_ids = _create_orders(session, by_order, customer_ids, run.id, summary, now)
    _write_lines(session, by_order, order_ids, product_ids, summary, show_progress=show_progress)

    run.counts = {
        key: value
        for key, value in summary.as_dict().items()
        if key not in ("source", "format", "sha256", "import_run_id", "reject_path", "seconds")
    }
    run.finished_at = utcnow()
    session.flush()
    summary.import_run_id = run.id
    _analyze(session)


#: What an import writes, analysed at its end on PostgreSQL.
WRITTEN_TABLES = ("customers", "products", "orders", "order_lines")


def _analyze(session: Session) -> None:
    """Planner statistics for the tables just filled, in the import's own transaction. On PostgreSQL a
    fresh table is planned from empty-table estimates until autovacuum analyses it: one join over 21,000
    fresh order lines once ran for over 20 minutes. SQLite plans these queries without statistics."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {', '.join(WRITTEN_TABLES)}"))


def _create_customers(
    session: Session, by_order: dict[str, list[OrderLine]], summary: ImportSummary, now: dt.datetime
) -> dict[str, int]:
    """Create the customers of new orders that are missing (with the country of their first new order)."""
    table = _table("customers")
    ids = _key_map(session, table.c.external_id, table.c.id)
    new: dict[str, str | None] = {}
    for group in by_order.values():
        external = group[0].customer_id
        if external is not None and external not in ids and external not in new:
            new[external] = group[0].country
    summary.customers_created = len(new)
    if not new:
        return ids
    rows = (
        {
            "external_id": external,
            "country": country,
            "locale": "en",
            "time_zone": "UTC",
            "email_consent": False,
            "is_vip": False,
            "is_generated": False,
            "created_at": now,
        }
        for external, country in new.items()
    )
    _insert(session, table, rows)
    return _key_map(session, table.c.external_id, table.c.id)


def _create_products(
    session: Session,
    lines: list[OrderLine],
    by_order: dict[str, list[OrderLine]],
    summary: ImportSummary,
    now: dt.datetime,
) -> dict[str, int]:
    """Create the products of new orders that are missing, from what the whole file says about them."""
    table = _table("products")
    ids = _key_map(session, table.c.sku, table.c.id)
    needed = {line.sku for group in by_order.values() for line in group} - ids.keys()
    summary.products_created = len(needed)
    if not needed:
        return ids
    facts: dict[str, _ProductFacts] = {}
    for line in lines:
        if line.sku not in needed:
            continue
        f = facts.get(line.sku)
        if f is None:
            f = facts[line.sku] = _ProductFacts()
        if line.title:
            f.titles[line.title] += 1
        if line.category:
            f.categories[line.category] += 1
        at = line.ordered_at
        if f.first_seen is None or at < f.first_seen:
            f.first_seen = at
        # The first and latest sales set created_at and the price; returns only for a sku never sold here.
        sale = not line.is_return
        if sale and (f.first_sale is None or at < f.first_sale):
            f.first_sale = at
        later = f.latest_at is None or at >= f.latest_at
        if (sale and not f.latest_is_sale) or (sale == f.latest_is_sale and later):
            f.latest_at, f.latest_price, f.latest_is_sale = at, line.unit_price, sale
    _insert(session, table, (_product_row(sku, facts[sku], now) for sku in sorted(needed)))
    return _key_map(session, table.c.sku, table.c.id)


def _create_orders(
    session: Session,
    by_order: dict[str, list[OrderLine]],
    customer_ids: dict[str, int],
    run_id: int,
    summary: ImportSummary,
    now: dt.datetime,
) -> dict[str, int]:
    """Insert the new orders (a return is an order of kind 'return'); return external id -> id."""
    table = _table("orders")
    rows = []
    for external, group in by_order.items():
        first = group[0]
        kind = "return" if first.is_return else "sale"
        rows.append(
            {
                "external_id": external,
                "customer_id": customer_ids[first.customer_id] if first.customer_id is not None else None,
                "kind": kind,
                # a few UCI invoices span two minutes: the order is placed at its first line
                "ordered_at": min(line.ordered_at for line in group),
                "country": first.country,
                "currency": CURRENCY,
                "source": "import",
                "import_run_id": run_id,
                "created_at": now,
            }
        )
        summary.returns_created += kind == "return"
        summary.guest_orders_created += first.customer_id is None
    _insert(session, table, rows)
    summary.orders_created = len(rows)
    mine = select(table.c.external_id, table.c.id).where(table.c.import_run_id == run_id)
    return {external: id_ for external, id_ in session.execute(mine)}


def _write_lines(
    session: Session,
    by_order: dict[str, list[OrderLine]],
    order_ids: dict[str, int],
    product_ids: dict[str, int],
    summary: ImportSummary,
    *,
    show_progress: bool,
) -> None:
    """Insert the lines of the new orders, numbered from 1 within each order."""
    total = sum(len(group) for group in by_order.values())
    bar = _progress_bar("order lines", "line", total) if show_progress else None
    writer = _LineWriter(session, _table("order_lines"))
    try:
        for external, group in by_order.items():
            order_id = order_ids[external]
            for line_no, line in enumerate(group, start=1):
                writer.add(order_id, line_no, product_ids[line.sku], line.quantity, line.unit_price)
            if len(writer.pending) >= CHUNK:
                done = writer.flush()
                if bar is not None:
                    bar.update(done)
        done = writer.flush()
        if bar is not None:
            bar.update(done)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    summary.order_lines_created = total


class _LineWriter:
    """Order lines, the bulk of an import, written in chunks with one ``executemany`` each.

    The statement is compiled once by SQLAlchemy for the session's dialect and executed with
    ``exec_driver_sql`` and plain tuples: SQLAlchemy's per-row parameter processing cost more than SQLite's
    own insert work (see docs/performance.md). The one typed value, the price, goes through the column
    type's own bind processor, cached per distinct price. On SQLite the page cache is raised for the import
    (the product index is filled in random order) and set back afterwards.
    """

    COLUMNS = ("order_id", "line_no", "product_id", "quantity", "unit_price")

    def __init__(self, session: Session, table: Table) -> None:
        self.connection = session.connection()
        dialect = self.connection.dialect
        compiled = insert(table).compile(dialect=dialect, column_keys=list(self.COLUMNS))
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        if self.positional:
            order = [name for name in (compiled.positiontup or ())]
            assert sorted(order) == sorted(self.COLUMNS), order
            self.order = [self.COLUMNS.index(name) for name in order]
        self.price = table.c.unit_price.type.bind_processor(dialect)
        self.prices: dict[Decimal, Any] = {}
        self.pending: list[tuple[Any, ...]] = []
        self.sqlite_cache: int | None = None
        if dialect.name == "sqlite":
            self.sqlite_cache = self.connection.exec_driver_sql("PRAGMA cache_size").scalar()
            self.connection.exec_driver_sql(f"PRAGMA cache_size={SQLITE_IMPORT_CACHE_KIB}")

    def add(self, order_id: int, line_no: int, product_id: int, quantity: int, price: Decimal) -> None:
        value = self.prices.get(price)
        if value is None:
            value = self.prices[price] = self.price(price) if self.price is not None else price
        self.pending.append((order_id, line_no, product_id, quantity, value))

    def flush(self) -> int:
        rows, self.pending = self.pending, []
        if not rows:
            return 0
        params: list[Any]
        if self.positional:
            if self.order != list(range(len(self.COLUMNS))):
                rows = [tuple(row[i] for i in self.order) for row in rows]
            params = rows
        else:
            params = [dict(zip(self.COLUMNS, row, strict=True)) for row in rows]
        self.connection.exec_driver_sql(self.sql, params)
        return len(rows)

    def close(self) -> None:
        if self.sqlite_cache is not None:
            self.connection.exec_driver_sql(f"PRAGMA cache_size={int(self.sqlite_cache)}")


def _key_map(session: Session, key: Column[Any], value: Column[Any]) -> dict[str, int]:
    """Pre-load ``key -> id`` for a whole table: one query instead of one per row."""
    return {k: v for k, v in session.execute(select(key, value))}


def _product_row(sku: str, f: _ProductFacts, now: dt.datetime) -> dict[str, Any]:
    title = f.titles.most_common(1)[0][0] if f.titles else sku
    category = f.categories.most_common(1)[0][0] if f.categories else None
    return {
        "sku": sku,
        "title": title,
        "category": category,
        "price": f.latest_price,
        "currency": CURRENCY,
        "is_active": True,
        "in_stock": True,
        "delivery_days": 3,
        "tags": [],
        "created_at": f.first_sale or f.first_seen,
        "updated_at": now,
    }


def _insert(session: Session, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    for chunk in _chunks(rows, CHUNK):
        session.execute(insert(table), chunk)


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress_bar(desc: str, unit: str, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr)


def _track(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update
