"""`giftrec rfm report`: segment sizes, revenue share and value from the RFM snapshots, and the moves."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import AppGroup

from api.cli.common import transaction


@click.group(cls=AppGroup)
def rfm() -> None:
    """RFM segments from the nightly snapshots (`giftrec jobs run lifecycle` takes one)."""


def _change(value: int | None) -> str:
    return "-" if value is None else f"{value:+d}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


@rfm.command("report")
@click.option(
    "--on",
    "on",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Report the newest snapshot up to this day.",
)
@click.option("--moves", "top", type=int, default=10, show_default=True, help="How many moves to list.")
def rfm_report(on: dt.datetime | None, top: int) -> None:
    """Segments ranked by average CLV: customers, revenue share, average CLV, change since a week and a
    month before; then the most common moves between segments over the same spans."""
    from domain.lifecycle.segments import segment_report

    with transaction() as session:
        report = segment_report(session, on.date() if on else None)
    if report.taken_on is None:
        click.echo("no RFM snapshot yet: run `giftrec jobs run lifecycle`")
        return
    click.echo(
        f"RFM segments on {report.taken_on}: {report.customers} customers "
        f"(vs week: {report.week_on or 'no snapshot'}, vs month: {report.month_on or 'no snapshot'})"
    )
    click.echo(
        f"{'segment':<20} {'customers':>9} {'share':>6} {'revenue':>14} {'rev %':>6} "
        f"{'avg CLV':>10} {'total CLV':>14} {'wk chg':>7} {'mo chg':>7}"
    )
    for row in report.rows:
        click.echo(
            f"{row.segment:<20} {row.customers:>9} {row.share:>6.1%} {row.revenue:>14,.2f} "
            f"{row.revenue_share:>6.1%} {_money(row.average_clv):>10} {_money(row.total_clv):>14} "
            f"{_change(row.change_week):>7} {_change(row.change_month):>7}"
        )
    for label, since, moves in (
        ("week", report.week_on, report.moves_week),
        ("month", report.month_on, report.moves_month),
    ):
        if since is None:
            continue
        moved = sum(m.customers for m in moves)
        click.echo(f"\nmoves since {since} (last {label}): {moved} customers")
        for move in moves[:top]:
            click.echo(f"  {move.from_segment:<20} -> {move.to_segment:<20} {move.customers:>7}")
        if len(moves) > top:
            click.echo(f"  ... {len(moves) - top} more")
