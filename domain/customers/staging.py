"""An import's staging: the file's clean lines and rejects in temporary tables of the import's transaction.

The import parses its file in chunks (:class:`~domain.customers.sources.OrderFile`) and writes each chunk
here, so that its memory does not grow with the file. What needs the whole file is then done by the
database on these tables: the order rules (7: an order has one customer and one kind; 8: an order with a
rejected row is held back whole), the orders already in the database, the counts, and, in
:mod:`domain.customers.imports`, what is created from them.

The tables are ``TEMPORARY``: each connection sees only its own, and they are written in the import's
transaction, so that a rollback or a killed process takes them away with everything else. On SQLite they
live in the connection's temporary database (a file SQLite deletes), on PostgreSQL in the session's
temporary schema. :meth:`Staging.drop` removes them when the import is done; a new import on a pooled
connection also drops any left over before creating them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from domain.customers.parsing import (
    INCONSISTENT_ORDER,
    ORDER_HELD_BACK,
    Chunk,
    Reject,
    held_back_reason,
    inconsistent_reason,
)
from domain.customers.sources import OrderFile
from domain.db import Base
from domain.models._types import UTCDateTime

#: Rows fetched at a time when the reject file is written from the staging table.
FETCH_ROWS = 5_000

_metadata = MetaData()

LINES = Table(
    "giftrec_import_lines",
    _metadata,
    Column("line_no", Integer, primary_key=True, autoincrement=False),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(64)),
    Column("sku", String(64), nullable=False),
    Column("title", String(300)),
    Column("category", String(100)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(12, 2), nullable=False),
    Column("ordered_at", UTCDateTime(), nullable=False),
    Column("country", String(64)),
    Column("is_return", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)
#: One row per order of the file: its first clean line (customer, kind, country), its first time, the
#: earliest rejected row that holds it back, and whether it is in the database already.
ORDERS = Table(
    "giftrec_import_orders",
    _metadata,
    Column("order_id", String(64), primary_key=True),
    Column("first_line", Integer, nullable=False),
    Column("ordered_at", UTCDateTime(), nullable=False),
    Column("customer_id", String(64)),
    Column("country", String(64)),
    Column("is_return", Boolean, nullable=False),
    Column("held_line", Integer),
    Column("is_existing", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)
#: Every rejected row. ``reason`` and ``raw`` are NULL for rows rejected by the order rules: the reason
#: is formatted from ``order_id``, ``cause_line`` and ``cause`` and the raw row read again from the file
#: when the reject file is written.
REJECTS = Table(
    "giftrec_import_rejects",
    _metadata,
    Column("line_no", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(30), nullable=False),
    Column("field", String(64), nullable=False),
    Column("reason", Text),
    Column("raw", Text),
    Column("order_id", Text),  # the order a malformed row names: it holds the order back
    Column("holds", Boolean, nullable=False),
    Column("cause_line", Integer),
    Column("cause", String(30)),
    prefixes=["TEMPORARY"],
)
#: The skus of new orders that are not products yet.
NEW_SKUS = Table(
    "giftrec_import_new_skus",
    _metadata,
    Column("sku", String(64), primary_key=True),
    prefixes=["TEMPORARY"],
)
TABLES = (LINES, ORDERS, REJECTS, NEW_SKUS)
#: Created once the lines are staged (filling an index row by row costs more than building it).
INDEXES = (
    Index("giftrec_import_lines_order", LINES.c.order_id, LINES.c.line_no),
    Index("giftrec_import_rejects_order", REJECTS.c.order_id),
)
#: SQLite only: its new products are subqueries per sku through it. PostgreSQL groups the lines per sku
#: in one pass instead; with the index there, it chose full index scans that scattered over the table
#: (and building it took 7 s at 2 million lines).
SQLITE_INDEXES = (Index("giftrec_import_lines_sku", LINES.c.sku),)


class Staging:
    """The staging tables of one import, on the session's connection (in its transaction)."""

    def __init__(self, session: Session, order_field: str, sqlite_cache_mib: int) -> None:
        """``sqlite_cache_mib`` (``imports.sqlite_cache_mib``) is SQLite's page cache of the main and the
        temporary database during the import: a constant, so that the memory stays bounded whatever the
        file's length (SQLite's sorter also keeps up to the main database's ``cache_size`` in memory).

        On PostgreSQL the import's statements run without JIT compilation (``SET LOCAL jit``, set back
        when the import is done): they run once each, over whole tables whose size makes the planner
        compile them, and compiling took over a second per statement at 2 million lines."""
        self.connection = session.connection()
        self.order_field = order_field
        dialect = self.connection.dialect
        self.sqlite_caches: list[tuple[str, int]] = []
        self.postgresql_jit: str | None = None
        if dialect.name == "postgresql":
            self.postgresql_jit = self.connection.exec_driver_sql("SHOW jit").scalar()
            self.connection.exec_driver_sql("SET LOCAL jit = off")
        if dialect.name == "sqlite":
            for schema in ("main", "temp"):
                size = self.connection.exec_driver_sql(f"PRAGMA {schema}.cache_size").scalar()
                self.sqlite_caches.append((schema, int(size or 0)))
                # negative: a size in KiB, whatever the page size
                self.connection.exec_driver_sql(f"PRAGMA {schema}.cache_size={-1024 * sqlite_cache_mib}")
        self._drop_tables()
        for table in TABLES:
            self.connection.execute(CreateTable(table))  # without INDEXES: they come once it is filled
        self.lines = BulkWriter(self.connection, LINES)
        self.rejects = BulkWriter(self.connection, REJECTS)

    def add(self, chunk: Chunk) -> None:
        """Write one chunk's clean lines and rejects."""
        for line in chunk.lines:
            self.lines.add(line)
        self.lines.flush()
        holds = {line_no: order_id for order_id, line_no, _ in chunk.holds}
        for r in chunk.rejects:
            order_id = holds.get(r.line_no)
            held = order_id is not None
            self.rejects.add((r.line_no, r.kind, r.field, r.reason, r.raw, order_id, held, None, None))
        self.rejects.flush()

    def apply_order_rules(self) -> None:
        """Rules 7 and 8 over the whole file, and which orders the database has already."""
        conn = self.connection
        for index in (*INDEXES, *(SQLITE_INDEXES if conn.dialect.name == "sqlite" else ())):
            index.create(conn)
        firsts = (
            select(
                LINES.c.order_id,
                func.min(LINES.c.line_no).label("first_line"),
                func.min(LINES.c.ordered_at).label("ordered_at"),
            )
            .group_by(LINES.c.order_id)
            .subquery()
        )
        first = LINES.alias("first")
        conn.execute(
            insert(ORDERS).from_select(
                [
                    "order_id",
                    "first_line",
                    "ordered_at",
                    "customer_id",
                    "country",
                    "is_return",
                    "is_existing",
                ],
                select(
                    firsts.c.order_id,
                    firsts.c.first_line,
                    firsts.c.ordered_at,
                    first.c.customer_id,
                    first.c.country,
                    first.c.is_return,
                    false(),
                ).join_from(firsts, first, first.c.line_no == firsts.c.first_line),
            )
        )
        # Rule 7: a line with another customer or kind than its order's first line is rejected.
        other_customer = LINES.c.customer_id.is_distinct_from(ORDERS.c.customer_id)
        conn.execute(
            insert(REJECTS).from_select(
                ["line_no", "kind", "field", "order_id", "holds", "cause_line", "cause"],
                select(
                    LINES.c.line_no,
                    _text(INCONSISTENT_ORDER),
                    _text(self.order_field),
                    LINES.c.order_id,
                    true(),
                    ORDERS.c.first_line,
                    case((other_customer, _text("customer")), else_=_text("sale/return kind")),
                )
                .join_from(LINES, ORDERS, ORDERS.c.order_id == LINES.c.order_id)
                .where(other_customer | (LINES.c.is_return != ORDERS.c.is_return)),
            )
        )
        # Rule 8: the earliest malformed or inconsistent row of an order holds the whole order back.
        conn.execute(
            update(ORDERS)
            .values(
                held_line=select(func.min(REJECTS.c.line_no))
                .where(REJECTS.c.order_id == ORDERS.c.order_id, REJECTS.c.holds)
                .scalar_subquery()
            )
            .where(ORDERS.c.order_id.in_(select(REJECTS.c.order_id).where(REJECTS.c.holds)))
        )
        cause = REJECTS.alias("cause")
        conn.execute(
            insert(REJECTS).from_select(
                ["line_no", "kind", "field", "order_id", "holds", "cause_line", "cause"],
                select(
                    LINES.c.line_no,
                    _text(ORDER_HELD_BACK),
                    _text(self.order_field),
                    LINES.c.order_id,
                    false(),
                    ORDERS.c.held_line,
                    cause.c.kind,
                )
                .join_from(LINES, ORDERS, ORDERS.c.order_id == LINES.c.order_id)
                .join(cause, cause.c.line_no == ORDERS.c.held_line)
                .where(~exists().where(REJECTS.c.line_no == LINES.c.line_no)),
            )
        )
        held = select(ORDERS.c.order_id).where(ORDERS.c.held_line.is_not(None))
        conn.execute(delete(LINES).where(LINES.c.order_id.in_(held)))
        conn.execute(delete(ORDERS).where(ORDERS.c.held_line.is_not(None)))
        # Orders are unique by external id: those in the database already are skipped with their lines.
        orders = Base.metadata.tables["orders"]
        conn.execute(
            update(ORDERS)
            .values(is_existing=True)
            .where(exists().where(orders.c.external_id == ORDERS.c.order_id))
        )

    def reject_counts(self) -> dict[str, int]:
        """Rejected rows by kind."""
        rows = self.connection.execute(select(REJECTS.c.kind, func.count()).group_by(REJECTS.c.kind))
        return {kind: n for kind, n in rows}

    def reject_rows(self, source: OrderFile) -> Iterator[Reject]:
        """Every rejected row in line order, read from the staging table in batches; the raw text of the
        rows the order rules rejected comes from a second pass over the file, merged in line order."""
        conn = self.connection
        needs_raw = select(REJECTS.c.line_no).where(REJECTS.c.raw.is_(None)).order_by(REJECTS.c.line_no)
        query = select(
            REJECTS.c.line_no,
            REJECTS.c.kind,
            REJECTS.c.field,
            REJECTS.c.reason,
            REJECTS.c.raw,
            REJECTS.c.order_id,
            REJECTS.c.cause_line,
            REJECTS.c.cause,
        ).order_by(REJECTS.c.line_no)
        # Both cursors are closed explicitly: the second pass stops reading the line numbers at the last
        # one it needs, and on PostgreSQL a server-side cursor left open keeps the staging tables from
        # being dropped.
        with _rows(conn, needs_raw) as needed, _rows(conn, query) as rejects:
            raw_texts = source.raw_rows(row[0] for row in needed)
            for line_no, kind, field, reason, raw, order_id, cause_line, cause in rejects:
                if raw is None:
                    raw_line, raw = next(raw_texts)
                    assert raw_line == line_no, (raw_line, line_no)
                if reason is None:
                    if kind == INCONSISTENT_ORDER:
                        reason = inconsistent_reason(order_id, cause, cause_line)
                    else:
                        reason = held_back_reason(order_id, cause_line, cause)
                yield Reject(line_no, reason, raw, kind, field)

    def drop(self) -> None:
        """Remove the staging tables and set SQLite's page caches back."""
        self._drop_tables()
        self.restore_caches()

    def restore_caches(self) -> None:
        """Set SQLite's page caches (the connection is pooled) and PostgreSQL's JIT setting (for the rest
        of the caller's transaction) back to what they were before the import."""
        for schema, size in self.sqlite_caches:
            self.connection.exec_driver_sql(f"PRAGMA {schema}.cache_size={size}")
        self.sqlite_caches = []
        if self.postgresql_jit is not None:
            self.connection.execute(
                select(func.set_config("jit", self.postgresql_jit, True))  # True: SET LOCAL
            )
            self.postgresql_jit = None

    def _drop_tables(self) -> None:
        for table in reversed(TABLES):
            self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")


def _text(value: str) -> Any:
    return literal(value, String)


@contextmanager
def _rows(conn: Connection, query: Any) -> Iterator[Iterator[Sequence[Any]]]:
    """The rows of ``query`` in batches of FETCH_ROWS (a server-side cursor on PostgreSQL), closed when
    the block ends, whether or not they were all read."""
    result = conn.execute(query, execution_options={"stream_results": True, "yield_per": FETCH_ROWS})
    try:
        yield (row for batch in result.partitions() for row in batch)
    finally:
        result.close()


class BulkWriter:
    """Rows written in chunks, the fast way: one ``COPY ... FROM STDIN`` each on PostgreSQL (psycopg 3),
    one ``executemany`` each elsewhere.

    On SQLite the statement is compiled once by SQLAlchemy and executed with ``exec_driver_sql`` and plain
    tuples: SQLAlchemy's per-row parameter processing cost more than SQLite's own insert work (see
    docs/performance.md). On PostgreSQL even a pipelined ``executemany`` is one INSERT per row for the
    server to parse, plan and run; ``COPY`` streams the rows in psycopg's escaped text format (tabs,
    newlines and backslashes in a value escaped, ``None`` as NULL), on the session's own connection and
    so in the import's transaction. Typed values (prices, times, flags) go through their column type's own
    bind processor, cached per distinct value within a chunk.
    """

    def __init__(self, connection: Connection, table: Table) -> None:
        self.connection = connection
        self.columns = [column.name for column in table.columns]
        dialect = connection.dialect
        compiled = insert(table).compile(dialect=dialect, column_keys=self.columns)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.order = list(range(len(self.columns)))
        if self.positional:
            names = list(compiled.positiontup or ())
            assert sorted(names) == sorted(self.columns), names
            self.order = [self.columns.index(name) for name in names]
        self.processors: list[tuple[int, Any, dict[Any, Any]]] = [
            (i, processor, {})
            for i, column in enumerate(table.columns)
            if (processor := column.type.bind_processor(dialect)) is not None
            and not isinstance(column.type, Integer | String)
        ]
        self.pending: list[Sequence[Any]] = []
        self.copy_sql: str | None = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quote = dialect.identifier_preparer
            listed = ", ".join(quote.format_column(column) for column in table.columns)
            self.copy_sql = f"COPY {quote.format_table(table)} ({listed}) FROM STDIN"

    def add(self, row: Sequence[Any]) -> None:
        self.pending.append(row)

    def flush(self) -> int:
        rows, self.pending = self.pending, []
        if not rows:
            return 0
        if self.processors:
            converted = []
            for row in rows:
                values = list(row)
                for i, processor, cache in self.processors:
                    value = values[i]
                    if value is not None:
                        done = cache.get(value)
                        if done is None:
                            done = cache[value] = processor(value)
                        values[i] = done
                converted.append(tuple(values))
            for _, _, cache in self.processors:
                cache.clear()
            rows = converted  # type: ignore[assignment]
        if self.copy_sql is not None:
            self._copy(self.copy_sql, rows)
            return len(rows)
        params: list[Any]
        if self.positional:
            if self.order != list(range(len(self.columns))):
                rows = [tuple(row[i] for i in self.order) for row in rows]
            params = rows
        else:
            params = [dict(zip(self.columns, row, strict=True)) for row in rows]
        self.connection.exec_driver_sql(self.sql, params)
        return len(rows)

    def _copy(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``COPY`` the rows through the DBAPI cursor of the session's connection (its transaction)."""
        cursor = self.connection.connection.cursor()
        try:
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()
