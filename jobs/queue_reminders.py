"""Job: render ready and approved selections into reminder emails in the outbox (once each)."""

from __future__ import annotations

from domain.db import session_scope
from domain.reminders import queue_reminders
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        report = queue_reminders(session, ctx.settings, ctx.now())
    return report.summary()
