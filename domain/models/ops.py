"""Operational tables: API keys, the audit log, job locks and job run totals, the mail queue's pause."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base
from domain.models._types import CreatedAt, UTCDateTime, one_of

API_KEY_SCOPES = ("widget", "server", "email", "admin")


class ApiKey(Base):
    """An API key: only its prefix and a hash are stored; the secret is shown once."""

    __tablename__ = "api_keys"
    __table_args__ = (one_of("scope", API_KEY_SCOPES, "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, comment="public part, to find the key")
    key_hash: Mapped[str] = mapped_column(String(128), comment="sha256 of the whole key")
    scope: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100), default="")
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list, comment="CORS, widget keys")
    created_at: Mapped[CreatedAt]
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditLog(Base):
    """Who changed what: managers' edits, erasures, key changes, rollbacks."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[CreatedAt]
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(100), comment="cli, job:<name>, key:<prefix>, user:<email>")
    action: Mapped[str] = mapped_column(String(60), index=True)
    entity_type: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    @classmethod
    def by_user(cls, user: Any, action: str, entity_type: str, entity_id: object, **details: Any) -> AuditLog:
        """An entry for a change a signed-in :class:`~domain.models.User` made (``user:<email>``)."""
        return cls(
            actor_user_id=user.id,
            actor=f"user:{user.email}",
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            details=details,
        )


class JobLock(Base):
    """A lease in the database so that only one scheduler runs jobs."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    acquired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class JobRunTotal(Base):
    """What the schedulers have run, per job: counts by outcome, wall time, the last run.

    Written by whichever scheduler runs the job (one row per job, updated in place) and read by every web
    process's /metrics, so that the operator scrapes the job figures where the web's are, whatever host the
    scheduler runs on and however often it restarted or failed over.
    """

    __tablename__ = "job_run_totals"

    job: Mapped[str] = mapped_column(String(60), primary_key=True)
    runs_ok: Mapped[int] = mapped_column(default=0)
    runs_failed: Mapped[int] = mapped_column(default=0)
    seconds_total: Mapped[float] = mapped_column(Float, default=0.0, comment="wall time of every run, summed")
    last_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_outcome: Mapped[str] = mapped_column(String(10), comment="ok or failed")
    last_seconds: Mapped[float] = mapped_column(Float, comment="wall time of the last run")
    last_success_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), comment="when the last run that succeeded finished"
    )


class MailPause(Base):
    """The outbox is paused (one row, ``name='smtp'``): SMTP refused our login or configuration.

    Kept in the database so that every sender, the web app's /health/ready and `giftrec outbox` see it.
    Deleted on resume (an operator's `giftrec outbox resume`, or a probe of the server that succeeded).
    """

    __tablename__ = "mail_pauses"

    name: Mapped[str] = mapped_column(String(30), primary_key=True)
    reason: Mapped[str] = mapped_column(String(2000))
    paused_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    paused_by: Mapped[str] = mapped_column(String(100))
    probes: Mapped[int] = mapped_column(default=0, comment="failed probes since the pause")
    next_probe_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), comment="wall clock, not --today")
