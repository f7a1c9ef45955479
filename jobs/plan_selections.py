"""Job: plan today's curated selections for upcoming important dates, then apply the VIP cut-off."""

from __future__ import annotations

from domain.db import session_scope
from domain.planning import plan_due_selections
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        summary = plan_due_selections(session, ctx.settings, ctx.now())
    return (
        f"due {summary.due}, planned {summary.planned} (ready {summary.ready}, awaiting review "
        f"{summary.awaiting_review}, caught up {summary.caught_up}), skipped {summary.skipped}, "
        f"empty {summary.empty}, failed customers {summary.failed_customers}, VIP cut-off approved "
        f"{summary.cutoff_approved} skipped {summary.cutoff_skipped}"
    )
