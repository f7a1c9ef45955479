"""The row loop shared by every order-file format: clean lines, rejects with their reasons, counts.

:mod:`domain.customers.sources` opens a file and picks the format's parser (:mod:`domain.customers.formats`);
the cleaning rules are listed there.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple, get_args

from config import env_var
from domain.errors import InvalidInput

Format = Literal["online-retail", "generic", "complete-journey"]
#: ``progress(done, total)``: bytes of the file read so far and its size.
Progress = Callable[[int, int], None]
FORMATS: tuple[str, ...] = get_args(Format)

ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
GENERIC_REQUIRED = ("customer_id", "order_id", "sku", "quantity", "unit_price", "ordered_at")
GENERIC_OPTIONAL = ("title", "category", "country")
#: The transactions table of "The Complete Journey" (84.51°, grocery), as ``bench.shop_data`` writes it.
COMPLETE_JOURNEY_COLUMNS = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "transaction_timestamp",
)
#: The required columns of each format, to name the format a wrong header belongs to.
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "online-retail": ONLINE_RETAIL_COLUMNS,
    "generic": GENERIC_REQUIRED,
    "complete-journey": COMPLETE_JOURNEY_COLUMNS,
}

# Reject kinds (stable keys for counting and for tests); the reason text adds the detail.
WRONG_FIELD_COUNT = "wrong_field_count"
MISSING_VALUE = "missing_value"
BAD_NUMBER = "bad_number"
BAD_DATE = "bad_date"
ZERO_QUANTITY = "zero_quantity"
STOCK_ADJUSTMENT = "stock_adjustment"
NON_POSITIVE_PRICE = "non_positive_price"
INCONSISTENT_ORDER = "inconsistent_order"
ORDER_HELD_BACK = "order_held_back"
TOO_LONG = "too_long"
#: Malformed rows hold their whole order back (see ``RowParser.hold_back``).
_HOLDS_ORDER = frozenset(
    {WRONG_FIELD_COUNT, MISSING_VALUE, BAD_NUMBER, BAD_DATE, TOO_LONG, INCONSISTENT_ORDER}
)


UNSEEN = object()
new_line = tuple.__new__
PENNY = Decimal("0.01")
#: Longest values the database columns hold (ids and codes 64, titles 300, categories 100).
MAX_ID = 64
_MAX_TEXT = {"Description": 300, "title": 300, "category": 100, "Country": 64, "country": 64}


class OrderLine(NamedTuple):
    """One clean order line. ``quantity`` is > 0; returns have ``is_return=True``.

    Immutable and without a ``__dict__`` like a frozen slots dataclass, but a NamedTuple because it is
    built 536,000 times for the full UCI file: a frozen dataclass's ``__init__`` took about half of the
    whole parse (measured: 2.8 us against 0.6 us per line). Use ``line._replace(...)`` to derive one.
    """

    line_no: int
    order_id: str
    customer_id: str | None
    sku: str
    title: str | None
    category: str | None
    quantity: int
    unit_price: Decimal
    ordered_at: datetime
    country: str | None
    is_return: bool


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that was not imported: where, why (``kind`` is a stable key, ``reason`` says more), the row."""

    line_no: int
    reason: str
    raw: str
    kind: str
    field: str


@dataclass(slots=True)
class ParseCounts:
    """What happened to every data row: ``rows == lines + non_product_rows + rejected``."""

    rows: int = 0
    lines: int = 0
    sale_lines: int = 0
    return_lines: int = 0
    guest_rows: int = 0
    non_product_rows: int = 0
    rejected: int = 0
    rejected_by_kind: Counter[str] = field(default_factory=Counter)
    non_product_by_code: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class ParseResult:
    format: Format
    lines: list[OrderLine]
    rejects: list[Reject]
    counts: ParseCounts


@dataclass(slots=True)
class Chunk:
    """The outcome of up to ``chunk_rows`` consecutive data rows, rules 1 to 6 applied (7 and 8 need the
    whole file: :class:`OrderRules` in memory, the import's staging tables in the database)."""

    lines: list[OrderLine] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    #: ``(order id, line number, reject kind)`` of each malformed row that names its order (rule 8).
    holds: list[tuple[str, int, str]] = field(default_factory=list)


#: Data rows per chunk unless the caller says otherwise (``imports.chunk_rows``).
CHUNK_ROWS = 20_000
#: Entries a value cache (dates, prices, ids, titles) may reach before it is emptied at a chunk's end:
#: the caches speed up values that repeat from line to line, and must not grow with the file's length.
CACHE_ENTRIES = 5_000


def over_limit(key: str) -> str:
    """The end of a cap's message: which setting sets it (``imports.<key>``) and its variable."""
    return f"the limit set by imports.{key} ({env_var('imports', key)})"


class RowError(Exception):
    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.field = field
        self.reason = reason


def raw_row(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


class RowParser:
    """Shared row loop: converters with caches (dates and prices repeat a lot), counting, rejects."""

    format: Format
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    order_column: str

    def __init__(self, header: list[str]) -> None:
        names = [cell.strip() for cell in header]
        missing = [name for name in self.required if name not in names]
        if missing:
            hint = ""
            for other_format, other_columns in FORMAT_COLUMNS.items():
                if other_format != self.format and all(name in names for name in other_columns):
                    hint = f" (this looks like the {other_format} format)"
            raise InvalidInput(
                "header",
                f"missing column(s) {', '.join(missing)} for format {self.format}{hint}; "
                f"found: {', '.join(names)}",
            )
        self.width = len(names)
        self.index = {name: names.index(name) for name in (*self.required, *self.optional) if name in names}
        self.counts = ParseCounts()
        self._chunk = Chunk()
        self._dates: dict[str, datetime] = {}
        self._prices: dict[str, Decimal] = {}
        self._strings: dict[str, str] = {}
        self._texts: dict[str, dict[str, str]] = {name: {} for name in _MAX_TEXT}
        #: Emptied when they grow past CACHE_ENTRIES (see _next_chunk).
        self._caches: list[dict[str, Any]] = [self._dates, self._prices, self._strings, *self._texts.values()]

    def chunks(
        self,
        reader: Iterator[list[str]],
        report: Callable[[], None] | None = None,
        *,
        max_rows: int | None = None,
        source: str = "the file",
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[Chunk]:
        """Parse the rows of ``reader`` and yield their outcome every ``chunk_rows`` data rows.

        Only the chunk being filled and the bounded value caches are held: the memory does not depend on
        the file's length. Raises InvalidInput when the file turns out unusable (over ``max_rows``, not
        UTF-8, a CSV syntax error, a truncated gzip stream, no data rows) at whatever row that shows.
        """
        counts = self.counts
        row_cap = max_rows if max_rows is not None else -1
        order_column = self.index[self.order_column]
        line_no = 1
        next_chunk = chunk_rows
        try:
            for row in reader:
                line_no = reader.line_num  # type: ignore[attr-defined]
                if not row:
                    continue  # a blank line is not a row
                counts.rows += 1
                if counts.rows == row_cap + 1:
                    raise InvalidInput(
                        "file", f"{source} has more than {row_cap:,} data rows, " + over_limit("max_rows")
                    )
                if report is not None and not counts.rows & 0x1FFF:
                    report()
                if counts.rows > next_chunk:
                    next_chunk += chunk_rows
                    yield self._next_chunk()
                if len(row) != self.width:
                    reason = f"expected {self.width} fields, got {len(row)}"
                    self._reject(line_no, row, WRONG_FIELD_COUNT, "row", reason)
                    continue
                try:
                    line = self.parse(line_no, row)
                except RowError as err:
                    self._reject(line_no, row, err.kind, err.field, err.reason)
                    if err.kind in _HOLDS_ORDER and row[order_column].strip():
                        self._chunk.holds.append((row[order_column].strip(), line_no, err.kind))
                    continue
                if line is not None:
                    self._chunk.lines.append(line)
            if report is not None:
                report()
        except UnicodeDecodeError as exc:
            raise InvalidInput("file", f"not UTF-8 text after line {line_no}") from exc
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInput("file", f"cannot read the file after line {line_no}: {exc}") from exc
        except csv.Error as exc:
            raise InvalidInput("file", f"CSV syntax error after line {line_no}: {exc}") from exc
        if counts.rows == 0:
            raise InvalidInput("file", "the file has a header but no data rows")
        yield self._next_chunk()

    def _next_chunk(self) -> Chunk:
        done, self._chunk = self._chunk, Chunk()
        for cache in self._caches:
            if len(cache) > CACHE_ENTRIES:
                cache.clear()
        return done

    def parse(self, line_no: int, row: list[str]) -> OrderLine | None:
        raise NotImplementedError

    def _reject(self, line_no: int, row: list[str], kind: str, field: str, reason: str) -> None:
        self._chunk.rejects.append(Reject(line_no, reason, raw_row(row), kind, field))
        self.counts.rejected += 1
        self.counts.rejected_by_kind[kind] += 1

    # converters

    def intern(self, value: str) -> str:
        return self._strings.setdefault(value, value)

    def required_text(self, row: list[str], name: str) -> str:
        value = row[self.index[name]].strip()
        if not value:
            raise RowError(MISSING_VALUE, name, f"{name} is empty")
        return value

    def optional_text(self, row: list[str], name: str) -> str | None:
        i = self.index.get(name)
        if i is None:
            return None
        value = row[i].strip()
        if not value:
            return None
        if len(value) > _MAX_TEXT[name]:
            raise RowError(TOO_LONG, name, f"{name} is longer than {_MAX_TEXT[name]} characters")
        return self.intern(value)

    def identifier(self, value: str, name: str) -> str:
        if len(value) > MAX_ID:
            raise RowError(TOO_LONG, name, f"{name} is longer than {MAX_ID} characters")
        return self.intern(value)

    def integer(self, row: list[str], name: str) -> int:
        text = self.required_text(row, name)
        try:
            return int(text)
        except ValueError:
            raise RowError(BAD_NUMBER, name, f"{name} is not a whole number: {text!r}") from None

    def price(self, row: list[str], name: str) -> Decimal:
        text = self.required_text(row, name)
        value = self._prices.get(text)
        if value is None:
            try:
                value = Decimal(text)
            except InvalidOperation:
                raise RowError(BAD_NUMBER, name, f"{name} is not a number: {text!r}") from None
            if not value.is_finite():
                raise RowError(BAD_NUMBER, name, f"{name} is not a finite number: {text!r}")
            # Money is stored with 2 decimals: 0.001 would become 0.00, so it is judged after rounding.
            value = value.quantize(PENNY, rounding=ROUND_HALF_UP)
            self._prices[text] = value
        return value

    def timestamp(self, row: list[str], name: str) -> datetime:
        text = self.required_text(row, name)
        value = self._dates.get(text)
        if value is None:
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                raise RowError(BAD_DATE, name, f"{name} is not an ISO 8601 date/time: {text!r}") from None
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            self._dates[text] = value
        return value

    def customer(self, row: list[str], name: str) -> str | None:
        text = row[self.index[name]].strip()
        if not text:
            return None
        if text.endswith(".0") and text[:-2].isdigit():
            text = text[:-2]  # the UCI spreadsheet export writes CustomerID as a float
        return self.identifier(text, name)


def held_back_reason(order_id: str, cause_line: int, cause_kind: str) -> str:
    return f"order {order_id} held back: line {cause_line} of it was rejected ({cause_kind})"


def inconsistent_reason(order_id: str, what: str, first_line: int) -> str:
    return f"order {order_id} has another {what} on line {first_line}"


class OrderRules:
    """Rules 7 and 8 over a whole file held in memory (:func:`~domain.customers.sources.read_order_lines`,
    for evaluation); the import applies the same rules in SQL to its staging tables instead.

    Rule 7: a line whose order was first seen (first clean line) with another customer or kind is
    rejected. Rule 8: every other line of an order with a malformed or inconsistent row is held back, the
    cause being its earliest such row.
    """

    def __init__(self, fmt: Format, counts: ParseCounts, order_field: str) -> None:
        self.format = fmt
        self.counts = counts
        self.order_field = order_field
        self.lines: list[OrderLine] = []
        self.rejects: list[Reject] = []
        # order id -> (customer id, is_return, first line number)
        self._orders: dict[str, tuple[str | None, bool, int]] = {}
        # order id -> (line number, reject kind) of the earliest malformed or inconsistent row naming it
        self._held: dict[str, tuple[int, str]] = {}
        # line number -> (kind, reason) of rejected clean lines, whose raw text a second pass reads
        self._pending: dict[int, tuple[str, str]] = {}

    def add(self, chunk: Chunk) -> None:
        self.rejects.extend(chunk.rejects)
        for order_id, line_no, kind in chunk.holds:
            self._hold(order_id, line_no, kind)
        orders = self._orders
        for line in chunk.lines:
            seen = orders.get(line.order_id)
            if seen is None:
                orders[line.order_id] = (line.customer_id, line.is_return, line.line_no)
            elif seen[0] != line.customer_id or seen[1] != line.is_return:
                what = "customer" if seen[0] != line.customer_id else "sale/return kind"
                reason = inconsistent_reason(line.order_id, what, seen[2])
                self._pending[line.line_no] = (INCONSISTENT_ORDER, reason)
                self._hold(line.order_id, line.line_no, INCONSISTENT_ORDER)
                continue
            self.lines.append(line)

    def _hold(self, order_id: str, line_no: int, kind: str) -> None:
        cause = self._held.get(order_id)
        if cause is None or line_no < cause[0]:
            self._held[order_id] = (line_no, kind)

    def hold_back(self) -> list[int]:
        """Drop the lines of held orders; return the line numbers whose raw rows :meth:`finish` needs.

        Importing the rest of such an order would make the fix impossible: once the order exists, a
        corrected file skips it. Business-rule drops (zero price, non-products) do not hold an order back,
        as they would be dropped again.
        """
        if self._held:
            kept: list[OrderLine] = []
            for line in self.lines:
                cause = self._held.get(line.order_id)
                if cause is None:
                    kept.append(line)
                else:
                    reason = held_back_reason(line.order_id, *cause)
                    self._pending[line.line_no] = (ORDER_HELD_BACK, reason)
            self.lines[:] = kept
        return sorted(self._pending)

    def finish(self, raw_rows: dict[int, str]) -> ParseResult:
        counts = self.counts
        for line_no, (kind, reason) in self._pending.items():
            self.rejects.append(Reject(line_no, reason, raw_rows.get(line_no, ""), kind, self.order_field))
            counts.rejected += 1
            counts.rejected_by_kind[kind] += 1
        self.rejects.sort(key=lambda reject: reject.line_no)
        counts.lines = len(self.lines)
        counts.return_lines = sum(1 for line in self.lines if line.is_return)
        counts.sale_lines = counts.lines - counts.return_lines
        counts.guest_rows = sum(1 for line in self.lines if line.customer_id is None)
        return ParseResult(self.format, self.lines, self.rejects, counts)
