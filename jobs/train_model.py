"""Job: train the recommender on every interaction so far and record the ModelRun."""

from __future__ import annotations

from domain.db import session_scope
from domain.serving.training import prune_artifacts, train_model
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    with session_scope(ctx.sessions) as session:
        model_run = train_model(session, ctx.settings, now=ctx.now())
        summary = f"model run {model_run.version}: {model_run.status}"
        if model_run.error:
            summary += f" ({model_run.error})"
        succeeded = model_run.status == "succeeded"
    if succeeded:  # only once the new run is committed: a failed commit keeps the old artifacts
        with session_scope(ctx.sessions) as session:
            pruned = prune_artifacts(session, ctx.settings)
        summary += f"; old artifacts pruned {len(pruned)}"
    return summary
