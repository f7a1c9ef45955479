"""Job: today's RFM snapshot of every customer, then the trigger emails it makes due."""

from __future__ import annotations

from domain.db import run_once_more_on_collision
from domain.lifecycle.snapshots import take_snapshot
from domain.lifecycle.trigger_runs import run_triggers
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    now = ctx.now()
    # each step in its own transaction, the snapshot kept even if a trigger run fails; a run that
    # collides with another at the same moment (the scheduler's and one by hand) runs again
    result = run_once_more_on_collision(
        ctx.sessions, lambda session: take_snapshot(session, ctx.settings.rfm, now.date()), what="snapshot"
    )
    triggers = run_once_more_on_collision(
        ctx.sessions, lambda session: run_triggers(session, ctx.settings, now), what="trigger run"
    )
    return f"{result.summary()}\n{triggers.summary()}"
