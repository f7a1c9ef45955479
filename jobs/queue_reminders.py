"""Job: render ready and approved selections into reminder emails in the outbox (once each)."""

from __future__ import annotations

from collections import Counter

from domain.db import session_scope
from domain.reminders.queueing import queue_reminders
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        report = queue_reminders(session, ctx.settings, ctx.now())
    text = report.summary()
    if report.skipped:  # "frequency cap: no marketing email allowed before ..." -> "frequency cap"
        why = Counter(reason.split(":")[0] for reason in report.skipped.values())
        text += "; skipped because: " + ", ".join(f"{reason} {n}" for reason, n in sorted(why.items()))
    return text
