"""What every command group shares: the app the `giftrec` command builds, one transaction per command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app
from sqlalchemy.orm import Session

from config import ConfigError, load_settings
from domain.db import session_scope
from domain.errors import DomainError


def create_cli_app() -> Flask:
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
