"""build_scheduler(ctx): APScheduler cron triggers from config, run only while holding the database lock.

Two schedulers against one database: both start, only the holder of the ``scheduler`` lease in job_locks
runs jobs; the other renews nothing, logs that it stays idle, and takes over once the lease expires
(``scheduler.lock_ttl`` seconds after its holder stopped renewing it).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from domain.db import session_scope
from domain.job_runs import record_job_run
from domain.locks import SCHEDULER_LOCK, acquire_lease, lease_holder, release_lease
from domain.models._types import utcnow
from jobs.context import JobContext
from jobs.registry import available_jobs

log = logging.getLogger(__name__)

LOCK_NAME = SCHEDULER_LOCK
LEASE_JOB = "_lease"


class Lease:
    """This scheduler's claim on the database lock; says when it gains or loses it."""

    def __init__(self, ctx: JobContext, holder: str, ttl: dt.timedelta) -> None:
        self.ctx, self.holder, self.ttl = ctx, holder, ttl
        self.is_held = False
        self._announced_idle = False
        self._released = False
        self._lock = threading.Lock()
        self.on_gain: Callable[[], None] = lambda: None

    def refresh(self) -> bool:
        with self._lock:
            if self._released:  # a renewal still queued when the scheduler stopped must not take it back
                return False
            held = acquire_lease(self.ctx.sessions, LOCK_NAME, self.holder, utcnow(), self.ttl)
            gained = held and not self.is_held
            if gained:
                log.info("scheduler %s holds the database lock: running jobs", self.holder)
                self._announced_idle = False
            elif not held and (self.is_held or not self._announced_idle):
                with session_scope(self.ctx.sessions) as session:
                    other = lease_holder(session, LOCK_NAME)
                    who = f"{other.holder} until {other.expires_at:%Y-%m-%d %H:%M:%S} UTC" if other else "?"
                log.warning(
                    "scheduler %s: another scheduler holds the database lock (%s); staying idle",
                    self.holder,
                    who,
                )
                self._announced_idle = True
            self.is_held = held
        if gained:
            self.on_gain()
        return held

    def release(self) -> None:
        with self._lock:
            self._released = True
            if self.is_held:
                release_lease(self.ctx.sessions, LOCK_NAME, self.holder)
                self.is_held = False


class Running:
    """The jobs running in this process, so that a stop can wait for them, for a bounded time."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._changed = threading.Condition()

    @contextmanager
    def job(self, name: str) -> Iterator[None]:
        with self._changed:
            self._names.append(name)
        try:
            yield
        finally:
            with self._changed:
                self._names.remove(name)
                self._changed.notify_all()

    def wait(self, timeout: float) -> list[str]:
        """Wait until none runs, at most ``timeout`` seconds; the names of those still running."""
        with self._changed:
            self._changed.wait_for(lambda: not self._names, timeout)
            return list(self._names)


class Scheduler:
    """An APScheduler instance with its lease; ``start()`` blocks unless built with background=True."""

    def __init__(self, scheduler: BaseScheduler, lease: Lease, running: Running | None = None) -> None:
        self.scheduler, self.lease = scheduler, lease
        self.running = running or Running()

    def start(self) -> None:
        try:
            self.scheduler.start()
        finally:
            # BackgroundScheduler subclasses BlockingScheduler: its start() returns at once.
            if not isinstance(self.scheduler, BackgroundScheduler):
                self.lease.release()

    def shutdown(self, wait: bool = True) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        self.lease.release()

    def stop(self, timeout: float) -> list[str]:
        """Start no more jobs, give the running ones ``timeout`` seconds to finish (they stop early once
        ``ctx.stop_requested`` is set), release the lease; the names of the jobs still running, which the
        caller abandons by exiting. Called from the main thread, never from a signal handler."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        left = self.running.wait(timeout)
        self.lease.release()
        return left

    def run_soon(self, name: str) -> None:
        """Fire job ``name`` now (it still runs only if this scheduler holds the lock)."""
        self.scheduler.modify_job(name, next_run_time=dt.datetime.now(self.scheduler.timezone))


def build_scheduler(
    ctx: JobContext,
    *,
    background: bool = False,
    holder: str | None = None,
    runners: Mapping[str, Callable[[JobContext], Any]] | None = None,
) -> Scheduler:
    """One cron trigger per available job, a lease-renewal job, coalescing and one instance per job.

    ``runners`` replaces job bodies by name (tests count runs with it); names must be known jobs.
    """
    settings = ctx.settings.scheduler
    zone = ZoneInfo(settings.timezone)
    cls = BackgroundScheduler if background else BlockingScheduler
    scheduler = cls(
        timezone=zone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 15 * 60},
    )
    ttl = dt.timedelta(seconds=settings.lock_ttl)
    lease = Lease(ctx, holder or ctx.worker_id, ttl)
    running = Running()
    specs = available_jobs()
    catch_up = [name for name, spec in specs.items() if spec.catch_up]

    def _record(name: str, outcome: str, started_at: dt.datetime, seconds: float) -> None:
        """The run in the database, for every web process's /metrics (domain.job_runs); a database that
        fails here loses the figure, not the scheduler."""
        try:
            record_job_run(ctx.sessions, name, outcome, started_at, seconds)
        except Exception:
            log.exception("job %s: its run (%s, %.1f s) was not recorded", name, outcome, seconds)

    def guarded(name: str, body: Callable[[JobContext], Any]) -> Callable[[], None]:
        def job() -> None:
            with running.job(name):
                if ctx.stop_requested.is_set():  # submitted before the stop, started after it
                    return
                if not lease.refresh():
                    log.info("job %s: not run, this scheduler does not hold the lock", name)
                    return
                started_at, started, outcome = utcnow(), time.perf_counter(), "failed"
                try:
                    log.info("job %s: %s", name, body(ctx))
                    outcome = "ok"
                except Exception:  # the scheduler carries on; the next run retries
                    log.exception("job %s failed", name)
                finally:
                    _record(name, outcome, started_at, time.perf_counter() - started)

        return job

    for name, spec in specs.items():
        body = (runners or {}).get(name) or spec.runner()
        trigger = CronTrigger.from_crontab(getattr(settings, spec.cron_setting), timezone=zone)
        scheduler.add_job(guarded(name, body), trigger, id=name, name=name)
    for name in set(runners or {}) - set(specs):
        raise ValueError(f"unknown job {name!r}")

    def on_gain() -> None:
        now = dt.datetime.now(zone)
        for name in catch_up:
            scheduler.modify_job(name, next_run_time=now)

    lease.on_gain = on_gain
    renew_every = max(settings.lock_ttl / 3, 0.2)
    scheduler.add_job(
        lease.refresh,
        IntervalTrigger(seconds=renew_every, timezone=zone),
        id=LEASE_JOB,
        name="database lock",
        next_run_time=dt.datetime.now(zone),
        misfire_grace_time=None,
    )
    return Scheduler(scheduler, lease, running)
