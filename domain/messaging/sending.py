"""Sending the outbox: claim one row (committed), re-check it, send, record the outcome (committed).

Two clocks. ``now`` is the business instant (a job's ``--today``): what is due, deadlines, the frequency
cap and retry times are measured on it. ``clock`` is the wall clock: claims, ``sent_at`` and the age at
which a claim counts as abandoned. A run ``--today`` another day therefore never ages a live sender's claim.

Re-checked at claim time, under the customer's lock: consent and erasure, a skipped selection, the
message's deadline (the occasion minus ``mail.deadline_margin_hours``: past it the message is cancelled,
never sent late) and the frequency cap against what was sent or may have been (an operator's resend or two
queueing runs side by side cannot send two inside it). A reminder is retried until its deadline; an SMTP
login or configuration error pauses the whole queue (``domain.messaging.pause``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.db import session_scope
from domain.messaging import pause as queue_pause
from domain.messaging.mail import (
    ConfigurationMailError,
    Mailer,
    MailError,
    OutgoingEmail,
    TemporaryMailError,
    UnknownOutcomeError,
    message_id_for,
)
from domain.messaging.outbox import (
    SENT_OR_MAYBE,
    claim_timeout,
    lock_customer_mail,
    next_marketing_slot,
    set_selection_status,
)
from domain.messaging.signing import LinkSigner
from domain.models import Customer, GiftSelection, OutboundEmail
from domain.models._types import utcnow

log = logging.getLogger(__name__)

#: A retry is never scheduled closer to the deadline than this: the attempt needs time to happen.
DEADLINE_SLACK = dt.timedelta(minutes=1)


@dataclass
class OutboxReport:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    #: Claimed, then put back by the frequency cap (another email went out inside it meanwhile).
    deferred: list[int] = field(default_factory=list)
    #: Rows found in 'sending' past the claim timeout and set to 'unknown' by this run.
    abandoned: list[int] = field(default_factory=list)
    #: Why the queue is paused after this run (None: it is not).
    paused: str | None = None
    #: This run's probe found the server well again and lifted the pause.
    resumed: bool = False
    #: The stop flag was raised: the run ended between two messages.
    stopped: bool = False

    def summary(self) -> str:
        text = (
            f"sent {len(self.sent)}, retry later {len(self.retried)}, failed {len(self.failed)}, "
            f"unknown {len(self.unknown)}, cancelled {len(self.cancelled)}, "
            f"abandoned claims set to unknown {len(self.abandoned)}"
        )
        if self.deferred:
            text += f", deferred by the frequency cap {len(self.deferred)}"
        if self.resumed:
            text += "; a probe of the SMTP server succeeded: queue resumed"
        if self.paused:
            text += f"; QUEUE PAUSED: {self.paused} (`giftrec outbox resume` once fixed)"
        if self.stopped:
            text += "; stopped early on request"
        return text


@dataclass(frozen=True)
class _Claimed:
    id: int
    attempts: int
    selection_id: int | None
    email: OutgoingEmail
    customer_id: int | None = None
    deadline_at: dt.datetime | None = None
    #: Decided at claim time: 'cancelled' or 'deferred' (nothing to send), else None.
    outcome: str | None = None


class _Clock:
    """``now`` as given, advanced by the time this run has taken: business times stay consistent."""

    def __init__(self, now: dt.datetime) -> None:
        self.start, self.t0 = now, time.monotonic()

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=time.monotonic() - self.t0)


def _mark_abandoned(session: Session, wall: dt.datetime, timeout: dt.timedelta) -> list[int]:
    rows = session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.status == "sending", OutboundEmail.claimed_at < wall - timeout)
        .values(
            status="unknown",
            last_error=(
                f"still 'sending' {int(timeout.total_seconds())} s after its claim: the sender stopped "
                "before recording an outcome; check the mail server's log, then "
                "`giftrec outbox resolve ID --sent` or `--resend`"
            ),
        )
        .returning(OutboundEmail.id, OutboundEmail.claimed_by)
        .execution_options(synchronize_session=False)
    ).all()
    for row in rows:
        log.warning("outbox: email %s claimed by %s has an unknown outcome; not resending", *row)
    return [row.id for row in rows]


def _deadline_reason(deadline: dt.datetime, last_error: str | None) -> str:
    text = f"deadline {deadline:%Y-%m-%d %H:%M} UTC passed before the email could be sent"
    return f"{text} (last error: {last_error})"[:2000] if last_error else text


def _cancel_expired(session: Session, now: dt.datetime) -> list[int]:
    """Queued rows whose deadline has passed (the relay was down, the queue paused) are cancelled."""
    rows = session.execute(
        select(OutboundEmail.id, OutboundEmail.selection_id, OutboundEmail.deadline_at)
        .add_columns(OutboundEmail.last_error)
        .where(OutboundEmail.status == "queued", OutboundEmail.deadline_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        reason = _deadline_reason(row.deadline_at, row.last_error)
        _set_status(session, row.id, ("queued",), status="cancelled", last_error=reason)
        set_selection_status(session, row.selection_id, "skipped", reason[:300])
        log.warning("outbox: email %s cancelled: %s", row.id, reason)
    return [row.id for row in rows]


def _set_status(session: Session, email_id: int, current: tuple[str, ...], **values: Any) -> int:
    result = session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.id == email_id, OutboundEmail.status.in_(current))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _claim_next(
    session: Session,
    now: dt.datetime,
    wall: dt.datetime,
    worker_id: str,
    settings: Settings,
) -> _Claimed | None | bool:
    """Claim one due row. Returns it, None when nothing is due, False when a concurrent sender won it."""
    due = (OutboundEmail.status == "queued", OutboundEmail.next_attempt_at <= now)
    candidate = (
        select(OutboundEmail.id)
        .where(*due)
        .order_by(OutboundEmail.next_attempt_at, OutboundEmail.id)
        .limit(1)
        .with_for_update(skip_locked=True)  # PostgreSQL: concurrent senders take different rows
        .scalar_subquery()
    )
    row = session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.id == candidate, OutboundEmail.status == "queued")
        .values(
            status="sending",
            claimed_at=wall,
            counted_at=now,
            claimed_by=worker_id,
            attempts=OutboundEmail.attempts + 1,
        )
        .returning(
            OutboundEmail.id,
            OutboundEmail.attempts,
            OutboundEmail.selection_id,
            OutboundEmail.customer_id,
            OutboundEmail.dedupe_key,
            OutboundEmail.to_address,
            OutboundEmail.subject,
            OutboundEmail.body_text,
            OutboundEmail.body_html,
            OutboundEmail.deadline_at,
            OutboundEmail.last_error,
        )
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        still_due = session.scalar(select(exists().where(*due)))
        return False if still_due else None
    email = OutgoingEmail(
        to_address=row.to_address,
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html,
        message_id=message_id_for(row.dedupe_key, settings.mail.from_address),
    )
    claimed = _Claimed(row.id, row.attempts, row.selection_id, email, row.customer_id, row.deadline_at)
    return dataclasses.replace(claimed, outcome=_recheck(session, row, now, settings))


def _recheck(session: Session, row: Any, now: dt.datetime, settings: Settings) -> str | None:
    """Whether the claimed message may still go: None, or 'cancelled' / 'deferred' (row updated)."""
    if row.deadline_at is not None and now >= row.deadline_at:
        reason = _deadline_reason(row.deadline_at, row.last_error)
        _set_status(session, row.id, ("sending",), status="cancelled", last_error=reason)
        set_selection_status(session, row.selection_id, "skipped", reason[:300])
        return "cancelled"
    if row.customer_id is None:
        return None
    lock_customer_mail(session, row.customer_id)  # held until this claim commits
    problem = _consent_problem(session, row)
    if problem is not None:
        _set_status(session, row.id, ("sending",), status="cancelled", last_error=problem)
        return "cancelled"
    slot = next_marketing_slot(
        session,
        row.customer_id,
        now,
        settings.mail.frequency_cap_days,
        statuses=SENT_OR_MAYBE,
        exclude_id=row.id,
    )
    if slot <= now:
        return None
    if row.deadline_at is not None and slot >= row.deadline_at:
        reason = f"frequency cap: nothing may go before {slot:%Y-%m-%d %H:%M} UTC, past the deadline"
        _set_status(session, row.id, ("sending",), status="cancelled", last_error=reason)
        set_selection_status(session, row.selection_id, "skipped", reason[:300])
        return "cancelled"
    _set_status(
        session,
        row.id,
        ("sending",),
        status="queued",
        attempts=row.attempts - 1,  # not an attempt: nothing was tried
        next_attempt_at=slot,
        claimed_at=None,
        claimed_by=None,
        counted_at=None,
        last_error=f"deferred by the frequency cap until {slot:%Y-%m-%d %H:%M} UTC",
    )
    return "deferred"


def _consent_problem(session: Session, row: Any) -> str | None:
    """Why a claimed marketing message must not go out any more, or None."""
    customer = session.get(Customer, row.customer_id, populate_existing=True)
    if customer is None or customer.erased_at is not None:
        return "customer erased"
    if customer.unsubscribed_at is not None:
        return "customer unsubscribed"
    if not customer.email_consent:
        return "no email consent"
    if row.selection_id is not None:
        status = session.scalar(select(GiftSelection.status).where(GiftSelection.id == row.selection_id))
        if status == "skipped":
            return "selection skipped"
    return None


def _record(
    session: Session,
    claimed: _Claimed,
    worker_id: str,
    settings: Settings,
    now: dt.datetime,
    wall: dt.datetime,
    error: MailError | None,
    report: OutboxReport,
) -> None:
    mine = (OutboundEmail.id == claimed.id, OutboundEmail.claimed_by == worker_id)
    if error is None:
        # 'unknown' too: a slow send may have been declared abandoned meanwhile, but now we know it went out.
        done = session.execute(
            update(OutboundEmail)
            .where(*mine, OutboundEmail.status.in_(("sending", "unknown")))
            .values(status="sent", sent_at=wall, message_id=claimed.email.message_id, last_error=None)
            .execution_options(synchronize_session=False)
        )
        if not getattr(done, "rowcount", 1):
            log.error("outbox: email %s was sent but its row changed meanwhile", claimed.id)
        set_selection_status(session, claimed.selection_id, "sent", None)
        report.sent.append(claimed.id)
        return
    text = str(error)[:2000]
    values: dict[str, Any]
    if isinstance(error, UnknownOutcomeError):
        values = {"status": "unknown"}
        report.unknown.append(claimed.id)
    elif isinstance(error, ConfigurationMailError):
        # Not the message's fault: put it back untouched (the attempt does not count) and pause the queue.
        values = {"status": "queued", "attempts": claimed.attempts - 1}
        values |= {"claimed_at": None, "claimed_by": None, "counted_at": None}
        queue_pause.pause(session, settings.mail, reason=text, now=wall, by=worker_id)
        report.paused = text
        report.retried.append(claimed.id)
    elif isinstance(error, TemporaryMailError):
        values = _retry_values(claimed, settings, now, text, report)
    else:  # permanent: a 5xx, or a message that cannot be built
        values = {"status": "failed"}
        report.failed.append(claimed.id)
    text = values.pop("last_error", text)
    if values["status"] == "failed":
        set_selection_status(session, claimed.selection_id, "failed", f"email failed: {text}"[:300])
    elif values["status"] == "cancelled":
        set_selection_status(session, claimed.selection_id, "skipped", text[:300])
    session.execute(
        update(OutboundEmail)
        .where(*mine, OutboundEmail.status == "sending")
        .values(last_error=text, **values)
        .execution_options(synchronize_session=False)
    )
    log.warning("outbox: email %s attempt %s: %s -> %s", claimed.id, claimed.attempts, text, values["status"])


def _retry_values(
    claimed: _Claimed, settings: Settings, now: dt.datetime, text: str, report: OutboxReport
) -> dict[str, Any]:
    """A temporary failure: again after the back-off, until the deadline (or max_attempts without one)."""
    retry = {"status": "queued", "claimed_at": None, "claimed_by": None}
    later = now + queue_pause.backoff(settings.mail, claimed.attempts)
    if claimed.deadline_at is not None:
        latest = claimed.deadline_at - DEADLINE_SLACK
        if now < latest:
            report.retried.append(claimed.id)
            return retry | {"next_attempt_at": min(later, latest)}
        report.cancelled.append(claimed.id)
        return {"status": "cancelled", "last_error": _deadline_reason(claimed.deadline_at, text)}
    if claimed.attempts < settings.mail.max_attempts:
        report.retried.append(claimed.id)
        return retry | {"next_attempt_at": later}
    report.failed.append(claimed.id)
    return {"status": "failed", "last_error": f"gave up after {claimed.attempts} attempts: {text}"[:2000]}


def send_outbox(
    session_factory: sessionmaker[Session],
    settings: Settings,
    mailer: Mailer,
    now: dt.datetime,
    worker_id: str,
    *,
    limit: int | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    stop: Callable[[], bool] = lambda: False,
) -> OutboxReport:
    """Send what is due at business time ``now``, one row at a time, until ``stop()`` says so.

    ``clock`` is the wall clock for claims and leases (tests move it); ``stop`` is checked between
    messages, so the one on the wire is always finished and recorded.
    """
    signer = LinkSigner.from_settings(settings)
    business = _Clock(now)
    report = OutboxReport()
    with session_scope(session_factory) as session:
        report.abandoned = _mark_abandoned(session, clock(), claim_timeout(settings))
        report.cancelled.extend(_cancel_expired(session, business()))
    report.paused, report.resumed = queue_pause.probe_if_paused(
        session_factory, mailer, settings.mail, clock(), worker_id
    )
    lost_races = 0
    while report.paused is None and (
        limit is None or len(report.sent) + len(report.failed) + len(report.retried) < limit
    ):
        if stop():
            report.stopped = True
            break
        with session_scope(session_factory) as session:
            claimed = _claim_next(session, business(), clock(), worker_id, settings)
        if claimed is None:
            break
        if claimed is False:
            lost_races += 1
            if lost_races > 1000:  # pragma: no cover - a guard, not a path
                break
            continue
        assert isinstance(claimed, _Claimed)
        if claimed.outcome == "cancelled":
            report.cancelled.append(claimed.id)
            continue
        if claimed.outcome == "deferred":
            report.deferred.append(claimed.id)
            continue
        if claimed.customer_id is not None:  # RFC 8058 one-click unsubscribe for mail clients
            url = signer.unsubscribe_url(customer_id=claimed.customer_id)
            headers = (
                ("List-Unsubscribe", f"<{url}>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            )
            claimed = dataclasses.replace(claimed, email=dataclasses.replace(claimed.email, headers=headers))
        error: MailError | None = None
        try:
            mailer.send(claimed.email)
        except MailError as exc:
            error = exc
        except Exception as exc:  # a bug in a mailer: we cannot tell whether it sent, so never resend blindly
            log.exception("outbox: mailer crashed on email %s", claimed.id)
            error = UnknownOutcomeError(f"mailer error: {exc!r}")
        with session_scope(session_factory) as session:
            _record(session, claimed, worker_id, settings, business(), clock(), error, report)
    return report
