"""Job: plan today's curated selections for upcoming important dates, then apply the VIP cut-off."""

from __future__ import annotations

from domain.reminders.planning import run_planning
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    s = run_planning(ctx.sessions, ctx.settings, ctx.now())
    text = (
        f"due {s.due}: planned {s.planned} (ready {s.ready}, awaiting review {s.awaiting_review}; "
        f"caught up after a missed lead day {s.caught_up}), already planned {s.existing}, "
        f"skipped as too late to catch up {s.skipped}, failed with no product deliverable in time {s.empty}, "
        f"customers whose planning failed {s.failed_customers}; "
        f"VIP cut-off: approved {s.cutoff_approved}, skipped {s.cutoff_skipped}"
    )
    if s.failures:
        text += "; first failures: " + "; ".join(s.failures[:3])
    return text
