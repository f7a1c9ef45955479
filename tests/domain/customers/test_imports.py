"""Order import: exact counts on the bundled sample, rejects, whole-file errors, idempotence, generic."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from config import ImportSettings
from domain.customers import imports
from domain.customers.imports import ImportSummary, default_reject_path, import_orders
from domain.customers.sources import Format
from domain.db import session_scope
from domain.errors import InvalidInput
from domain.models import Customer, ImportRun, Order, OrderLine, Product

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "online_retail_sample.csv.gz"
DATA = Path(__file__).resolve().parents[2] / "data"

# Expected figures for the bundled sample, computed independently of giftrec with awk over the raw file
# (fields taken from both ends of the line because only Description may hold quoted commas):
#   zcat data/online_retail_sample.csv.gz | awk -F, '
#     NR == 1 { next } { rows++; inv = $1; code = toupper($2); qty = $(NF-4) + 0; price = $(NF-2) + 0
#       cust = $(NF-1)
#       if (code ~ /^(POST|DOT|C2|M|D|S|B|BANK CHARGES|AMAZONFEE|CRUK)$/ || code ~ /^GIFT_0001_/) {
#         nonprod++; next }
#       if (qty < 0 && inv !~ /^C/) { stockadj++; next }
#       if (price < 0.005) { badprice++; next }
#       kept++; if (cust == "") { guest++; guestorder[inv] } else customer[cust]
#       product[code]; order[inv]; if (inv ~ /^C/) { ret[inv]; retlines++ } }
#     END { ... count the keys of each array ... }'
# which printed: rows 69486 kept 69080 return_lines 1201 guest_rows 3525 non_product 328,
# rejected 78 (stock 44 price 34), customers 698 products 3314 orders 3249 returns 505 guest_orders 30.
SAMPLE_ROWS = 69_486
SAMPLE_LINES = 69_080
SAMPLE_RETURN_LINES = 1_201
SAMPLE_GUEST_ROWS = 3_525
SAMPLE_NON_PRODUCT = 328
SAMPLE_REJECTED = 78
SAMPLE_STOCK_ADJUSTMENTS = 44
SAMPLE_BAD_PRICES = 34
SAMPLE_CUSTOMERS = 698
SAMPLE_PRODUCTS = 3_314
SAMPLE_ORDERS = 3_249
SAMPLE_RETURNS = 505
SAMPLE_GUEST_ORDERS = 30

TABLES = (Customer, Product, Order, OrderLine, ImportRun)


def table_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0 for m in TABLES}


def run_import(
    sessions: sessionmaker[Session], path: Path, fmt: Format = "online-retail", **kwargs: object
) -> ImportSummary:
    with session_scope(sessions) as s:
        return import_orders(s, path, fmt, **kwargs)  # type: ignore[arg-type]


def read_rejects(path: str | Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_sample_import_gives_exact_known_counts_and_follows_the_cleaning_rules(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    summary = run_import(sessions, SAMPLE, instance_dir=tmp_path)

    assert summary.rows == SAMPLE_ROWS
    assert summary.lines == SAMPLE_LINES
    assert summary.return_lines == SAMPLE_RETURN_LINES
    assert summary.guest_rows == SAMPLE_GUEST_ROWS
    assert summary.non_product_rows == SAMPLE_NON_PRODUCT
    assert summary.rejected == SAMPLE_REJECTED
    assert summary.rejected_by_kind == {
        "stock_adjustment": SAMPLE_STOCK_ADJUSTMENTS,
        "non_positive_price": SAMPLE_BAD_PRICES,
    }
    assert summary.rows == summary.lines + summary.non_product_rows + summary.rejected
    assert summary.customers_created == SAMPLE_CUSTOMERS
    assert summary.products_created == SAMPLE_PRODUCTS
    assert summary.orders_created == SAMPLE_ORDERS
    assert summary.returns_created == SAMPLE_RETURNS
    assert summary.guest_orders_created == SAMPLE_GUEST_ORDERS
    assert summary.order_lines_created == SAMPLE_LINES

    assert table_counts(sessions) == {
        "customers": SAMPLE_CUSTOMERS,
        "products": SAMPLE_PRODUCTS,
        "orders": SAMPLE_ORDERS,
        "order_lines": SAMPLE_LINES,
        "import_runs": 1,
    }
    with sessions() as s:
        assert s.scalar(select(func.count()).where(Order.kind == "return")) == SAMPLE_RETURNS
        guest_lines = s.scalar(
            select(func.count()).select_from(OrderLine).join(Order).where(Order.customer_id.is_(None))
        )
        assert guest_lines == SAMPLE_GUEST_ROWS
        return_lines = s.scalar(
            select(func.count()).select_from(OrderLine).join(Order).where(Order.kind == "return")
        )
        assert return_lines == SAMPLE_RETURN_LINES
        assert s.scalar(select(func.min(OrderLine.quantity))) == 1  # returns are stored positive
        run = s.scalars(select(ImportRun)).one()
        assert run.id == summary.import_run_id
        assert run.counts["orders_created"] == SAMPLE_ORDERS
        assert run.finished_at is not None

    rejects = read_rejects(summary.reject_path or "")
    assert summary.reject_path == str(default_reject_path(SAMPLE, tmp_path))
    assert len(rejects) == SAMPLE_REJECTED
    # The first zero-price row of the sample (checked with: zcat ... | grep -n ',0.0,' | head -1).
    assert rejects[0] == {
        "line_no": "78",
        "kind": "non_positive_price",
        "field": "UnitPrice",
        "reason": "UnitPrice must be > 0 after rounding to 0.01, got 0.00",
        "raw": "536414,22139,,56,2010-12-01 11:52:00,0.0,,United Kingdom",
    }

    # The cleaning rules, on the same import (one sample import per test keeps the suite fast).
    with sessions() as s:
        skus = set(s.scalars(select(Product.sku)))
        assert not skus & {"POST", "DOT", "M", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}
        assert not {sku for sku in skus if sku.startswith("GIFT_")}
        assert "PADS" not in skus  # its only sales are priced 0.001
        assert "85123A" in skus and "85123a" not in skus  # the file spells it both ways

        # 21928 in the sample (awk over its kept lines): titles "JUMBO BAG SCANDINAVIAN BLUE PAISLEY" x69
        # and "JUMBO BAG SCANDINAVIAN PAISLEY" x12; first sale 2010-12-03 15:05, latest sale 2011-11-29
        # 15:06 at 2.08.
        bag = s.scalars(select(Product).where(Product.sku == "21928")).one()
        assert bag.title == "JUMBO BAG SCANDINAVIAN BLUE PAISLEY"
        assert bag.price == Decimal("2.08")
        assert bag.created_at == dt.datetime(2010, 12, 3, 15, 5)
        assert (bag.currency, bag.is_active, bag.in_stock, bag.category) == ("GBP", True, True, None)

        # C536506 is a one-line cancellation of customer 17897 (zcat ... | grep -n '^C' | head).
        cancellation = s.scalars(select(Order).where(Order.external_id == "C536506")).one()
        assert cancellation.kind == "return"
        assert cancellation.customer_id is not None
        customer = s.get(Customer, cancellation.customer_id)
        assert customer is not None and customer.external_id == "17897"
        assert [(line.quantity, line.unit_price) for line in cancellation.lines] == [(6, Decimal("4.25"))]


def test_reimporting_the_sample_adds_nothing(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    run_import(sessions, SAMPLE, instance_dir=tmp_path)
    before = table_counts(sessions)

    again = run_import(sessions, SAMPLE, instance_dir=tmp_path)

    assert table_counts(sessions) == before
    assert (again.customers_created, again.products_created, again.orders_created) == (0, 0, 0)
    assert again.order_lines_created == 0
    assert again.orders_skipped == SAMPLE_ORDERS
    assert again.lines_skipped == SAMPLE_LINES
    assert again.import_run_id is None
    assert "skipped" in again.as_text()


def test_broken_rows_are_rejected_with_line_and_reason_and_the_rest_imported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rejects_file = tmp_path / "out" / "broken.rejects.csv"
    summary = run_import(sessions, DATA / "broken_rows.csv", reject_path=rejects_file)

    assert (summary.rows, summary.lines, summary.non_product_rows, summary.rejected) == (14, 4, 1, 9)
    rejects = read_rejects(rejects_file)
    assert [(r["line_no"], r["kind"], r["field"]) for r in rejects] == [
        ("4", "bad_date", "InvoiceDate"),
        ("5", "bad_number", "Quantity"),
        ("7", "wrong_field_count", "row"),
        ("8", "order_held_back", "InvoiceNo"),
        ("9", "bad_number", "UnitPrice"),
        ("10", "missing_value", "StockCode"),
        ("13", "non_positive_price", "UnitPrice"),
        ("14", "stock_adjustment", "Quantity"),
        ("15", "non_positive_price", "UnitPrice"),
    ]
    by_line = {r["line_no"]: r for r in rejects}
    assert by_line["4"]["reason"] == "InvoiceDate is not an ISO 8601 date/time: '2010-13-45 08:34:00'"
    assert by_line["5"]["reason"] == "Quantity is not a whole number: 'six'"
    assert by_line["7"]["reason"] == "expected 8 fields, got 9"
    assert by_line["8"]["reason"] == "order 537005 held back: line 9 of it was rejected (bad_number)"
    assert (
        by_line["9"]["raw"]
        == "537005,22748,POPPY'S PLAYHOUSE KITCHEN,6,2010-12-01 08:45:00,£2.10,12583,France"
    )

    with sessions() as s:
        orders = {external: kind for external, kind in s.execute(select(Order.external_id, Order.kind))}
        assert orders == {"537000": "sale", "537003": "sale", "C537007": "return"}
        assert set(s.scalars(select(Product.sku))) == {"85123A", "71053", "22633"}
        assert set(s.scalars(select(Customer.external_id))) == {"17850"}  # "17850.0" is the same one


def test_fixing_a_rejected_row_brings_the_whole_order_in(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    run_import(sessions, DATA / "broken_rows.csv", instance_dir=tmp_path)
    fixed = tmp_path / "fixed.csv"
    fixed.write_text((DATA / "broken_rows.csv").read_text("utf-8").replace("£2.10", "2.10"), "utf-8")

    summary = run_import(sessions, fixed, instance_dir=tmp_path)

    assert summary.orders_created == 1
    assert summary.orders_skipped == 3
    with sessions() as s:
        order = s.scalars(select(Order).where(Order.external_id == "537005")).one()
        assert sorted((line.line_no, line.quantity) for line in order.lines) == [(1, 6), (2, 6)]


def test_a_file_whose_last_reject_is_held_back_by_its_order_imports(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Regression (PostgreSQL): the server-side cursor over the rows whose raw text is read again (those
    the order rules rejected) was left open when the file's last rejected rows were such rows, so dropping
    the staging tables failed ("cannot DROP INDEX ... being used by active queries"), and the import."""
    header = "customer_id,order_id,sku,quantity,unit_price,ordered_at,title,category,country\n"
    path = tmp_path / "held_last.csv"
    path.write_text(
        header
        + "C-1,W-1,SKU-A,1,2.00,2011-03-01T10:00:00Z,Lamp,,UK\n"
        + "C-1,W-2,SKU-B,1,3.00,2011-03-02T10:00:00Z,Mug,,UK\n"
        + "C-1,W-2,SKU-A,one,2.00,2011-03-02T10:00:00Z,Lamp,,UK\n"
        + "C-1,W-2,SKU-B,1,3.00,2011-03-02T10:00:00Z,Mug,,UK\n",
        "utf-8",
    )

    summary = run_import(sessions, path, "generic", instance_dir=tmp_path)

    assert (summary.orders_created, summary.rejected_by_kind) == (1, {"bad_number": 1, "order_held_back": 2})
    rejects = read_rejects(summary.reject_path or "")
    kinds = [(r["line_no"], r["kind"]) for r in rejects]
    assert kinds == [("3", "order_held_back"), ("4", "bad_number"), ("5", "order_held_back")]
    assert rejects[-1]["raw"] == "C-1,W-2,SKU-B,1,3.00,2011-03-02T10:00:00Z,Mug,,UK"


@pytest.mark.parametrize(
    ("name", "expected_kinds"),
    [
        ("bad_dates.csv", ["bad_date", "bad_date", "bad_date", "missing_value"]),
        ("text_in_numbers.csv", ["bad_number", "bad_number", "bad_number", "bad_number"]),
    ],
)
def test_a_file_of_broken_rows_leaves_the_database_as_it_was(
    sessions: sessionmaker[Session], tmp_path: Path, name: str, expected_kinds: list[str]
) -> None:
    run_import(sessions, DATA / "generic_orders.csv", "generic", instance_dir=tmp_path)
    before = table_counts(sessions)

    summary = run_import(sessions, DATA / name, instance_dir=tmp_path)

    assert table_counts(sessions) == before
    assert summary.lines == 0 and summary.rejected == 4
    rejects = read_rejects(default_reject_path(DATA / name, tmp_path))
    assert [(r["line_no"], r["kind"]) for r in rejects] == list(
        zip(["2", "3", "4", "5"], expected_kinds, strict=True)
    )


@pytest.mark.parametrize(
    ("name", "fmt", "field", "message"),
    [
        ("empty.csv", "online-retail", "file", "empty.csv is empty"),
        ("binary.csv", "online-retail", "file", "binary.csv is a binary file, not CSV text"),
        ("header_only.csv", "online-retail", "file", "the file has a header but no data rows"),
        (
            "missing_columns.csv",
            "online-retail",
            "header",
            "missing column(s) UnitPrice for format online-retail",
        ),
        ("generic_orders.csv", "online-retail", "header", "(this looks like the generic format)"),
        ("broken_rows.csv", "generic", "header", "(this looks like the online-retail format)"),
        ("no_such_file.csv", "online-retail", "file", "cannot open no_such_file.csv"),
        ("broken_rows.csv", "excel", "format", "unknown format 'excel'"),
    ],
)
def test_an_unusable_file_raises_and_changes_nothing(
    sessions: sessionmaker[Session], tmp_path: Path, name: str, fmt: Format, field: str, message: str
) -> None:
    run_import(sessions, DATA / "generic_orders.csv", "generic", instance_dir=tmp_path)
    before = table_counts(sessions)

    with pytest.raises(InvalidInput) as raised:
        run_import(sessions, DATA / name, fmt, instance_dir=tmp_path / "other")

    assert raised.value.field == field
    assert message in raised.value.detail
    assert table_counts(sessions) == before
    assert not (tmp_path / "other").exists()  # no reject file either


def test_a_truncated_gzip_file_raises_and_changes_nothing(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(SAMPLE.read_bytes()[:50_000])
    before = table_counts(sessions)

    with pytest.raises(InvalidInput) as raised:
        run_import(sessions, truncated, instance_dir=tmp_path)

    assert raised.value.field == "file"
    assert "cannot read the file after line" in raised.value.detail
    assert table_counts(sessions) == before


def test_generic_format_import(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    summary = run_import(sessions, DATA / "generic_orders.csv", "generic", instance_dir=tmp_path)

    assert (summary.rows, summary.lines, summary.return_lines, summary.guest_rows) == (6, 5, 1, 1)
    assert summary.rejected_by_kind == {"non_positive_price": 1}
    assert (summary.customers_created, summary.products_created, summary.orders_created) == (2, 2, 4)
    with sessions() as s:
        orders = {o.external_id: o for o in s.scalars(select(Order))}
        assert set(orders) == {"W-1001", "W-1002", "W-1003", "R-1001"}
        assert orders["R-1001"].kind == "return"
        assert orders["W-1002"].customer_id is None
        assert orders["W-1001"].ordered_at == dt.datetime(2011, 3, 1, 7, 15)  # +03:00 stored as UTC
        candle = s.scalars(select(Product).where(Product.sku == "SKU-CANDLE")).one()
        # most frequent title; price of the latest sale (W-1003, 7 March), created at the first sale
        assert (candle.title, candle.category, candle.price) == ("Amber candle", "Home", Decimal("12.50"))
        assert candle.created_at == dt.datetime(2011, 3, 1, 7, 15)


def test_summary_text_and_dict(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    summary = run_import(sessions, DATA / "broken_rows.csv", instance_dir=tmp_path)

    data = summary.as_dict()
    assert data["orders_created"] == 3 and data["rejected_by_kind"]["bad_number"] == 2
    text = summary.as_text()
    assert "rejected rows                9" in text
    assert str(default_reject_path(DATA / "broken_rows.csv", tmp_path)) in text
    assert "POST 1" in text


def test_an_import_leaves_planner_statistics_on_postgresql(sessions, tmp_path):  # type: ignore[no-untyped-def]
    """Regression: on PostgreSQL a freshly filled table is planned from empty-table estimates until
    autovacuum analyses it; one join over 21,000 fresh order lines once ran for over 20 minutes (CI). The
    import analyses the tables it wrote, in its own transaction."""
    with sessions() as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite plans these queries without statistics (the import runs no ANALYZE there)")
    with session_scope(sessions) as s:
        import_orders(s, SAMPLE, "online-retail", instance_dir=tmp_path)
        estimates = dict(
            s.execute(
                text(
                    "SELECT relname, reltuples FROM pg_class WHERE relname IN "
                    "('customers', 'products', 'orders', 'order_lines')"
                )
            ).all()
        )
    assert estimates["order_lines"] == pytest.approx(SAMPLE_LINES, rel=0.05)
    assert estimates["customers"] == pytest.approx(SAMPLE_CUSTOMERS, rel=0.05)
    assert estimates["products"] == pytest.approx(SAMPLE_PRODUCTS, rel=0.05)
    assert estimates["orders"] == pytest.approx(SAMPLE_ORDERS, rel=0.05)


@pytest.mark.parametrize(
    ("limits", "setting"),
    [
        (ImportSettings(max_rows=10), "imports.max_rows"),
        (ImportSettings(max_file_bytes=500), "imports.max_file_bytes"),
    ],
)
def test_a_file_over_a_cap_changes_nothing_and_writes_no_reject_file(
    sessions: sessionmaker[Session], tmp_path: Path, limits: ImportSettings, setting: str
) -> None:
    before = table_counts(sessions)

    with pytest.raises(InvalidInput) as raised:
        run_import(sessions, DATA / "broken_rows.csv", instance_dir=tmp_path, limits=limits)

    assert raised.value.field == "file" and setting in raised.value.detail
    assert table_counts(sessions) == before
    assert not tmp_path.joinpath("rejects").exists()


#: Text that a hand-made COPY (tab-separated, ``\N`` for NULL, ``\.`` to end) would mangle or cut short.
AWKWARD = {
    "SKU-QUOTES": ('He said "hi", it\'s \\N', "Tab\there"),
    "SKU-LINES": ("first line\nsecond\r\nthird", None),
    "SKU-SLASH": ("back\\slash \\t and \\\\ end", "日本 🎁"),
    "SKU-END": ("\\.", "\\N"),
}


def test_awkward_text_reaches_the_database_and_the_reject_file_unchanged(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Staged chunks go in with COPY on PostgreSQL (executemany elsewhere): quotes, tabs, backslashes,
    newlines and unicode in a value, and NULLs (a guest, a blank category or country), arrive as they were
    in the file, and so does the raw text of a rejected row."""
    header = ["customer_id", "order_id", "sku", "quantity", "unit_price", "ordered_at", "title"]
    header += ["category", "country"]
    rows = [
        [
            "Ünïcode-1",
            "W-1",
            "SKU-QUOTES",
            "1",
            "2.50",
            "2011-03-01T10:00:00Z",
            *AWKWARD["SKU-QUOTES"],
            "Côte",
        ],
        ["", "W-2", "SKU-LINES", "2", "3.00", "2011-03-02 09:30:00", AWKWARD["SKU-LINES"][0], "", ""],
        ["C\\2", "W-3", "SKU-SLASH", "1", "1.25", "2011-03-03T08:00:00+01:00", *AWKWARD["SKU-SLASH"], "Рос"],
        ["C\\2", "W-3", "SKU-END", "4", "0.99", "2011-03-03T08:00:00+01:00", *AWKWARD["SKU-END"], "Рос"],
        ["C-3", "W-4", "SKU-X", "1", "a\tb\\N\nc", "2011-03-04T08:00:00Z", "x", "", ""],
    ]
    path = tmp_path / "awkward.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    rejects_file = tmp_path / "awkward.rejects.csv"

    summary = run_import(sessions, path, "generic", reject_path=rejects_file)

    assert (summary.lines, summary.rejected, summary.order_lines_created) == (4, 1, 4)
    with sessions() as s:
        products = {p.sku: (p.title, p.category) for p in s.scalars(select(Product))}
        assert products == AWKWARD
        customers = {c.external_id: c.country for c in s.scalars(select(Customer))}
        assert customers == {"Ünïcode-1": "Côte", "C\\2": "Рос"}
        orders = {o.external_id: o for o in s.scalars(select(Order))}
        assert orders["W-2"].customer_id is None and orders["W-2"].country is None
        assert orders["W-3"].ordered_at == dt.datetime(2011, 3, 3, 7, 0)
        prices = s.execute(
            select(Product.sku, OrderLine.unit_price, OrderLine.quantity).join(
                OrderLine, OrderLine.product_id == Product.id
            )
        ).all()
        assert sorted(prices) == [
            ("SKU-END", Decimal("0.99"), 4),
            ("SKU-LINES", Decimal("3.00"), 2),
            ("SKU-QUOTES", Decimal("2.50"), 1),
            ("SKU-SLASH", Decimal("1.25"), 1),
        ]
    (reject,) = read_rejects(rejects_file)
    assert (reject["kind"], reject["field"]) == ("bad_number", "unit_price")
    assert reject["reason"] == "unit_price is not a number: 'a\\tb\\\\N\\nc'"
    raw = io.StringIO()
    csv.writer(raw, lineterminator="").writerow(rows[-1])
    assert reject["raw"] == raw.getvalue()


def test_new_products_follow_the_title_price_and_creation_rules(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The rules of a new product, each with its tie: the most used title and category (the first used
    among equals, the sku when all are blank), the price of the latest sale (the later line among sales at
    the same time; returns only for a sku never sold), created at the first sale (the first return, never
    sold); the lines of an order held back by a broken row say nothing about its products."""
    header = ["customer_id", "order_id", "sku", "quantity", "unit_price", "ordered_at", "title"]
    header += ["category", "country"]
    rows = [
        ["C-1", "S-1", "SKU-A", "1", "1.00", "2011-03-01T10:00:00Z", "Lamp", "Light", "UK"],
        ["C-1", "S-2", "SKU-A", "1", "3.00", "2011-03-03T10:00:00Z", "Desk lamp", "", "UK"],
        ["C-1", "S-3", "SKU-A", "1", "4.00", "2011-03-03T10:00:00Z", "Desk lamp", "Home", "UK"],
        ["C-1", "S-4", "SKU-A", "1", "2.00", "2011-03-02T10:00:00Z", "Lamp", "Home", "UK"],
        ["C-1", "R-1", "SKU-A", "-1", "9.00", "2011-03-09T10:00:00Z", "", "Home", "UK"],
        ["C-1", "R-2", "SKU-A", "-1", "8.00", "2011-02-01T10:00:00Z", "", "", "UK"],
        ["C-1", "H-1", "SKU-A", "1", "5.00", "2011-03-20T10:00:00Z", "Held lamp", "Held", "UK"],
        ["C-1", "H-1", "SKU-A", "one", "5.00", "2011-03-20T10:00:00Z", "Held lamp", "Held", "UK"],
        ["C-1", "H-1", "SKU-A", "1", "5.00", "2011-03-20T10:00:00Z", "Held lamp", "Held", "UK"],
        ["C-1", "H-1", "SKU-A", "1", "5.00", "2011-03-20T10:00:00Z", "Held lamp", "Held", "UK"],
        ["C-2", "R-3", "SKU-B", "-1", "2.00", "2011-04-02T10:00:00Z", "", "Kitchen", "UK"],
        ["C-2", "R-4", "SKU-B", "-1", "3.00", "2011-04-05T10:00:00Z", "", "Garden", "UK"],
        ["C-2", "R-5", "SKU-B", "-2", "2.50", "2011-04-05T10:00:00Z", "", "", "UK"],
        ["C-2", "S-5", "SKU-C", "1", "7.00", "2011-04-01T10:00:00Z", "", "", "UK"],
    ]
    path = tmp_path / "products.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])

    summary = run_import(sessions, path, "generic", instance_dir=tmp_path)

    assert (summary.products_created, summary.rejected) == (3, 4)
    with sessions() as s:
        products = {p.sku: (p.title, p.category, p.price, p.created_at) for p in s.scalars(select(Product))}
    assert products == {
        # Lamp x2 and Desk lamp x2 (Lamp first); Home x3; the later of the two sales of 3 March; the
        # first sale, not the earlier return; the held-back H-1's three "Held lamp" lines not counted
        "SKU-A": ("Lamp", "Home", Decimal("4.00"), dt.datetime(2011, 3, 1, 10, 0)),
        # never sold: the later of the two returns of 5 April, created at the first return
        "SKU-B": ("SKU-B", "Kitchen", Decimal("2.50"), dt.datetime(2011, 4, 2, 10, 0)),
        "SKU-C": ("SKU-C", None, Decimal("7.00"), dt.datetime(2011, 4, 1, 10, 0)),
    }


LINE_FOREIGN_KEYS = text(
    "SELECT conname, pg_get_constraintdef(oid), convalidated, oid FROM pg_constraint "
    "WHERE conrelid = 'order_lines'::regclass AND contype = 'f' ORDER BY conname"
)


def test_a_large_import_checks_the_order_lines_foreign_keys_once_and_keeps_them(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an import large next to the order lines table adds its lines without the two
    foreign keys and adds them back (one check over the table): same names and definitions, validated,
    enforced; an import small next to the table keeps them (row-by-row checks)."""
    with sessions() as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite checks foreign keys row by row, cheaply, in its own process")
        before = s.execute(LINE_FOREIGN_KEYS).all()
    monkeypatch.setattr(imports, "BULK_FOREIGN_KEY_LINES", 1)

    summary = run_import(sessions, SAMPLE, instance_dir=tmp_path)

    assert summary.order_lines_created == SAMPLE_LINES
    with sessions() as s:
        after = s.execute(LINE_FOREIGN_KEYS).all()
        assert [row[:3] for row in after] == [row[:3] for row in before]
        assert {row[1].split(" REFERENCES ")[1].split("(")[0] for row in after} == {"orders", "products"}
        assert all(row[2] for row in after)  # validated
        assert not {row[3] for row in after} & {row[3] for row in before}  # dropped and added back
        order_id = s.scalars(select(Order.id).limit(1)).one()
        s.add(OrderLine(order_id=order_id, line_no=999, product_id=-1, quantity=1, unit_price=1))
        with pytest.raises(IntegrityError):
            s.flush()

    summary = run_import(sessions, DATA / "generic_orders.csv", "generic", instance_dir=tmp_path)

    assert summary.order_lines_created == 5  # 5 lines * BULK_FOREIGN_KEY_RATIO < the sample's lines
    with sessions() as s:
        assert s.execute(LINE_FOREIGN_KEYS).all() == after


def test_an_import_on_postgresql_runs_without_jit_and_sets_it_back(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The import's statements run without JIT compilation; the caller's transaction gets its own
    setting back, after an import and after a refused file."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO products"):
            probe = conn.connection.dbapi_connection.cursor()
            probe.execute("SHOW jit")
            seen.append(probe.fetchone()[0])
            probe.close()

    with session_scope(sessions) as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("JIT compilation is PostgreSQL's")
        s.execute(text("SET LOCAL jit = on"))
        event.listen(s.connection(), "after_cursor_execute", record)
        import_orders(s, DATA / "generic_orders.csv", "generic", instance_dir=tmp_path)
        assert seen == ["off"]
        assert s.execute(text("SHOW jit")).scalar() == "on"
        with pytest.raises(InvalidInput):
            import_orders(s, DATA / "header_only.csv", "generic", instance_dir=tmp_path)
        assert s.execute(text("SHOW jit")).scalar() == "on"
