"""Job: choose the served blends on a validation window, train them and record the ModelRun (weekly)."""

from __future__ import annotations

from jobs.context import JobContext
from jobs.train_model import train


def run(ctx: JobContext) -> str:
    return train(ctx, tune=True)
