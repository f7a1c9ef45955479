"""Job: train the learned next-purchase ranker on every order so far, store its artifact, record the run."""

from __future__ import annotations

from domain.db import session_scope
from domain.serving.next_purchase_runs import prune_next_purchase_artifacts, train_next_purchase
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        trained = train_next_purchase(session, ctx.settings, now=ctx.now())
        summary = f"next-purchase ranker {trained.version}: {trained.status}"
        if trained.error:
            summary += f" ({trained.error})"
        succeeded = trained.status == "succeeded"
    if succeeded:  # only once the new run is committed: a failed commit keeps the old artifacts
        with session_scope(ctx.sessions) as session:
            pruned = prune_next_purchase_artifacts(session, ctx.settings)
        summary += f"; old artifacts pruned {len(pruned)}"
    return summary
