"""The jobs by name: which module runs them and which cron setting schedules them."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from jobs.context import JobContext


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    #: Attribute of ``SchedulerSettings`` holding the crontab expression.
    cron_setting: str
    #: Run once when a scheduler becomes the lock holder: cheap and safe to repeat, and a missed run
    #: (the scheduler was down at its time) would otherwise wait a whole period.
    catch_up: bool = False

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # pragma: no cover - a missing parent package
            return False

    def runner(self) -> Callable[[JobContext], str]:
        run: Callable[[JobContext], str] = importlib.import_module(self.module).run
        return run


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        # Nightly re-fit of the chosen blends; the weekly tuning chooses them again.
        JobSpec("train-model", "jobs.train_model", "train_cron"),
        JobSpec("tune-model", "jobs.tune_model", "tune_cron"),
        # The learned next-purchase ranker: fitted here once, loaded by every web process.
        JobSpec("train-next-purchase", "jobs.train_next_purchase", "train_next_purchase_cron"),
        JobSpec("plan-selections", "jobs.plan_selections", "plan_cron", catch_up=True),
        JobSpec("queue-reminders", "jobs.queue_reminders", "send_cron", catch_up=True),
        JobSpec("queue-triggers", "jobs.queue_triggers", "send_cron", catch_up=True),
        JobSpec("send-outbox", "jobs.send_outbox", "send_cron", catch_up=True),
        JobSpec("lifecycle", "jobs.lifecycle", "lifecycle_cron"),
        # Nightly with the lifecycle work; orders posted through the API are attributed at once.
        JobSpec("attribute-purchases", "jobs.attribute_purchases", "lifecycle_cron", catch_up=True),
    )
}


def available_jobs() -> dict[str, JobSpec]:
    """Jobs whose module is installed (lifecycle arrives with its own issue)."""
    return {name: spec for name, spec in JOBS.items() if spec.available()}
