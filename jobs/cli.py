"""`giftrec scheduler` and `giftrec jobs run NAME`: the jobs' doors on the command line.

Registered on the `giftrec` command through the ``flask.commands`` entry point (setup.cfg), so that neither
the web package nor this one imports the other.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from domain.logs import configure_logging
from jobs.__main__ import build_context, run_scheduler
from jobs.registry import JOBS, available_jobs

log = logging.getLogger(__name__)


@click.command("scheduler")
@with_appcontext
def scheduler() -> None:
    """Run the job scheduler in this process (one per database runs jobs; others stay idle)."""
    configure_logging(logging.INFO)  # JSON lines (domain.logs), like the web processes'
    ctx = current_app.extensions["giftrec"]
    run_scheduler(ctx.settings, ctx.sessions)


@click.group(cls=AppGroup)
def jobs() -> None:
    """Run a scheduled job by hand."""


def _job_names() -> list[str]:
    return sorted(available_jobs())


@jobs.command("run")
@click.argument("name", type=click.Choice(_job_names()))
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Run as of this day (noon UTC) instead of now.",
)
def jobs_run(name: str, today: dt.datetime | None) -> None:
    """Run job NAME once, now (or as of --today); safe to repeat.

    --today moves the business date (what is due, deadlines, the frequency cap), never the clock of claims
    and leases. SIGTERM or Ctrl-C stops the job after its current step (the message being sent).
    """
    configure_logging(logging.WARNING)  # JSON lines on stderr; the summary below is the command's output
    app_ctx = current_app.extensions["giftrec"]
    ctx = build_context(app_ctx.settings, app_ctx.sessions)
    ctx.today = today.date() if today else None

    def stop(signum: int, _frame: object) -> None:
        log.warning("%s: signal %s, stopping after the current step", name, signum)
        ctx.stop_requested.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"{name} (as of {ctx.now():%Y-%m-%d %H:%M} UTC): {JOBS[name].runner()(ctx)}")
