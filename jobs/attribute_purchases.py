"""Job: mark reminded selections whose picks were bought in the window purchased and record the gifts."""

from __future__ import annotations

from domain.db import session_scope
from domain.messaging.attribution import attribute_purchases
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        summary = attribute_purchases(session, ctx.settings, ctx.now())
    return summary.summary()
