"""Leases in the database (job_locks): one holder at a time, renewed before they expire."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from domain.db import session_scope
from domain.models import JobLock

#: The lease of the active scheduler (jobs/scheduler.py); /metrics reads whether one holds it.
SCHEDULER_LOCK = "scheduler"


def acquire_lease(
    sessions: sessionmaker[Session], name: str, holder: str, now: dt.datetime, ttl: dt.timedelta
) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; False while another holds it.

    One conditional UPDATE (ours, or expired) and, when no row exists yet, one INSERT that the primary key
    lets only one contender win; each in its own committed transaction.
    """
    with session_scope(sessions) as session:
        result = session.execute(
            update(JobLock)
            .where(JobLock.name == name, or_(JobLock.holder == holder, JobLock.expires_at <= now))
            .values(
                holder=holder,
                acquired_at=case((JobLock.holder == holder, JobLock.acquired_at), else_=now),
                expires_at=now + ttl,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            return True
    try:
        with session_scope(sessions) as session:
            if session.get(JobLock, name) is not None:
                return False
            session.add(JobLock(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def lease_holder(session: Session, name: str) -> JobLock | None:
    return session.scalar(select(JobLock).where(JobLock.name == name))


def release_lease(sessions: sessionmaker[Session], name: str, holder: str) -> None:
    with session_scope(sessions) as session:
        session.execute(delete(JobLock).where(JobLock.name == name, JobLock.holder == holder))


def lease_is_live(session: Session, name: str, now: dt.datetime) -> bool:
    """Whether someone holds lease ``name`` now (it exists and has not expired)."""
    lease = lease_holder(session, name)
    return lease is not None and lease.expires_at > now
