"""The mail queue's pause: SMTP refused our login or configuration, so no message is worth trying.

A message-level failure (a 4xx, a refused recipient) is the message's; a login refused, a certificate that
does not verify or a server without STARTTLS is the configuration's and fails every message alike. Then
the whole queue pauses (a row in ``mail_pauses``, seen by every process) instead of burning each message's
attempts. A paused sender probes the server (connect, TLS, login, no message) with the outbox's back-off;
a probe that succeeds resumes the queue, and so does an operator's `giftrec outbox resume`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from config import MailSettings
from domain.db import session_scope
from domain.messaging.mail import Mailer, MailError
from domain.models import AuditLog, MailPause

log = logging.getLogger(__name__)

QUEUE = "smtp"


@dataclass(frozen=True)
class PauseState:
    reason: str
    paused_at: dt.datetime
    paused_by: str
    probes: int
    next_probe_at: dt.datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "paused_at": f"{self.paused_at:%Y-%m-%dT%H:%M:%SZ}",
            "paused_by": self.paused_by,
            "failed_probes": self.probes,
            "next_probe_at": f"{self.next_probe_at:%Y-%m-%dT%H:%M:%SZ}",
        }


def backoff(settings: MailSettings, attempt: int) -> dt.timedelta:
    """The outbox's delay before try number ``attempt + 1``: doubling from backoff_seconds, capped."""
    seconds = settings.backoff_seconds * 2 ** max(attempt - 1, 0)
    return dt.timedelta(seconds=min(seconds, settings.backoff_max_seconds))


def queue_status(session: Session) -> dict[str, object]:
    """The readiness check of the mail queue: failing while paused, but not blocking (the web app serves)."""
    state = current_pause(session)
    if state is None:
        return {"ok": True}
    return {"ok": False, "blocking": False, "error": "mail queue paused", "paused": state.as_dict()}


def current_pause(session: Session) -> PauseState | None:
    row = session.get(MailPause, QUEUE)
    if row is None:
        return None
    return PauseState(row.reason, row.paused_at, row.paused_by, row.probes, row.next_probe_at)


def pause(session: Session, settings: MailSettings, *, reason: str, now: dt.datetime, by: str) -> bool:
    """Pause the queue (wall-clock ``now``); False if it was paused already (the first reason stays)."""
    if session.scalar(select(MailPause.name).where(MailPause.name == QUEUE).with_for_update()) is not None:
        return False
    session.add(
        MailPause(
            name=QUEUE,
            reason=reason[:2000],
            paused_at=now,
            paused_by=by[:100],
            probes=0,
            next_probe_at=now + backoff(settings, 1),
        )
    )
    session.add(
        AuditLog(
            actor=by[:100],
            action="outbox.paused",
            entity_type="mail_queue",
            entity_id=QUEUE,
            details={"reason": reason[:2000]},
            at=now,
        )
    )
    session.flush()
    return True


def probe_failed(session: Session, settings: MailSettings, *, reason: str, now: dt.datetime) -> None:
    row = session.get(MailPause, QUEUE, with_for_update=True)
    if row is not None:
        row.probes += 1
        row.reason = reason[:2000]
        row.next_probe_at = now + backoff(settings, row.probes + 1)


def resume(session: Session, *, now: dt.datetime, actor: str, why: str) -> PauseState | None:
    """Lift the pause; returns what it was (None if the queue was not paused)."""
    state = current_pause(session)
    if state is None:
        return None
    session.execute(delete(MailPause).where(MailPause.name == QUEUE))
    session.add(
        AuditLog(
            actor=actor[:100],
            action="outbox.resumed",
            entity_type="mail_queue",
            entity_id=QUEUE,
            details={"why": why, "paused_at": state.paused_at.isoformat(), "reason": state.reason},
            at=now,
        )
    )
    return state


def probe_if_paused(
    session_factory: sessionmaker[Session],
    mailer: Mailer,
    settings: MailSettings,
    wall: dt.datetime,
    who: str,
) -> tuple[str | None, bool]:
    """(why the queue stays paused or None, whether this run lifted the pause)."""
    with session_scope(session_factory) as session:
        state = current_pause(session)
    if state is None:
        return None, False
    if wall < state.next_probe_at:
        return state.reason, False
    try:
        mailer.probe()
    except MailError as exc:
        with session_scope(session_factory) as session:
            probe_failed(session, settings, reason=str(exc), now=wall)
        log.warning("outbox: paused; probe of the SMTP server failed: %s", exc)
        return str(exc), False
    with session_scope(session_factory) as session:
        resume(session, now=wall, actor=who, why="a probe of the SMTP server succeeded")
    log.warning("outbox: a probe of the SMTP server succeeded; queue resumed (paused for: %s)", state.reason)
    return None, True
