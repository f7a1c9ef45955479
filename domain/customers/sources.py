"""Read order-line CSV files (UCI Online Retail or giftrec's generic format) into clean lines; no database.

Two formats are read:

``online-retail``
    The UCI "Online Retail" file: ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
    CustomerID, Country`` (any column order, extra columns ignored).

``generic``
    Required ``customer_id, order_id, sku, quantity, unit_price, ordered_at``; optional ``title,
    category, country``. ``ordered_at`` is ISO 8601; a time zone offset is converted to UTC, a value
    without one is taken as UTC. An empty ``customer_id`` is a guest sale. A negative ``quantity`` is a
    return; one order id holds either sales or returns, never both.

Either file may be plain or gzip-compressed (recognised by its content, not its name), UTF-8 (a BOM is
allowed). Line numbers are physical lines of the file: the header is line 1.

Cleaning rules, applied in this order to each row; every outcome is counted in :class:`ParseCounts`:

1. A row that cannot be read (wrong number of fields, a missing required value, text in a number, an
   unparsable date, a value longer than its database column) is rejected with its line number and reason.
2. ``online-retail`` only: non-product codes (postage, carriage, manual adjustments, discounts, samples,
   bank and Amazon charges, charity commission, bad-debt adjustments, gift vouchers; see
   :data:`NON_PRODUCT_CODES`) are not products: counted in ``non_product_rows`` and dropped, not rejected.
3. A zero quantity is rejected; so is a negative quantity on a non-cancellation UCI invoice (a stock
   adjustment: "damaged", "thrown away"...).
4. A unit price that is zero or negative once rounded to 0.01 (money is stored with 2 decimals) is
   rejected; the UCI file's three 0.001 "PADS" rows are among them.
5. Cancellation invoices (``C...``; kept whole as the order id) and negative generic quantities become
   return lines: ``quantity`` is always positive and ``is_return`` is True.
6. A row without a customer is kept as a guest line (``customer_id`` None): it counts for popularity but
   belongs to no customer. Counted in ``guest_rows``.
7. A row whose order id was already seen with another customer, or (generic) with the other sign, is
   rejected: an order belongs to one customer and is either a sale or a return.
8. An order with a malformed row (rule 1 or 7) is held back whole: its other lines are rejected too
   (``order_held_back``), so that re-importing the corrected file brings the complete order in.

Money is :class:`decimal.Decimal` (exact, as stored in ``Numeric`` columns); times are naive UTC
datetimes. UCI stock codes are upper-cased: the file spells 112 codes in both cases (``85123A`` and
``85123a``, the same product). UCI customer ids written as floats (``17850.0``) become ``17850``.

Whole-file problems (unreadable, binary, empty, not UTF-8, wrong header) raise
:class:`domain.errors.InvalidInput` with ``field="file"`` (or ``"format"`` / ``"header"``).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from domain.errors import InvalidInput

Format = Literal["online-retail", "generic"]
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

#: UCI stock codes that are charges, adjustments or vouchers, not products (checked against the full
#: file: these are every code that is not a 5-digit item number, except the DCGS* party bags and
#: PADS, which are real products). Compared after upper-casing.
NON_PRODUCT_CODES = frozenset(
    {
        "POST",  # postage
        "DOT",  # dotcom postage
        "C2",  # carriage
        "M",  # manual (also spelled "m")
        "D",  # discount
        "S",  # samples
        "B",  # adjust bad debt
        "BANK CHARGES",
        "AMAZONFEE",
        "CRUK",  # Cancer Research UK commission
    }
)
#: Gift vouchers: GIFT_0001_10, GIFT_0001_20, ... (after upper-casing).
NON_PRODUCT_PREFIXES = ("GIFT_0001_",)

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
#: Malformed rows hold their whole order back (see ``_Parser.hold_back``).
_HOLDS_ORDER = frozenset(
    {WRONG_FIELD_COUNT, MISSING_VALUE, BAD_NUMBER, BAD_DATE, TOO_LONG, INCONSISTENT_ORDER}
)

_SNIFF_BYTES = 8192
_UNSEEN = object()
_new_line = tuple.__new__
_PENNY = Decimal("0.01")
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


class _RowError(Exception):
    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.field = field
        self.reason = reason


def read_order_lines(path: str | Path, fmt: Format, *, progress: Progress | None = None) -> ParseResult:
    """Parse and clean every row of ``path``; raise InvalidInput when the file as a whole is unusable.

    ``progress(done, total)`` is called every few thousand rows with bytes of the file read so far
    (compressed bytes for a gzip file) and its size.
    """
    if fmt not in FORMATS:
        raise InvalidInput("format", f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    with _open_text(Path(path)) as (text, raw):
        reader = csv.reader(text)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidInput("file", f"cannot read the header line: {exc}") from exc
        if header is None or not any(cell.strip() for cell in header):
            raise InvalidInput("file", "the file is empty (no header line)")
        if fmt == "online-retail":
            parser: _Parser = _OnlineRetailParser(header)
        else:
            parser = _GenericParser(header)
        report: Callable[[], None] | None = None
        if progress is not None:
            size = os.fstat(raw.fileno()).st_size
            report = lambda: progress(raw.tell(), size)  # noqa: E731
        result = parser.run(reader, report)
    dropped = parser.hold_back()
    raw_rows: dict[int, list[str]] = {}
    if dropped:
        # Second pass, only when an order was held back: fetch the raw rows of its other lines.
        with _open_text(Path(path)) as (text, _):
            again = csv.reader(text)
            for row in again:
                if again.line_num in dropped:
                    raw_rows[again.line_num] = row
    parser.finish(raw_rows, dropped)
    if result.counts.rows == 0:
        raise InvalidInput("file", "the file has a header but no data rows")
    return result


# --- file opening -----------------------------------------------------------------------------------


@contextmanager
def _open_text(path: Path) -> Iterator[tuple[io.TextIOWrapper, io.BufferedReader]]:
    """Open plain or gzip CSV as UTF-8 text after checking it is neither missing, empty nor binary.

    Yields the text and the raw file under it (whose position tells how far the reading got).
    """
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InvalidInput("file", f"cannot open {path.name}: {exc.strerror or exc}") from exc
    # GzipFile does not close a file object it was given: ``raw`` is closed here, whatever happens.
    with raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        binary: io.BufferedReader | gzip.GzipFile = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else raw
        try:
            sniff = binary.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInput("file", f"{path.name} is not a readable gzip file: {exc}") from exc
        if not sniff:
            raise InvalidInput("file", f"{path.name} is empty")
        if b"\x00" in sniff:
            raise InvalidInput("file", f"{path.name} is a binary file, not CSV text")
        try:
            sniff.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the sniffed block is fine; anything earlier is not.
            if exc.start < len(sniff) - 3:
                raise InvalidInput("file", f"{path.name} is not UTF-8 text") from exc
        with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text:
            yield text, raw


def _raw_row(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


# --- parsers ----------------------------------------------------------------------------------------


class _Parser:
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
            other_format, other_columns = (
                ("generic", GENERIC_REQUIRED)
                if self.format == "online-retail"
                else ("online-retail", ONLINE_RETAIL_COLUMNS)
            )
            if all(name in names for name in other_columns):
                hint = f" (this looks like the {other_format} format)"
            raise InvalidInput(
                "header",
                f"missing column(s) {', '.join(missing)} for format {self.format}{hint}; "
                f"found: {', '.join(names)}",
            )
        self.width = len(names)
        self.index = {name: names.index(name) for name in (*self.required, *self.optional) if name in names}
        self.counts = ParseCounts()
        self.lines: list[OrderLine] = []
        self.rejects: list[Reject] = []
        self._dates: dict[str, datetime] = {}
        self._prices: dict[str, Decimal] = {}
        self._strings: dict[str, str] = {}
        self._texts: dict[str, dict[str, str]] = {name: {} for name in _MAX_TEXT}
        # order id -> (customer id, is_return, first line number)
        self._orders: dict[str, tuple[str | None, bool, int]] = {}
        # order id -> (line number, reject kind) of the first malformed row that names it
        self._held: dict[str, tuple[int, str]] = {}

    def run(self, reader: Iterator[list[str]], report: Callable[[], None] | None = None) -> ParseResult:
        counts = self.counts
        lines = self.lines
        orders = self._orders
        held = self._held
        order_column = self.index[self.order_column]
        line_no = 1
        try:
            for row in reader:
                line_no = reader.line_num  # type: ignore[attr-defined]
                if not row:
                    continue  # a blank line is not a row
                counts.rows += 1
                if report is not None and not counts.rows & 0x1FFF:
                    report()
                if len(row) != self.width:
                    reason = f"expected {self.width} fields, got {len(row)}"
                    self._reject(line_no, row, WRONG_FIELD_COUNT, "row", reason)
                    continue
                try:
                    line = self.parse(line_no, row)
                except _RowError as err:
                    self._reject(line_no, row, err.kind, err.field, err.reason)
                    if err.kind in _HOLDS_ORDER and row[order_column].strip():
                        held.setdefault(row[order_column].strip(), (line_no, err.kind))
                    continue
                if line is None:
                    continue
                seen = orders.get(line.order_id)
                if seen is None:
                    orders[line.order_id] = (line.customer_id, line.is_return, line_no)
                elif seen[0] != line.customer_id or seen[1] != line.is_return:
                    what = "customer" if seen[0] != line.customer_id else "sale/return kind"
                    reason = f"order {line.order_id} has another {what} on line {seen[2]}"
                    self._reject(line_no, row, INCONSISTENT_ORDER, self.order_column, reason)
                    held.setdefault(line.order_id, (line_no, INCONSISTENT_ORDER))
                    continue
                lines.append(line)
            if report is not None:
                report()
        except UnicodeDecodeError as exc:
            raise InvalidInput("file", f"not UTF-8 text after line {line_no}") from exc
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInput("file", f"cannot read the file after line {line_no}: {exc}") from exc
        except csv.Error as exc:
            raise InvalidInput("file", f"CSV syntax error after line {line_no}: {exc}") from exc
        return ParseResult(self.format, lines, self.rejects, counts)

    def hold_back(self) -> dict[int, str]:
        """Drop the lines of orders that had a malformed row; return {line number: reason} for them.

        Importing the rest of such an order would make the fix impossible: once the order exists, a
        corrected file skips it. Business-rule drops (zero price, non-products) do not hold an order back,
        as they would be dropped again.
        """
        if not self._held:
            return {}
        kept: list[OrderLine] = []
        dropped: dict[int, str] = {}
        for line in self.lines:
            cause = self._held.get(line.order_id)
            if cause is None:
                kept.append(line)
            else:
                dropped[line.line_no] = (
                    f"order {line.order_id} held back: line {cause[0]} of it was rejected ({cause[1]})"
                )
        self.lines[:] = kept
        return dropped

    def finish(self, raw_rows: dict[int, list[str]], dropped: dict[int, str]) -> None:
        for line_no, reason in dropped.items():
            self._reject(line_no, raw_rows.get(line_no, []), ORDER_HELD_BACK, self.order_column, reason)
        self.rejects.sort(key=lambda reject: reject.line_no)
        counts = self.counts
        counts.lines = len(self.lines)
        counts.return_lines = sum(1 for line in self.lines if line.is_return)
        counts.sale_lines = counts.lines - counts.return_lines
        counts.guest_rows = sum(1 for line in self.lines if line.customer_id is None)

    def parse(self, line_no: int, row: list[str]) -> OrderLine | None:
        raise NotImplementedError

    def _reject(self, line_no: int, row: list[str], kind: str, field: str, reason: str) -> None:
        self.rejects.append(Reject(line_no, reason, _raw_row(row), kind, field))
        self.counts.rejected += 1
        self.counts.rejected_by_kind[kind] += 1

    # converters

    def intern(self, value: str) -> str:
        return self._strings.setdefault(value, value)

    def required_text(self, row: list[str], name: str) -> str:
        value = row[self.index[name]].strip()
        if not value:
            raise _RowError(MISSING_VALUE, name, f"{name} is empty")
        return value

    def optional_text(self, row: list[str], name: str) -> str | None:
        i = self.index.get(name)
        if i is None:
            return None
        value = row[i].strip()
        if not value:
            return None
        if len(value) > _MAX_TEXT[name]:
            raise _RowError(TOO_LONG, name, f"{name} is longer than {_MAX_TEXT[name]} characters")
        return self.intern(value)

    def identifier(self, value: str, name: str) -> str:
        if len(value) > MAX_ID:
            raise _RowError(TOO_LONG, name, f"{name} is longer than {MAX_ID} characters")
        return self.intern(value)

    def integer(self, row: list[str], name: str) -> int:
        text = self.required_text(row, name)
        try:
            return int(text)
        except ValueError:
            raise _RowError(BAD_NUMBER, name, f"{name} is not a whole number: {text!r}") from None

    def price(self, row: list[str], name: str) -> Decimal:
        text = self.required_text(row, name)
        value = self._prices.get(text)
        if value is None:
            try:
                value = Decimal(text)
            except InvalidOperation:
                raise _RowError(BAD_NUMBER, name, f"{name} is not a number: {text!r}") from None
            if not value.is_finite():
                raise _RowError(BAD_NUMBER, name, f"{name} is not a finite number: {text!r}")
            # Money is stored with 2 decimals: 0.001 would become 0.00, so it is judged after rounding.
            value = value.quantize(_PENNY, rounding=ROUND_HALF_UP)
            self._prices[text] = value
        return value

    def timestamp(self, row: list[str], name: str) -> datetime:
        text = self.required_text(row, name)
        value = self._dates.get(text)
        if value is None:
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                raise _RowError(BAD_DATE, name, f"{name} is not an ISO 8601 date/time: {text!r}") from None
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


class _OnlineRetailParser(_Parser):
    format: Format = "online-retail"
    required = ONLINE_RETAIL_COLUMNS
    order_column = "InvoiceNo"

    def __init__(self, header: list[str]) -> None:
        super().__init__(header)
        ix = self.index
        self._ix = tuple(ix[name] for name in ONLINE_RETAIL_COLUMNS)
        self._customers: dict[str, object] = {}
        self._titles = self._texts["Description"]
        self._countries = self._texts["Country"]

    def parse(self, line_no: int, row: list[str]) -> OrderLine | None:
        # The hot path of a 541,909-row file: plain lookups and caches, no helper calls unless a value
        # is new or wrong.
        i_inv, i_code, i_desc, i_qty, i_date, i_price, i_cust, i_country = self._ix
        invoice = row[i_inv]
        sku = row[i_code].upper()
        # Characters up to " " are whitespace or control characters: strip only when an end has one.
        if (
            not invoice
            or not sku
            or invoice[0] <= " "
            or invoice[-1] <= " "
            or sku[0] <= " "
            or sku[-1] <= " "
        ):
            invoice = invoice.strip()
            sku = sku.strip()
            if not invoice:
                raise _RowError(MISSING_VALUE, "InvoiceNo", "InvoiceNo is empty")
            if not sku:
                raise _RowError(MISSING_VALUE, "StockCode", "StockCode is empty")
        if len(invoice) > MAX_ID or len(sku) > MAX_ID:
            self.identifier(invoice, "InvoiceNo")
            self.identifier(sku, "StockCode")
        try:
            quantity = int(row[i_qty])
        except ValueError:
            quantity = self.integer(row, "Quantity")
        price = self._prices.get(row[i_price])
        if price is None:
            price = self.price(row, "UnitPrice")
        ordered_at = self._dates.get(row[i_date])
        if ordered_at is None:
            ordered_at = self.timestamp(row, "InvoiceDate")
        customer_text = row[i_cust]
        customer_id = self._customers.get(customer_text, _UNSEEN)
        if customer_id is _UNSEEN:
            customer_id = self.customer(row, "CustomerID")
            self._customers[customer_text] = customer_id
        if sku in NON_PRODUCT_CODES or sku.startswith(NON_PRODUCT_PREFIXES):
            self.counts.non_product_rows += 1
            self.counts.non_product_by_code[sku] += 1
            return None
        is_return = invoice[0] == "C"
        if quantity <= 0:
            if quantity == 0:
                raise _RowError(ZERO_QUANTITY, "Quantity", "Quantity is 0")
            if not is_return:
                raise _RowError(
                    STOCK_ADJUSTMENT,
                    "Quantity",
                    f"negative Quantity {quantity} on a sale invoice (a stock adjustment, not a sale)",
                )
            quantity = -quantity
        if price <= 0:
            raise _RowError(
                NON_POSITIVE_PRICE, "UnitPrice", f"UnitPrice must be > 0 after rounding to 0.01, got {price}"
            )
        titles = self._titles
        description = row[i_desc]
        title = titles.get(description)
        if title is None:
            title = titles[description] = self.optional_text(row, "Description") or ""
        countries = self._countries
        country = row[i_country]
        country_value = countries.get(country)
        if country_value is None:
            country_value = countries[country] = self.optional_text(row, "Country") or ""
        # tuple.__new__ skips the NamedTuple's Python-level __new__: the same object, 10% less parse time.
        return _new_line(
            OrderLine,
            (
                line_no,
                invoice,
                customer_id,
                self._strings.setdefault(sku, sku),
                title or None,
                None,
                quantity,
                price,
                ordered_at,
                country_value or None,
                is_return,
            ),
        )


class _GenericParser(_Parser):
    format: Format = "generic"
    required = GENERIC_REQUIRED
    optional = GENERIC_OPTIONAL
    order_column = "order_id"

    def parse(self, line_no: int, row: list[str]) -> OrderLine | None:
        order_id = self.identifier(self.required_text(row, "order_id"), "order_id")
        sku = self.identifier(self.required_text(row, "sku"), "sku")
        quantity = self.integer(row, "quantity")
        price = self.price(row, "unit_price")
        ordered_at = self.timestamp(row, "ordered_at")
        customer_id = self.customer(row, "customer_id")
        if quantity == 0:
            raise _RowError(ZERO_QUANTITY, "quantity", "quantity is 0")
        if price <= 0:
            raise _RowError(
                NON_POSITIVE_PRICE,
                "unit_price",
                f"unit_price must be > 0 after rounding to 0.01, got {price}",
            )
        return OrderLine(
            line_no,
            order_id,
            customer_id,
            self.intern(sku),
            self.optional_text(row, "title"),
            self.optional_text(row, "category"),
            abs(quantity),
            price,
            ordered_at,
            self.optional_text(row, "country"),
            quantity < 0,
        )
