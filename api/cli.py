"""The `giftrec` command: a Flask CLI group whose commands are thin doors onto the use cases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import current_app
from flask.cli import FlaskGroup
from sqlalchemy.orm import Session

from config import ConfigError, load_settings
from domain.db import session_scope
from domain.errors import DomainError


def _create_app():  # type: ignore[no-untyped-def]
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


def _register_commands() -> None:
    from api.serve import serve

    cli.add_command(serve)


_register_commands()


def main() -> None:
    try:
        cli.main(prog_name="giftrec")
    except ConfigError as exc:  # pragma: no cover - surfaced by _create_app already
        click.echo(f"Error: bad setting {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
