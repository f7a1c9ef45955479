"""Job: send the due emails of the outbox (claimed one by one, marked sent only after SMTP accepted)."""

from __future__ import annotations

from domain.messaging.outbox import send_outbox
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    report = send_outbox(ctx.sessions, ctx.settings, ctx.mailer, ctx.now(), ctx.worker_id)
    return report.summary()
