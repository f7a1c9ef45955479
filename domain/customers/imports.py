"""Import order files into customers, products, orders and order lines: one transaction, rejects reported.

``import_orders`` reads the file in chunks of ``imports.chunk_rows`` rows (:class:`~domain.customers.sources.
OrderFile`) and writes each chunk's clean lines and rejects into temporary staging tables of the caller's
transaction (:mod:`domain.customers.staging`); what needs the whole file (the order rules, the orders already
imported, the new customers and products, the counts) is done by the database there, and the new rows are
copied into the real tables with ``INSERT ... SELECT``. Its memory therefore does not grow with the file's
length. A file unusable as a whole raises :class:`~domain.errors.InvalidInput` whenever that shows (at the
last row, for a row cap or a truncated gzip stream), and any failure half-way (a constraint, a lost
connection, a killed process) leaves the caller's transaction to roll back: nothing is half-applied.
Rows that break a cleaning rule are written to a reject CSV (``line_no, kind, field, reason, raw``).

- **Idempotent.** Orders are unique by external id (the invoice number; ``C...`` cancellations keep their
  ``C``): orders already in the database are skipped with all their lines. Customers and products are
  looked up by external id / sku and created only when missing. Re-importing a file adds nothing, not even
  an :class:`~domain.models.ImportRun` row: a run is recorded only when the import creates something.
- **New products** take the title most often used for their sku in the file (the first used, among equals;
  the sku itself when all are blank), the latest sale price, the first sale time as ``created_at`` (it
  drives "new arrivals"), currency GBP, active and in stock. Existing products and customers are never
  modified: the catalog API owns them.
- **New customers** get their external id and the country of their first line; names and emails are not
  in order files.
- **Returns** (cancellation invoices, negative generic quantities) are orders of kind ``return`` with
  positive quantities. Guest lines become orders without a customer.
- **Speed.** Chunks are written with one ``COPY`` each on PostgreSQL, one compiled ``executemany`` each
  elsewhere, and everything after that is set-based SQL: no per-row SELECT, no per-product subquery. On
  PostgreSQL a large import checks its order lines' foreign keys once over the table rather than row by
  row, and holds exclusive locks on ``order_lines``, ``orders`` and ``products`` from then to its commit
  (:func:`_create_lines`). See ``bench/bench_import.py`` and ``docs/performance.md``.

The reject file defaults to ``<instance_dir>/rejects/<input file name>.rejects.csv`` (the input's folder may
be read-only, like ``../shared/data/``); it is written only when there are rejects, and appears only when
the caller's transaction commits (:mod:`domain.customers.rejects`): a failed import leaves none, and the
hidden file of an import killed before its commit is removed by the next import of the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Insert,
    Select,
    Table,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from config import ImportSettings
from domain.customers import staging
from domain.customers.rejects import (
    default_reject_path,
    publish_rejects_on_commit,
    remove_stale_partials,
)
from domain.customers.sources import Format, OrderFile
from domain.customers.staging import Staging
from domain.db import Base
from domain.errors import InvalidInput
from domain.models import ImportRun
from domain.models._types import utcnow

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

    Raises InvalidInput when the file as a whole is unusable or over one of the caps in ``limits``
    (``settings.imports``; the defaults when None); the staged rows are dropped then, and nothing else
    was written. ``progress`` shows a tqdm bar, and only when stderr is a terminal.
    """
    started = time.perf_counter()
    path = Path(path)
    target = Path(reject_path) if reject_path is not None else default_reject_path(path, instance_dir)
    remove_stale_partials(target)  # left by an import of this file killed before its commit
    source = OrderFile(path, fmt, limits=limits)
    show_progress = progress and sys.stderr.isatty()
    staging = Staging(session, source.order_field, (limits or ImportSettings()).sqlite_cache_mib)
    try:
        summary = _stage_and_load(session, staging, source, target, show_progress)
    except InvalidInput:
        staging.drop()  # the file was refused: nothing else was written
        raise
    except BaseException:
        with suppress(SQLAlchemyError):  # the first error is the one to report
            staging.restore_caches()  # the caller rolls back, which takes the staging tables away
        raise
    staging.drop()
    if summary.import_run_id is not None:
        _analyze(session)
    summary.seconds = time.perf_counter() - started
    return summary


# --- loading ----------------------------------------------------------------------------------------


def _stage_and_load(
    session: Session,
    staging: Staging,
    source: OrderFile,
    reject_target: Path,
    show_progress: bool,
) -> ImportSummary:
    reading = _progress_bar("reading", "B") if show_progress else None
    try:
        for chunk in source.chunks(progress=_track(reading) if reading is not None else None):
            staging.add(chunk)
    finally:
        if reading is not None:
            reading.close()
    counts = source.counts
    path = source.path
    summary = ImportSummary(
        source=path.name,
        format=source.format,
        sha256=_sha256(path),
        rows=counts.rows,
        non_product_rows=counts.non_product_rows,
        non_product_by_code=dict(counts.non_product_by_code),
    )
    staging.apply_order_rules()
    summary.rejected_by_kind = staging.reject_counts()
    summary.rejected = sum(summary.rejected_by_kind.values())
    _load(session, staging.connection, summary)
    if summary.rejected:
        publish_rejects_on_commit(session, reject_target, staging.reject_rows(source))
        summary.reject_path = str(reject_target)
    return summary


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _count(conn: Connection, query: Select[Any]) -> int:
    return int(conn.execute(query).scalar() or 0)


def _inserted(conn: Connection, statement: Insert) -> int:
    """Run an INSERT ... SELECT; the number of rows it inserted (SQLAlchemy keeps it only when asked)."""
    return int(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount)


def _load(session: Session, conn: Connection, summary: ImportSummary) -> None:
    """Count the staged lines and copy what is new into the real tables."""
    lines, orders = staging.LINES, staging.ORDERS
    is_return = case((lines.c.is_return, 1), else_=0)
    guest = case((lines.c.customer_id.is_(None), 1), else_=0)
    total, returns, guests = conn.execute(
        select(func.count(), func.coalesce(func.sum(is_return), 0), func.coalesce(func.sum(guest), 0))
    ).one()
    summary.lines, summary.return_lines, summary.guest_rows = int(total), int(returns), int(guests)
    summary.sale_lines = summary.lines - summary.return_lines
    existing = orders.c.is_existing
    summary.orders_skipped = _count(conn, select(func.count()).where(existing))
    summary.lines_skipped = _count(
        conn,
        select(func.count())
        .select_from(lines)
        .join(orders, orders.c.order_id == lines.c.order_id)
        .where(existing),
    )
    new_orders = _count(conn, select(func.count()).where(~existing))
    if not new_orders:
        return  # nothing new: not even an ImportRun row

    now = utcnow()
    run = ImportRun(
        source_name=summary.source, format=summary.format, sha256=summary.sha256, counts={}, started_at=now
    )
    session.add(run)
    session.flush()
    _create_customers(conn, summary, now)
    _create_products(conn, summary, now)
    _create_orders(conn, run.id, summary, now)
    _create_lines(conn, run.id, summary)

    run.counts = {
        key: value
        for key, value in summary.as_dict().items()
        if key not in ("source", "format", "sha256", "import_run_id", "reject_path", "seconds")
    }
    run.finished_at = utcnow()
    session.flush()
    summary.import_run_id = run.id


#: What an import writes, analysed at its end on PostgreSQL.
WRITTEN_TABLES = ("customers", "products", "orders", "order_lines")


def _analyze(session: Session) -> None:
    """Planner statistics for the tables just filled, in the import's own transaction. On PostgreSQL a
    fresh table is planned from empty-table estimates until autovacuum analyses it: one join over 21,000
    fresh order lines once ran for over 20 minutes. SQLite plans these queries without statistics."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {', '.join(WRITTEN_TABLES)}"))


def _value(value: Any, column: Column[Any]) -> Any:
    """A constant of the INSERT ... SELECT statements, typed as the column it fills."""
    return literal(value, column.type)


def _create_customers(conn: Connection, summary: ImportSummary, now: dt.datetime) -> None:
    """Create the missing customers of new orders, with the country of their first new order."""
    table, orders = _table("customers"), staging.ORDERS
    firsts = (
        select(func.min(orders.c.first_line))
        .where(~orders.c.is_existing, orders.c.customer_id.is_not(None))
        .group_by(orders.c.customer_id)
    )
    constants = {
        "locale": "en",
        "time_zone": "UTC",
        "email_consent": False,
        "is_vip": False,
        "is_generated": False,
        "created_at": now,
    }
    rows = (
        select(
            orders.c.customer_id,
            orders.c.country,
            *(_value(value, table.c[name]) for name, value in constants.items()),
        )
        .where(orders.c.first_line.in_(firsts))
        .where(~exists().where(table.c.external_id == orders.c.customer_id))
        .order_by(orders.c.first_line)
    )
    summary.customers_created = _inserted(
        conn, insert(table).from_select(["external_id", "country", *constants], rows)
    )


def _create_products(conn: Connection, summary: ImportSummary, now: dt.datetime) -> None:
    """Create the missing products of new orders, from what the whole file says about them (the lines of
    orders already imported included)."""
    table, lines, orders, new = _table("products"), staging.LINES, staging.ORDERS, staging.NEW_SKUS
    conn.execute(
        insert(new).from_select(
            ["sku"],
            select(lines.c.sku)
            .distinct()
            .join_from(lines, orders, orders.c.order_id == lines.c.order_id)
            .where(~orders.c.is_existing)
            .where(~exists().where(table.c.sku == lines.c.sku)),
        )
    )
    summary.products_created = _count(conn, select(func.count()).select_from(new))
    if not summary.products_created:
        return
    if conn.dialect.name == "sqlite":
        title, category, price, created, source = _product_rules_per_sku()
    else:
        title, category, price, created, source = _product_rules_grouped()
    constants = {
        "currency": CURRENCY,
        "is_active": True,
        "in_stock": True,
        "delivery_days": 3,
        "tags": [],
        "updated_at": now,
    }
    rows = (
        select(
            new.c.sku,
            func.coalesce(title, new.c.sku),
            category,
            price,
            created,
            *(_value(value, table.c[name]) for name, value in constants.items()),
        )
        .select_from(source)
        .order_by(new.c.sku)
    )
    conn.execute(
        insert(table).from_select(["sku", "title", "category", "price", "created_at", *constants], rows)
    )


# The rules of a new product: the title and category most often used for its sku in the file, the first
# used among equals (Counter.most_common's); the price of the latest sale (the later line among sales at
# the same time; returns only for a sku never sold in the file); created at the first sale (the first
# return, never sold). Two ways to the same values, each its database's fastest.


def _product_rules_per_sku() -> tuple[Any, Any, Any, Any, Any]:
    """Per new sku, correlated subqueries over its lines through the staged lines' sku index (SQLite: its
    plans for the grouped statements below cost more CPU and memory)."""
    lines, new = staging.LINES, staging.NEW_SKUS
    of_sku = lines.c.sku == new.c.sku

    def most_used(column: Column[Any]) -> Any:
        return (
            select(column)
            .where(of_sku, column.is_not(None))
            .group_by(column)
            .order_by(func.count().desc(), func.min(lines.c.line_no))
            .limit(1)
            .scalar_subquery()
        )

    price = (
        select(lines.c.unit_price)
        .where(of_sku)
        .order_by(lines.c.is_return, lines.c.ordered_at.desc(), lines.c.line_no.desc())
        .limit(1)
        .scalar_subquery()
    )
    first_sale = select(func.min(lines.c.ordered_at)).where(of_sku, ~lines.c.is_return).scalar_subquery()
    first_seen = select(func.min(lines.c.ordered_at)).where(of_sku).scalar_subquery()
    created = func.coalesce(first_sale, first_seen)
    return most_used(lines.c.title), most_used(lines.c.category), price, created, new


def _product_rules_grouped() -> tuple[Any, Any, Any, Any, Any]:
    """One pass over the staged lines per rule, grouped or numbered per sku (PostgreSQL: the subqueries
    per sku were bitmap heap scans over lines scattered across the staging table, 9,666 x 4 of them at 2
    million lines)."""
    lines, new = staging.LINES, staging.NEW_SKUS
    of_new = lines.join(new, new.c.sku == lines.c.sku)

    def most_used(column: Column[Any]) -> Any:
        ranked = (
            select(
                lines.c.sku,
                column.label("value"),
                func.row_number()
                .over(
                    partition_by=lines.c.sku,
                    order_by=(func.count().desc(), func.min(lines.c.line_no)),
                )
                .label("rank"),
            )
            .select_from(of_new)
            .where(column.is_not(None))
            .group_by(lines.c.sku, column)
            .subquery()
        )
        return select(ranked.c.sku, ranked.c.value).where(ranked.c.rank == 1).subquery()

    titles, categories = most_used(lines.c.title), most_used(lines.c.category)
    ranked_prices = (
        select(
            lines.c.sku,
            lines.c.unit_price,
            func.row_number()
            .over(
                partition_by=lines.c.sku,
                order_by=(lines.c.is_return, lines.c.ordered_at.desc(), lines.c.line_no.desc()),
            )
            .label("rank"),
        )
        .select_from(of_new)
        .subquery()
    )
    prices = (
        select(ranked_prices.c.sku, ranked_prices.c.unit_price).where(ranked_prices.c.rank == 1).subquery()
    )
    first_sale = func.min(case((~lines.c.is_return, lines.c.ordered_at)))
    times = (
        select(lines.c.sku, func.coalesce(first_sale, func.min(lines.c.ordered_at)).label("created"))
        .select_from(of_new)
        .group_by(lines.c.sku)
        .subquery()
    )
    source = (
        new.join(prices, prices.c.sku == new.c.sku)
        .join(times, times.c.sku == new.c.sku)
        .outerjoin(titles, titles.c.sku == new.c.sku)
        .outerjoin(categories, categories.c.sku == new.c.sku)
    )
    return titles.c.value, categories.c.value, prices.c.unit_price, times.c.created, source


def _create_orders(conn: Connection, run_id: int, summary: ImportSummary, now: dt.datetime) -> None:
    """Insert the new orders (a return is an order of kind 'return'), placed at their first line's time."""
    table, customers, orders = _table("orders"), _table("customers"), staging.ORDERS
    constants = {"currency": CURRENCY, "source": "import", "import_run_id": run_id, "created_at": now}
    rows = (
        select(
            orders.c.order_id,
            customers.c.id,
            case((orders.c.is_return, _value("return", table.c.kind)), else_=_value("sale", table.c.kind)),
            # a few UCI invoices span two minutes: the order is placed at its first line
            orders.c.ordered_at,
            orders.c.country,
            *(_value(value, table.c[name]) for name, value in constants.items()),
        )
        .select_from(orders)
        .outerjoin(customers, customers.c.external_id == orders.c.customer_id)
        .where(~orders.c.is_existing)
        .order_by(orders.c.first_line)
    )
    columns = ["external_id", "customer_id", "kind", "ordered_at", "country", *constants]
    summary.orders_created = _inserted(conn, insert(table).from_select(columns, rows))
    new = select(func.count()).where(~orders.c.is_existing)
    summary.returns_created = _count(conn, new.where(orders.c.is_return))
    summary.guest_orders_created = _count(conn, new.where(orders.c.customer_id.is_(None)))


#: On PostgreSQL an import that adds at least this many order lines, and at least one for every
#: ``BULK_FOREIGN_KEY_RATIO`` lines the table holds already, checks the order lines' foreign keys once
#: over the table instead of row by row (see :func:`_create_lines`).
BULK_FOREIGN_KEY_LINES = 100_000
BULK_FOREIGN_KEY_RATIO = 8


def _create_lines(conn: Connection, run_id: int, summary: ImportSummary) -> None:
    """Insert the lines of the new orders, numbered from 1 within each order in the file's order, in the
    order of their orders' ids (the order lines' unique index on (order_id, line_no) is then appended to).

    PostgreSQL checks each inserted row's two foreign keys (its order, its product) with a query of its
    own (after-row triggers): two thirds of this step's time on large files. The rows here reference
    their orders and products by construction (they come from a join with both), so a large import drops
    the two constraints in its transaction and adds them back after the insert: PostgreSQL then checks
    them with one anti-join over the whole table, as any ``ADD CONSTRAINT ... FOREIGN KEY`` does (no
    superuser needed; disabling the triggers would). The constraints come back with their names and
    definitions as the database had them; a failure anywhere rolls the drop back with everything else.
    The cost: from this step to its commit the import holds an exclusive lock on ``order_lines``,
    ``orders`` and ``products`` (readers wait), so small imports, or imports small next to the table
    (whose full check would cost more than their rows' checks), keep the row-by-row checks.
    """
    table, orders, products, lines = (
        _table("order_lines"),
        _table("orders"),
        _table("products"),
        staging.LINES,
    )
    rows = (
        select(
            orders.c.id,
            func.row_number().over(partition_by=orders.c.id, order_by=lines.c.line_no),
            products.c.id,
            lines.c.quantity,
            lines.c.unit_price,
        )
        .select_from(lines)
        .join(orders, orders.c.external_id == lines.c.order_id)
        .join(products, products.c.sku == lines.c.sku)
        .where(orders.c.import_run_id == run_id)
        .order_by(orders.c.id, lines.c.line_no)
    )
    columns = ["order_id", "line_no", "product_id", "quantity", "unit_price"]
    dropped = _drop_line_foreign_keys(conn, summary.lines - summary.lines_skipped)
    summary.order_lines_created = _inserted(conn, insert(table).from_select(columns, rows))
    if dropped:
        quote = conn.dialect.identifier_preparer.quote
        adds = ", ".join(f"ADD CONSTRAINT {quote(name)} {definition}" for name, definition in dropped)
        conn.exec_driver_sql(f"ALTER TABLE order_lines {adds}")


def _drop_line_foreign_keys(conn: Connection, new_lines: int) -> list[tuple[str, str]]:
    """On PostgreSQL, for an import of ``new_lines`` large enough (:data:`BULK_FOREIGN_KEY_LINES`), drop
    the order lines' foreign keys to orders and products; their names and definitions, to add back."""
    if conn.dialect.name != "postgresql" or new_lines < BULK_FOREIGN_KEY_LINES:
        return []
    held = conn.execute(
        text("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'order_lines'::regclass")
    ).scalar()
    if new_lines * BULK_FOREIGN_KEY_RATIO < float(held or 0):
        return []
    found = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = 'order_lines'::regclass "
            "AND confrelid IN ('orders'::regclass, 'products'::regclass) ORDER BY conname"
        )
    ).all()
    dropped = [(str(name), str(definition)) for name, definition in found]
    if dropped:
        quote = conn.dialect.identifier_preparer.quote
        drops = ", ".join(f"DROP CONSTRAINT {quote(name)}" for name, _ in dropped)
        conn.exec_driver_sql(f"ALTER TABLE order_lines {drops}")
    return dropped


def _progress_bar(desc: str, unit: str, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr)


def _track(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update
