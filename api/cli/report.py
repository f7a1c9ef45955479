"""`giftrec report campaigns`: per trigger and reminder occasion, reach, orders and uplift over control."""

from __future__ import annotations

import datetime as dt
import json

import click
from flask import current_app
from flask.cli import AppGroup

from api.cli.common import transaction


@click.group(cls=AppGroup)
def report() -> None:
    """Reports on the lifecycle emails."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.2f}"


@report.command("campaigns")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First eligibility day.")
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last eligibility day (today)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def campaigns(since: dt.datetime | None, until: dt.datetime | None, as_json: bool) -> None:
    """Per trigger and reminder occasion: eligible, treated, control, sent, clicked, ordered within the
    attribution window and revenue; the conversion difference treated - control with a Newcombe 95%
    interval, the revenue per eligible customer difference with a bootstrap interval, and the incremental
    revenue. A group below triggers.min_group_size says "too few to tell"."""
    from domain.lifecycle.campaigns import campaign_report

    last = until.date() if until else dt.datetime.now(dt.UTC).date()
    first = since.date() if since else last - dt.timedelta(days=90)
    with transaction() as session:
        result = campaign_report(session, current_app.extensions["giftrec"].settings, first, last)
    if as_json:
        body = {
            "since": first.isoformat(),
            "until": last.isoformat(),
            "attribution_days": result.attribution_days,
            "min_group_size": result.min_group_size,
            "campaigns": [row.as_dict() for row in result.rows],
        }
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(
        f"campaigns with customers eligible {first} to {last}; orders within {result.attribution_days} days; "
        f"control = per-trigger control + global holdout"
    )
    click.echo(
        f"{'campaign':<28} {'eligible':>8} {'treated':>7} {'control':>7} {'sent':>6} {'clicked':>7} "
        f"{'ord T':>6} {'ord C':>6} {'revenue T':>12} {'revenue C':>11}  uplift"
    )
    for row in result.rows:
        line = (
            f"{row.campaign:<28} {row.eligible:>8} {row.treated:>7} {row.control:>7} {row.sent:>6} "
            f"{row.clicked:>7} {row.ordered_treated:>6} {row.ordered_control:>6} "
            f"{row.revenue_treated:>12,.2f} {row.revenue_control:>11,.2f}  "
        )
        u = row.uplift
        if u is None:
            line += "no control group"
        elif u.too_few:
            line += f"too few to tell (need {result.min_group_size} per group)"
        else:
            conversion = f"[{_pct(u.conversion_low)}, {_pct(u.conversion_high)}]"
            revenue = f"[{_money(u.revenue_low)}, {_money(u.revenue_high)}]"
            line += (
                f"conversion {_pct(u.conversion_diff)} {conversion}, "
                f"revenue/eligible {_money(u.revenue_diff)} {revenue}, "
                f"incremental {_money(u.incremental_revenue)}"
            )
        click.echo(line)
    if not result.rows:
        click.echo("no trigger or reminder had eligible customers in the period")
