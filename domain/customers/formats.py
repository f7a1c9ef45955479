"""The order-file formats: UCI Online Retail, generic CSV, The Complete Journey (rules: ``sources``)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP

from domain.customers.parsing import (
    COMPLETE_JOURNEY_COLUMNS,
    GENERIC_OPTIONAL,
    GENERIC_REQUIRED,
    MAX_ID,
    MISSING_VALUE,
    NON_POSITIVE_PRICE,
    ONLINE_RETAIL_COLUMNS,
    PENNY,
    STOCK_ADJUSTMENT,
    UNSEEN,
    ZERO_QUANTITY,
    Format,
    OrderLine,
    RowError,
    RowParser,
    new_line,
)

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


class OnlineRetailParser(RowParser):
    format: Format = "online-retail"
    required = ONLINE_RETAIL_COLUMNS
    order_column = "InvoiceNo"

    def __init__(self, header: list[str]) -> None:
        super().__init__(header)
        ix = self.index
        self._ix = tuple(ix[name] for name in ONLINE_RETAIL_COLUMNS)
        self._customers: dict[str, object] = {}
        self._caches.append(self._customers)
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
                raise RowError(MISSING_VALUE, "InvoiceNo", "InvoiceNo is empty")
            if not sku:
                raise RowError(MISSING_VALUE, "StockCode", "StockCode is empty")
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
        customer_id = self._customers.get(customer_text, UNSEEN)
        if customer_id is UNSEEN:
            customer_id = self.customer(row, "CustomerID")
            self._customers[customer_text] = customer_id
        if sku in NON_PRODUCT_CODES or sku.startswith(NON_PRODUCT_PREFIXES):
            self.counts.non_product_rows += 1
            self.counts.non_product_by_code[sku] += 1
            return None
        is_return = invoice[0] == "C"
        if quantity <= 0:
            if quantity == 0:
                raise RowError(ZERO_QUANTITY, "Quantity", "Quantity is 0")
            if not is_return:
                raise RowError(
                    STOCK_ADJUSTMENT,
                    "Quantity",
                    f"negative Quantity {quantity} on a sale invoice (a stock adjustment, not a sale)",
                )
            quantity = -quantity
        if price <= 0:
            raise RowError(
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
        return new_line(
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


class GenericParser(RowParser):
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
            raise RowError(ZERO_QUANTITY, "quantity", "quantity is 0")
        if price <= 0:
            raise RowError(
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


class CompleteJourneyParser(RowParser):
    """The transactions of "The Complete Journey": a household's basket lines of a grocery chain.

    household -> customer, basket -> order, product -> sku; the unit price is ``sales_value / quantity``
    (what the household paid, after discounts). A zero quantity (the file's coupon and adjustment lines)
    and a price that rounds to 0.00 are rejected as in the other formats; a negative quantity is a return.
    """

    format: Format = "complete-journey"
    required = COMPLETE_JOURNEY_COLUMNS
    order_column = "basket_id"

    def parse(self, line_no: int, row: list[str]) -> OrderLine | None:
        order_id = self.identifier(self.required_text(row, "basket_id"), "basket_id")
        sku = self.identifier(self.required_text(row, "product_id"), "product_id")
        quantity = self.integer(row, "quantity")
        paid = self.price(row, "sales_value")
        ordered_at = self.timestamp(row, "transaction_timestamp")
        customer_id = self.customer(row, "household_id")
        if quantity == 0:
            raise RowError(ZERO_QUANTITY, "quantity", "quantity is 0")
        price = (abs(paid) / abs(quantity)).quantize(PENNY, rounding=ROUND_HALF_UP)
        if price <= 0 or (paid < 0) != (quantity < 0):
            raise RowError(
                NON_POSITIVE_PRICE,
                "sales_value",
                f"sales_value / quantity must be > 0 after rounding to 0.01, got {paid} / {quantity}",
            )
        return new_line(
            OrderLine,
            (
                line_no,
                order_id,
                customer_id,
                sku,
                None,
                None,
                abs(quantity),
                price,
                ordered_at,
                None,
                quantity < 0,
            ),
        )
