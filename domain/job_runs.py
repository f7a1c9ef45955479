"""The schedulers' job runs per job (job_run_totals), recorded where every web process can read them.

A scheduler may run on another host than the web processes, restart, or fail over to a standby: its own
process's counters would be seen by nobody or start again at zero. The database is what every host
shares, so each run adds itself to its job's row here, and /metrics (api/metrics.py) reads the rows at
each scrape, as it reads the outbox and the scheduler's lease.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from domain.db import session_scope
from domain.models import JobRunTotal

OUTCOMES = ("ok", "failed")


def record_job_run(
    sessions: sessionmaker[Session], job: str, outcome: str, started_at: dt.datetime, seconds: float
) -> None:
    """Add one run of ``job`` (``ok`` or ``failed``, ``seconds`` of wall time) to its totals, in its own
    transaction: one UPDATE, or the first run's INSERT (a concurrent first run retries the UPDATE)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    ok = outcome == "ok"
    finished_at = started_at + dt.timedelta(seconds=seconds)
    for _ in range(2):
        with session_scope(sessions) as session:
            result = session.execute(
                update(JobRunTotal)
                .where(JobRunTotal.job == job)
                .values(
                    runs_ok=JobRunTotal.runs_ok + (1 if ok else 0),
                    runs_failed=JobRunTotal.runs_failed + (0 if ok else 1),
                    seconds_total=JobRunTotal.seconds_total + seconds,
                    last_started_at=started_at,
                    last_outcome=outcome,
                    last_seconds=seconds,
                    last_success_at=finished_at if ok else JobRunTotal.last_success_at,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0):
                return
        try:
            with session_scope(sessions) as session:
                session.add(
                    JobRunTotal(
                        job=job,
                        runs_ok=1 if ok else 0,
                        runs_failed=0 if ok else 1,
                        seconds_total=seconds,
                        last_started_at=started_at,
                        last_outcome=outcome,
                        last_seconds=seconds,
                        last_success_at=finished_at if ok else None,
                    )
                )
            return
        except IntegrityError:
            continue  # another process recorded the job's first run meanwhile: add to its row
    raise RuntimeError(f"could not record a run of {job!r}")


def job_run_totals(session: Session) -> list[JobRunTotal]:
    """Every job's totals, by name."""
    return list(session.scalars(select(JobRunTotal).order_by(JobRunTotal.job)))
