"""`giftrec import orders`: orders, returns, customers and products from a CSV file."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from api.cli.common import transaction
from domain.customers.parsing import FORMATS


@click.group("import", cls=AppGroup)
def import_() -> None:
    """Import data files into the database."""


@import_.command("orders")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="online-retail",
    show_default=True,
    help="online-retail: the UCI Online Retail columns; generic: customer_id, order_id, sku, quantity, "
    "unit_price, ordered_at [, title, category, country]; complete-journey: The Complete Journey's "
    "transactions (household_id, basket_id, product_id, quantity, sales_value, transaction_timestamp).",
)
@click.option(
    "--rejects",
    "rejects",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Where to write rejected rows [default: <instance>/rejects/<file name>.rejects.csv].",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary (errors still print).")
def import_orders_command(path: str, fmt: str, rejects: str | None, quiet: bool) -> None:
    """Import orders, returns and their customers and products from the CSV (or .csv.gz) file PATH.

    One transaction: an unusable file changes nothing; re-importing a file adds nothing. The reject file
    appears once the import has committed. The file is read in chunks of imports.chunk_rows rows, so the
    memory needed does not grow with its length; files over the imports.* caps (size, decompressed size,
    rows) are refused and nothing is applied.
    """
    from domain.customers.imports import import_orders

    settings = current_app.extensions["giftrec"].settings
    with transaction() as session:
        summary = import_orders(
            session,
            path,
            fmt,  # type: ignore[arg-type]
            reject_path=rejects,
            instance_dir=settings.server.instance_dir,
            progress=not quiet,
            limits=settings.imports,
        )
    if not quiet:
        click.echo(summary.as_text())
