"""Job: today's RFM snapshot of every customer (scores, segment, expected purchases, CLV)."""

from __future__ import annotations

from domain.db import session_scope
from domain.lifecycle.snapshots import take_snapshot
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        result = take_snapshot(session, ctx.settings.rfm, ctx.now().date())
    return result.summary()
