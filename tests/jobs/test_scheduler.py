"""The scheduler: cron triggers from config, one lock holder per database, jobs runnable from the CLI."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from sqlalchemy import select

from api.cli import cli
from domain.db import session_scope
from domain.models import JobLock, OutboundEmail
from jobs.context import JobContext
from jobs.registry import available_jobs
from jobs.scheduler import build_scheduler
from tests.delivery_fixtures import make_selection


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_cron_triggers_come_from_settings(settings, sessions):
    cron = dataclasses.replace(settings.scheduler, plan_cron="15 7 * * 1-5", timezone="Europe/London")
    settings = dataclasses.replace(settings, scheduler=cron)
    scheduler = build_scheduler(JobContext(settings, sessions, mailer=None), background=True)
    scheduler.scheduler.start(paused=True)  # jobs get their defaults when added to a started scheduler
    try:
        job = scheduler.scheduler.get_job("plan-selections")
        ids = {j.id for j in scheduler.scheduler.get_jobs()}
    finally:
        scheduler.shutdown()
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert (fields["minute"], fields["hour"], fields["day_of_week"]) == ("15", "7", "1-5")
    assert str(job.trigger.timezone) == "Europe/London"
    assert (job.coalesce, job.max_instances) == (True, 1)
    assert {"train-model", "plan-selections", "queue-reminders", "send-outbox"} <= ids


def test_two_schedulers_one_lock_each_job_runs_once(settings, sessions, caplog):
    settings = dataclasses.replace(settings, scheduler=dataclasses.replace(settings.scheduler, lock_ttl=1))
    runs: list[tuple[str, str]] = []
    lock = threading.Lock()

    def counting(name):
        def run(ctx):
            with lock:
                runs.append((name, ctx.worker_id))
            return "counted"

        return run

    runners = {name: counting(name) for name in available_jobs()}
    catch_up = sorted(name for name, spec in available_jobs().items() if spec.catch_up)
    a = build_scheduler(JobContext(settings, sessions, None, worker_id="A"), background=True, runners=runners)
    b = build_scheduler(JobContext(settings, sessions, None, worker_id="B"), background=True, runners=runners)
    caplog.set_level(logging.INFO, logger="jobs.scheduler")
    try:
        a.scheduler.start()
        assert _wait(lambda: len(runs) == len(catch_up))
        b.scheduler.start()
        assert _wait(lambda: "B: another scheduler holds the database lock (A until" in caplog.text)
        b.run_soon("send-outbox")  # B fires its trigger too, but does not hold the lock
        a.run_soon("train-model")
        assert _wait(lambda: len(runs) == len(catch_up) + 1)
        time.sleep(0.4)  # B's renewals and its fired job had time to run anything they would
        assert sorted(runs) == sorted([(name, "A") for name in catch_up] + [("train-model", "A")])
        assert a.lease.is_held and not b.lease.is_held
        with session_scope(sessions) as s:
            assert [lock.holder for lock in s.scalars(select(JobLock))] == ["A"]
        # A stops: it releases the lock and B takes over, catching up once
        a.shutdown()
        assert _wait(lambda: len(runs) == 2 * len(catch_up) + 1)
        assert sorted(r for r in runs if r[1] == "B") == [(name, "B") for name in catch_up]
        assert b.lease.is_held
    finally:
        a.shutdown()
        b.shutdown()
    with session_scope(sessions) as s:
        assert s.scalars(select(JobLock)).all() == []


def test_each_scheduled_run_is_recorded_by_job_and_outcome_with_its_duration(settings, sessions):
    """`/metrics`' job runs and durations (docs/observability.md): the scheduler records every run it makes,
    ok or failed, with its wall time, by job, in the database that every web process reads."""
    from domain.job_runs import job_run_totals

    def totals() -> dict[str, tuple[int, int, str]]:
        with sessions() as s:
            return {t.job: (t.runs_ok, t.runs_failed, t.last_outcome) for t in job_run_totals(s)}

    def fails(ctx):
        raise RuntimeError("the relay is down")

    runners = {name: (lambda ctx: "ok") for name in available_jobs()} | {"train-model": fails}
    catch_up = [name for name, spec in available_jobs().items() if spec.catch_up]
    plan = "plan-selections"
    assert plan in catch_up and "train-model" not in catch_up
    scheduler = build_scheduler(JobContext(settings, sessions, None), background=True, runners=runners)
    try:
        scheduler.scheduler.start()  # gains the lease and catches up: every catch-up job runs once
        assert _wait(lambda: totals().get(plan) == (1, 0, "ok"))
        scheduler.run_soon("train-model")
        assert _wait(lambda: "train-model" in totals())
    finally:
        scheduler.shutdown()
    assert totals()["train-model"] == (0, 1, "failed")
    with sessions() as s:
        trained, planned = (
            next(t for t in job_run_totals(s) if t.job == name) for name in ("train-model", plan)
        )
        assert trained.last_success_at is None and trained.seconds_total == trained.last_seconds >= 0
        assert planned.last_success_at is not None and planned.last_success_at >= planned.last_started_at


def test_jobs_run_from_the_cli(app, runner, sessions, smtp_server, settings):
    ctx = app.extensions["giftrec"]
    mail = dataclasses.replace(ctx.settings.mail, smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    ctx.settings = dataclasses.replace(ctx.settings, mail=mail)
    with session_scope(sessions) as s:
        selection_id = make_selection(s).id
    queued = runner.invoke(cli, ["jobs", "run", "queue-reminders", "--today", "2011-12-01"])
    assert queued.exit_code == 0, queued.output
    assert "queued 1" in queued.output
    sent = runner.invoke(cli, ["jobs", "run", "send-outbox", "--today", "2011-12-01"])
    assert sent.exit_code == 0, sent.output
    assert "sent 1," in sent.output
    assert len(smtp_server.messages) == 1
    with session_scope(sessions) as s:
        row = s.scalar(select(OutboundEmail).where(OutboundEmail.selection_id == selection_id))
        assert row.status == "sent"
    assert runner.invoke(cli, ["jobs", "run", "no-such-job"]).exit_code == 2
