"""Job: trigger emails approved by an account manager (or at the review cut-off) into the outbox."""

from __future__ import annotations

from domain.db import session_scope
from domain.lifecycle.trigger_emails import queue_trigger_emails
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        report = queue_trigger_emails(session, ctx.settings, ctx.now())
    return report.summary()
