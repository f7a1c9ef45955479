"""`giftrec demo seed`: generated, labelled recipients, dates, VIPs and demo managers."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from api.cli.common import transaction


@click.group(cls=AppGroup)
def demo() -> None:
    """Generated demo data for the imported customers (every row marked as generated)."""


@demo.command("seed")
@click.option("--seed", "seed_value", type=int, default=None, help="Random seed [default: 20111209].")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Also place dates in the two weeks after this day [default: the real date].",
)
def demo_seed(seed_value: int | None, today: object) -> None:
    """Seed demo managers, VIP flags, recipients, important dates, occasion opt-ins and gifts given.

    Deterministic for a given database, seed and --today; running it again adds nothing.
    """
    import datetime as dt

    from domain.demo.seed import DEFAULT_SEED, seed_demo

    day = today.date() if isinstance(today, dt.datetime) else None
    seed = DEFAULT_SEED if seed_value is None else seed_value
    with transaction() as session:
        summary = seed_demo(session, seed=seed, today=day)
    click.echo(f"Demo data, seed {seed} (every row created is marked is_generated):")
    for name, value in summary.counts().items():
        click.echo(f"  {name.replace('_', ' '):<28} {value:>7,}")
    if not summary.created_anything:
        click.echo("Nothing to seed: every imported customer was seeded before (or has real data).")
    click.echo("Demo logins of the /manage pages (generated):")
    for login in summary.logins:
        click.echo(f"  {login.email}  password: {login.password}  ({login.name})")


@demo.command("simulate-uplift")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First eligibility day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last eligibility day.")
@click.option(
    "--extra", type=float, default=0.1, show_default=True, help="Extra purchase chance after an email."
)
@click.option(
    "--base", type=float, default=0.05, show_default=True, help="Purchase chance of everyone eligible."
)
@click.option("--seed", "seed_value", type=int, default=20111209, show_default=True)
def demo_simulate_uplift(since: object, until: object, extra: float, base: float, seed_value: int) -> None:
    """Generate purchases after the trigger emails with a known extra probability (orders labelled
    source 'simulation'), so that `giftrec report campaigns` has a planted uplift to find."""
    import datetime as dt

    from flask import current_app

    from domain.demo.simulation import simulate_uplift

    assert isinstance(since, dt.datetime) and isinstance(until, dt.datetime)
    settings = current_app.extensions["giftrec"].settings
    with transaction() as session:
        result = simulate_uplift(
            session,
            settings,
            since.date(),
            until.date(),
            extra_probability=extra,
            base_probability=base,
            seed=seed_value,
        )
    click.echo(f"generated {result.orders} order(s) (source 'simulation', ids SIM-...)")
    for trigger, value in sorted(result.planted.items()):
        click.echo(f"  {trigger:<16} planted conversion difference treated - control: {value:+.1%}")
