"""The `giftrec` command: a Flask CLI group whose commands are thin doors onto the use cases.

One module per command group; each imports only :mod:`api.cli.common`, never another group or this module.
The scheduler and `jobs run` come from the jobs package, registered as a plugin (the ``flask.commands``
entry point in setup.cfg), so that the web doors and the jobs never import each other.
"""

from __future__ import annotations

import logging
import sys

import click
from flask.cli import FlaskGroup

from api.cli.common import create_cli_app
from api.cli.db import db
from api.cli.demo import demo
from api.cli.imports import import_
from api.cli.keys import keys
from api.cli.lifecycle import lifecycle
from api.cli.model import evaluate, model, train
from api.cli.outbox import outbox
from api.cli.report import report
from api.cli.rfm import rfm
from api.cli.serve import serve
from api.cli.users import users
from config import ConfigError
from domain.logs import configure_logging


@click.group(cls=FlaskGroup, create_app=create_cli_app, add_version_option=False, add_default_commands=True)
def cli() -> None:
    """giftrec: gift recommendations, important-date reminders and repeat-sales triggers."""
    # Every command logs JSON lines on stderr (domain.logs); what it prints on stdout is its output.
    configure_logging(logging.WARNING)


for command in (
    db,
    import_,
    demo,
    users,
    train,
    model,
    evaluate,
    keys,
    outbox,
    rfm,
    report,
    lifecycle,
    serve,
):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(prog_name="giftrec")
    except ConfigError as exc:  # pragma: no cover - surfaced by create_cli_app already
        click.echo(f"Error: bad setting {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
