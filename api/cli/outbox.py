"""`giftrec outbox list|resolve|retry|resume`: the email outbox and the operator's decisions on it."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import click
from flask.cli import AppGroup

from api.cli.common import transaction
from domain.models._types import utcnow


@click.group(cls=AppGroup)
def outbox() -> None:
    """The email outbox: what was sent, what failed, what needs an operator."""


@outbox.command("list")
@click.option("--unknown", is_flag=True, help="Only emails whose outcome is unknown (need a decision).")
@click.option("--failed", is_flag=True, help="Only emails that failed for good.")
@click.option("--status", "statuses", multiple=True, help="Only these statuses (repeatable).")
@click.option("--limit", type=int, default=200, show_default=True)
def outbox_list(unknown: bool, failed: bool, statuses: tuple[str, ...], limit: int) -> None:
    """List outbox emails: id, status, attempts, recipient, subject, last error."""
    from domain.messaging.outbox import list_outbox
    from domain.messaging.pause import current_pause

    wanted = set(statuses) | ({"unknown"} if unknown else set()) | ({"failed"} if failed else set())
    with transaction() as session:
        paused = current_pause(session)
        if paused is not None:
            click.echo(
                f"QUEUE PAUSED since {paused.paused_at:%Y-%m-%d %H:%M} UTC: {paused.reason}\n"
                f"  next probe {paused.next_probe_at:%Y-%m-%d %H:%M} UTC ({paused.probes} failed); "
                "`giftrec outbox resume` once the SMTP settings are fixed"
            )
        rows = list_outbox(session, sorted(wanted), limit)
        if not rows:
            click.echo("no emails")
        else:  # "when": sent at, claimed at, or not before (queued), in UTC
            click.echo(f"{'id':>6} {'status':<9} {'n':>2} {'when (UTC)':<16} {'to':<32} {'key':<20} subject")
        for row in rows:
            when = row.sent_at or row.claimed_at or row.next_attempt_at
            click.echo(
                f"{row.id:>6} {row.status:<9} {row.attempts:>2} {when:%Y-%m-%d %H:%M} "
                f"{row.to_address:<32} {row.dedupe_key:<20} {row.subject[:50]}"
            )
            if row.last_error and row.status in ("unknown", "failed", "queued", "cancelled"):
                click.echo(f"{'':>6}   {row.last_error}")
        if rows:
            counts = Counter(row.status for row in rows)
            more = " (--limit reached)" if len(rows) == limit else ""
            click.echo(
                f"{len(rows)} email(s){more}: " + ", ".join(f"{st} {n}" for st, n in sorted(counts.items()))
            )
        if unknown and rows:
            click.echo(
                "Check the mail server's log for these; then `giftrec outbox resolve ID --sent` "
                "if it went out, or `--resend`."
            )


@outbox.command("resolve")
@click.argument("email_id", type=int)
@click.option("--sent", "outcome", flag_value="sent", help="It did go out: mark it sent.")
@click.option("--resend", "outcome", flag_value="resend", help="It did not: queue it again.")
def outbox_resolve(email_id: int, outcome: str | None) -> None:
    """Decide on an email whose outcome is unknown (or resend a failed one)."""
    from domain.messaging.outbox import resolve

    if outcome is None:
        raise click.UsageError("give --sent or --resend")
    with transaction() as session:
        row = resolve(session, email_id, outcome=outcome, now=utcnow(), actor="cli")
        click.echo(f"email {row.id}: {row.status}")


_WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])


@outbox.command("retry")
@click.option("--since", type=_WHEN, required=True, help="UTC; failed (last attempt) at or after this.")
@click.option("--until", type=_WHEN, default=None, help="UTC, exclusive; default: now.")
def outbox_retry(since: dt.datetime, until: dt.datetime | None) -> None:
    """Queue again every email that failed for good in a period (after an outage, say)."""
    from domain.messaging.outbox import retry_failed

    now = utcnow()
    with transaction() as session:
        queued, expired = retry_failed(session, since=since, until=until or now, now=now, actor="cli")
    click.echo(f"queued again {len(queued)}; left failed because their deadline has passed {len(expired)}")
    if expired:
        click.echo("  past their deadline: " + ", ".join(map(str, expired)))


@outbox.command("resume")
def outbox_resume() -> None:
    """Lift the queue's pause (after an SMTP login or configuration error was fixed)."""
    from domain.messaging.pause import resume

    with transaction() as session:
        state = resume(session, now=utcnow(), actor="cli", why="resumed by an operator")
    if state is None:
        click.echo("the mail queue was not paused")
    else:
        click.echo(f"mail queue resumed (paused since {state.paused_at:%Y-%m-%d %H:%M} UTC: {state.reason})")
