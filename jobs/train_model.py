"""Job: train the recommender on every interaction so far (re-fitting the last tuning's blends) and record
the ModelRun."""

from __future__ import annotations

from domain.db import session_scope
from domain.serving.training import prune_artifacts, train_model
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    return train(ctx)


def train(ctx: JobContext, *, tune: bool = False) -> str:
    """Train (after choosing the blends when `tune`: jobs.tune_model) and prune old artifacts."""
    with session_scope(ctx.sessions) as session:
        model_run = train_model(session, ctx.settings, now=ctx.now(), tune=tune)
        summary = f"model run {model_run.version}{' (tuned)' if tune else ''}: {model_run.status}"
        if model_run.error:
            summary += f" ({model_run.error})"
        tuning = model_run.metrics.get("tuning") or {}
        if tune and tuning.get("status") == "default":
            summary += f"; safe default: {tuning.get('reason')}"
        succeeded = model_run.status == "succeeded"
    if succeeded:  # only once the new run is committed: a failed commit keeps the old artifacts
        with session_scope(ctx.sessions) as session:
            pruned = prune_artifacts(session, ctx.settings)
        summary += f"; old artifacts pruned {len(pruned)}"
    return summary
