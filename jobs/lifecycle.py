"""Job: today's RFM snapshot of every customer, then the trigger emails it makes due."""

from __future__ import annotations

from domain.db import session_scope
from domain.lifecycle.snapshots import take_snapshot
from domain.lifecycle.trigger_runs import run_triggers
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    now = ctx.now()
    with session_scope(ctx.sessions) as session:
        result = take_snapshot(session, ctx.settings.rfm, now.date())
    with session_scope(ctx.sessions) as session:  # the snapshot is kept even if a trigger run fails
        triggers = run_triggers(session, ctx.settings, now)
    return f"{result.summary()}\n{triggers.summary()}"
