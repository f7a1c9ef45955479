"""The `giftrec` command: a Flask CLI group whose commands are thin doors onto the use cases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup
from sqlalchemy.orm import Session

from config import ConfigError, load_settings
from domain.db import session_scope
from domain.errors import DomainError


def _create_app() -> Flask:
    from api import create_app

    try:
        return create_app(load_settings())
    except ConfigError as exc:
        raise click.ClickException(f"bad setting {exc}") from None


@contextmanager
def transaction() -> Iterator[Session]:
    """One transaction for a command; domain errors become a clean exit 1 with the message."""
    try:
        with session_scope(current_app.extensions["giftrec"].sessions) as session:
            yield session
    except DomainError as exc:
        raise click.ClickException(exc.message) from None


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False, add_default_commands=True)
def cli() -> None:
    """giftrec: gift recommendations, important-date reminders and repeat-sales triggers."""


# --- database ---------------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (creates a SQLite file if needed)."""
    from domain import schema

    schema.upgrade(current_app.extensions["giftrec"].settings.database.url, revision)
    click.echo(f"database at {schema.current_revision(current_app.extensions['giftrec'].engine)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (e.g. base)."""
    from domain import schema

    schema.downgrade(current_app.extensions["giftrec"].settings.database.url, revision)
    click.echo(f"database at {schema.current_revision(current_app.extensions['giftrec'].engine)}")


@db.command("current")
def db_current() -> None:
    """Print the database revision and the newest one."""
    from domain import schema

    click.echo(
        f"current {schema.current_revision(current_app.extensions['giftrec'].engine)} "
        f"head {schema.head_revision()}"
    )


# --- import -----------------------------------------------------------------------------------------------
@cli.group("import")
def import_() -> None:
    """Import data files into the database."""


@import_.command("orders")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["online-retail", "generic"]),
    default="online-retail",
    show_default=True,
    help="online-retail: the UCI Online Retail columns; generic: customer_id, order_id, sku, quantity, "
    "unit_price, ordered_at [, title, category, country].",
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

    One transaction: an unusable file changes nothing; re-importing a file adds nothing.
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
        )
    if not quiet:
        click.echo(summary.as_text())


# --- demo data --------------------------------------------------------------------------------------------
@cli.group()
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
    click.echo("Demo manager logins (generated):")
    for login in summary.logins:
        click.echo(f"  {login.email}  password: {login.password}  ({login.name})")


# --- users ------------------------------------------------------------------------------------------------
@cli.group()
def users() -> None:
    """Users of the review pages: account managers, admins, viewers."""


@users.command("create")
@click.argument("email")
@click.option("--name", required=True, help="Display name.")
@click.option(
    "--role", type=click.Choice(["manager", "admin", "viewer"]), default="manager", show_default=True
)
@click.option(
    "--password",
    envvar="GIFTREC_USER_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Password (or GIFTREC_USER_PASSWORD; prompted for when neither is given).",
)
def users_create(email: str, name: str, role: str, password: str) -> None:
    """Create a user who signs in with EMAIL."""
    from domain.access.users import create_user

    with transaction() as session:
        user = create_user(session, email, name, password, role)
        line = f"created user {user.id}: {user.email} ({user.role})"
    click.echo(line)


@users.command("list")
def users_list() -> None:
    """List users: email, role, name, whether active and generated by `demo seed`."""
    from domain.access.users import list_users

    with transaction() as session:
        rows = [
            (u.email, u.role, u.name, "active" if u.is_active else "inactive", "generated" * u.is_generated)
            for u in list_users(session)
        ]
    if not rows:
        click.echo("no users")
    for email, role, name, active, generated in rows:
        click.echo(f"{email:<40} {role:<8} {active:<9} {generated:<9} {name}".rstrip())


# --- model lifecycle --------------------------------------------------------------------------------------
@cli.command("train")
@click.option("--if-stale", is_flag=True, help="Skip when the serving model already covers the newest data.")
def train(if_stale: bool) -> None:
    """Train the configured model on the database, save its artifact and record the run."""
    from domain.serving.training import is_stale, train_model

    settings = current_app.extensions["giftrec"].settings
    with transaction() as session:
        if if_stale:
            stale, reason = is_stale(session, settings)
            if not stale:
                click.echo(f"skipped: {reason}")
                return
            click.echo(f"training: {reason}")
        run = train_model(session, settings)
        summary = (
            f"{run.status}: model {run.version} ({run.algorithm}) on {run.n_users:,} customers x "
            f"{run.n_items:,} products, {run.n_interactions:,} interactions; data until {run.data_until}"
        )
        timing = ", ".join(f"{k} {v}" for k, v in run.metrics.items() if k.endswith("_seconds"))
        error = run.error
    if error is not None:
        raise click.ClickException(f"training failed: {error}")
    click.echo(summary)
    click.echo(f"  {timing}")


@cli.group()
def model() -> None:
    """Trained models: list the runs, roll back to an earlier one."""


@model.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
def model_list(limit: int) -> None:
    """List model runs, newest first; `*` marks the one serving processes load."""
    from domain.serving.training import list_runs, serving_run

    with transaction() as session:
        serving = serving_run(session)
        rows = [
            (
                "*" if serving is not None and r.id == serving.id else " ",
                r.version,
                r.algorithm,
                "rolled back" if r.is_rolled_back else r.status,
                "" if r.artifact_path or r.status != "succeeded" else "artifact pruned",
                f"{r.n_users}x{r.n_items}",
                str(r.data_until or ""),
                r.error or "",
            )
            for r in list_runs(session, limit=limit)
        ]
    if not rows:
        click.echo("no model runs: run `giftrec train`")
    for mark, version, algorithm, status, pruned, shape, until, error in rows:
        line = f"{mark} {version:<40} {algorithm:<11} {status:<11} {shape:<12} {until:<19} {pruned}{error}"
        click.echo(line.rstrip())


@model.command("rollback")
@click.argument("version", required=False)
def model_rollback(version: str | None) -> None:
    """Stop serving the current model: back to the previous one, or to VERSION.

    Serving processes switch within `model.reload_interval` seconds, without a restart.
    """
    from domain.serving.training import rollback

    with transaction() as session:
        target = rollback(session, version, actor="cli")
        line = f"serving model {target.version} ({target.algorithm}) from the next reload"
    click.echo(line)


@cli.command("evaluate")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Orders file, e.g. ../shared/data/online_retail.csv.gz",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["online-retail", "generic"]),
    default="online-retail",
    show_default=True,
)
@click.option("--test-days", type=int, default=30, show_default=True, help="Length of the test window.")
@click.option("--k", type=int, default=10, show_default=True, help="Cut-off of the ranking metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def evaluate(data: str, fmt: str, test_days: int, k: int, as_json: bool) -> None:
    """Offline evaluation: temporal split, the default model against the baselines, two tasks."""
    import json

    from domain.serving.evaluation import evaluate_command

    try:
        result = evaluate_command(
            data,
            fmt,  # type: ignore[arg-type]
            test_days,
            k,
            as_json,
            progress=lambda msg: click.echo(msg, err=True),
        )
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(result, indent=2) if as_json else result)


def _register_commands() -> None:
    from api.jobs_cli import jobs, outbox, scheduler
    from api.keys_cli import keys
    from api.serve import serve

    cli.add_command(serve)
    cli.add_command(keys)
    for command in (scheduler, jobs, outbox):
        cli.add_command(command)


_register_commands()


def main() -> None:
    try:
        cli.main(prog_name="giftrec")
    except ConfigError as exc:  # pragma: no cover - surfaced by _create_app already
        click.echo(f"Error: bad setting {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
