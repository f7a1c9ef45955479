"""`giftrec lifecycle lifetimes`: replacement lifetimes per category, learned from the data vs configured."""

from __future__ import annotations

import datetime as dt

import click
from flask import current_app
from flask.cli import AppGroup

from api.cli.common import transaction


@click.group(cls=AppGroup)
def lifecycle() -> None:
    """The lifecycle engine's rules as the data makes them (`giftrec jobs run lifecycle` runs it)."""


def _window(window: tuple[int, int] | None) -> str:
    return "-" if window is None else f"{window[0]}-{window[1]}"


@lifecycle.command("lifetimes")
@click.option(
    "--on",
    "on",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Learn from purchases up to this day (default: now).",
)
def lifetimes(on: dt.datetime | None) -> None:
    """Per category: repurchase intervals seen, their median, the learned window (middle half, from
    `triggers.replacement_min_intervals` intervals), the configured one, and which the replacement trigger
    uses."""
    from domain.lifecycle.lifetimes import category_lifetimes

    settings = current_app.extensions["giftrec"].settings
    now = on + dt.timedelta(days=1) if on else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with transaction() as session:
        rows = category_lifetimes(session, settings, now)
    minimum = settings.triggers.replacement_min_intervals
    click.echo(f"replacement lifetimes in days (learned from {minimum} repurchase intervals or more)")
    click.echo(f"{'category':<30} {'intervals':>9} {'median':>7} {'learned':>10} {'configured':>10}  used")
    for row in rows:
        median = "-" if row.median_days is None else f"{row.median_days:.0f}"
        click.echo(
            f"{row.category[:30]:<30} {row.intervals:>9} {median:>7} {_window(row.learned):>10} "
            f"{_window(row.configured):>10}  {row.source}"
        )
    if not rows:
        click.echo("(no category configured in triggers.replacement_lifetimes, none with enough data)")
