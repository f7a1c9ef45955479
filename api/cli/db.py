"""`giftrec db`: migrate the database with Alembic."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup


@click.group(cls=AppGroup)
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
