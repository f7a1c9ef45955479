"""The email outbox: rows are claimed before sending and marked sent only after the SMTP server accepted.

Never twice: a unique ``dedupe_key`` per message; a claim is one conditional UPDATE committed before the
message leaves; a row still 'sending' long after its claim (its sender died between claim and outcome) is
not retried but set to 'unknown' for the operator (`giftrec outbox list --unknown`, `outbox resolve`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.db import session_scope
from domain.errors import Conflict, InvalidInput, NotFound
from domain.messaging.mail import (
    Mailer,
    MailError,
    OutgoingEmail,
    TemporaryMailError,
    UnknownOutcomeError,
    message_id_for,
)
from domain.messaging.signing import LinkSigner
from domain.models import AuditLog, Customer, GiftSelection, OutboundEmail

log = logging.getLogger(__name__)

#: Selection states an email may still move on to 'sent' (or 'failed').
UNSENT_SELECTION_STATUSES = ("planned", "ready", "awaiting_review", "approved", "failed")
#: Rows that count against the frequency cap: sent, about to be, or maybe sent.
CAPPED_STATUSES = ("queued", "sending", "sent", "unknown")


def enqueue(
    session: Session,
    *,
    dedupe_key: str,
    kind: str,
    to_address: str,
    subject: str,
    body_text: str,
    body_html: str | None,
    customer_id: int | None,
    selection_id: int | None = None,
    not_before: dt.datetime,
) -> OutboundEmail | None:
    """Add a message to the outbox unless one with ``dedupe_key`` exists (then return None)."""
    if session.scalar(select(exists().where(OutboundEmail.dedupe_key == dedupe_key))):
        return None
    row = OutboundEmail(
        dedupe_key=dedupe_key,
        kind=kind,
        to_address=to_address,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        customer_id=customer_id,
        selection_id=selection_id,
        status="queued",
        attempts=0,
        next_attempt_at=not_before,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent run queued the same key first
        return None
    return row


def next_marketing_slot(session: Session, customer_id: int, now: dt.datetime, cap_days: int) -> dt.datetime:
    """Earliest time another marketing email may go to the customer under the frequency cap."""
    if cap_days <= 0:
        return now
    when = func.coalesce(OutboundEmail.sent_at, OutboundEmail.claimed_at, OutboundEmail.next_attempt_at)
    latest = session.scalar(
        select(func.max(when)).where(
            OutboundEmail.customer_id == customer_id, OutboundEmail.status.in_(CAPPED_STATUSES)
        )
    )
    if latest is None:
        return now
    return max(now, latest + dt.timedelta(days=cap_days))


def record_external_send(
    session: Session, selection: GiftSelection, customer: Customer, at: dt.datetime, actor: str
) -> bool:
    """The shop's own email platform reports that it sent ``selection``: the selection is sent and the
    message counts against the customer's frequency cap like one of ours. Idempotent (one row per
    selection); returns False when it had been reported already."""
    key = f"external:selection:{selection.id}"
    if session.scalar(select(OutboundEmail.id).where(OutboundEmail.dedupe_key == key)) is not None:
        return False
    cancel_queued(session, reason="sent by the shop's email platform", selection_ids=[selection.id])
    session.add(
        OutboundEmail(
            dedupe_key=key,
            customer_id=customer.id,
            selection_id=selection.id,
            kind="reminder",
            to_address=customer.email or "",
            subject="(sent by the shop's email platform)",
            body_text="",
            status="sent",
            next_attempt_at=at,
            claimed_at=at,
            claimed_by=actor[:100],
            sent_at=at,
        )
    )
    _set_selection(session, selection.id, "sent", "sent by the shop's email platform")
    session.add(
        AuditLog(
            actor=actor,
            action="selection.sent_externally",
            entity_type="gift_selection",
            entity_id=str(selection.id),
            at=at,
        )
    )
    session.flush()
    return True


def cancel_queued(
    session: Session,
    *,
    reason: str,
    customer_id: int | None = None,
    selection_ids: Select[Any] | Iterable[int] | None = None,
) -> int:
    """Cancel queued (not yet claimed) messages of a customer or of some selections; returns how many."""
    stmt = update(OutboundEmail).where(OutboundEmail.status == "queued")
    if customer_id is not None:
        stmt = stmt.where(OutboundEmail.customer_id == customer_id)
    if selection_ids is not None:
        stmt = stmt.where(OutboundEmail.selection_id.in_(selection_ids))
    if customer_id is None and selection_ids is None:
        raise ValueError("cancel_queued needs a customer or selections")
    result = session.execute(
        stmt.values(status="cancelled", last_error=reason).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def claim_timeout(settings: Settings) -> dt.timedelta:
    """How long after its claim a 'sending' row is considered abandoned (far beyond any SMTP exchange)."""
    return dt.timedelta(seconds=max(300.0, 20 * settings.mail.smtp_timeout))


@dataclass
class OutboxReport:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    #: Rows found in 'sending' past the claim timeout and set to 'unknown' by this run.
    abandoned: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"sent {len(self.sent)}, retry later {len(self.retried)}, failed {len(self.failed)}, "
            f"unknown {len(self.unknown)}, cancelled {len(self.cancelled)}, "
            f"abandoned claims set to unknown {len(self.abandoned)}"
        )


@dataclass(frozen=True)
class _Claimed:
    id: int
    attempts: int
    selection_id: int | None
    email: OutgoingEmail
    customer_id: int | None = None
    cancelled: bool = False


class _Clock:
    """``now`` as given, advanced by the time this run has taken: claims carry their true age."""

    def __init__(self, now: dt.datetime) -> None:
        self.start, self.t0 = now, time.monotonic()

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=time.monotonic() - self.t0)


def _mark_abandoned(session: Session, now: dt.datetime, timeout: dt.timedelta) -> list[int]:
    rows = session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.status == "sending", OutboundEmail.claimed_at < now - timeout)
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


def _claim_next(
    session: Session, now: dt.datetime, worker_id: str, from_address: str
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
        .values(status="sending", claimed_at=now, claimed_by=worker_id, attempts=OutboundEmail.attempts + 1)
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
        )
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        still_due = session.scalar(select(exists().where(*due)))
        return False if still_due else None
    reason = _still_wanted(session, row)
    if reason is not None:
        session.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id == row.id)
            .values(status="cancelled", last_error=reason)
            .execution_options(synchronize_session=False)
        )
    email = OutgoingEmail(
        to_address=row.to_address,
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html,
        message_id=message_id_for(row.dedupe_key, from_address),
    )
    return _Claimed(row.id, row.attempts, row.selection_id, email, row.customer_id, reason is not None)


def _still_wanted(session: Session, row: Any) -> str | None:
    """Why a claimed marketing message must not go out any more, or None."""
    if row.customer_id is None:
        return None
    customer = session.get(Customer, row.customer_id)
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


def _set_selection(session: Session, selection_id: int | None, status: str, reason: str | None) -> None:
    if selection_id is None:
        return
    session.execute(
        update(GiftSelection)
        .where(GiftSelection.id == selection_id, GiftSelection.status.in_(UNSENT_SELECTION_STATUSES))
        .values(status=status, status_reason=reason)
        .execution_options(synchronize_session=False)
    )


def _record(
    session: Session,
    claimed: _Claimed,
    worker_id: str,
    settings: Settings,
    now: dt.datetime,
    error: MailError | None,
    report: OutboxReport,
) -> None:
    mine = (OutboundEmail.id == claimed.id, OutboundEmail.claimed_by == worker_id)
    if error is None:
        # 'unknown' too: a slow send may have been declared abandoned meanwhile, but now we know it went out.
        done = session.execute(
            update(OutboundEmail)
            .where(*mine, OutboundEmail.status.in_(("sending", "unknown")))
            .values(status="sent", sent_at=now, message_id=claimed.email.message_id, last_error=None)
            .execution_options(synchronize_session=False)
        )
        if not getattr(done, "rowcount", 1):
            log.error("outbox: email %s was sent but its row changed meanwhile", claimed.id)
        _set_selection(session, claimed.selection_id, "sent", None)
        report.sent.append(claimed.id)
        return
    text = str(error)[:2000]
    values: dict[str, Any]
    if isinstance(error, UnknownOutcomeError):
        values = {"status": "unknown"}
        report.unknown.append(claimed.id)
    elif isinstance(error, TemporaryMailError) and claimed.attempts < settings.mail.max_attempts:
        delay = settings.mail.backoff_seconds * 2 ** (claimed.attempts - 1)
        values = {
            "status": "queued",
            "next_attempt_at": now + dt.timedelta(seconds=delay),
            "claimed_at": None,
            "claimed_by": None,
        }
        report.retried.append(claimed.id)
    else:
        if isinstance(error, TemporaryMailError):
            text = f"gave up after {claimed.attempts} attempts: {text}"
        values = {"status": "failed"}
        _set_selection(session, claimed.selection_id, "failed", f"email failed: {text}"[:300])
        report.failed.append(claimed.id)
    session.execute(
        update(OutboundEmail)
        .where(*mine, OutboundEmail.status == "sending")
        .values(last_error=text, **values)
        .execution_options(synchronize_session=False)
    )
    log.warning("outbox: email %s attempt %s: %s -> %s", claimed.id, claimed.attempts, text, values["status"])


def send_outbox(
    session_factory: sessionmaker[Session],
    settings: Settings,
    mailer: Mailer,
    now: dt.datetime,
    worker_id: str,
    *,
    limit: int | None = None,
) -> OutboxReport:
    """Send what is due, one row at a time: claim (committed), send, record the outcome (committed)."""
    signer = LinkSigner.from_settings(settings)
    clock = _Clock(now)
    report = OutboxReport()
    with session_scope(session_factory) as session:
        report.abandoned = _mark_abandoned(session, clock(), claim_timeout(settings))
    lost_races = 0
    while limit is None or len(report.sent) + len(report.failed) + len(report.retried) < limit:
        with session_scope(session_factory) as session:
            claimed = _claim_next(session, clock(), worker_id, settings.mail.from_address)
        if claimed is None:
            break
        if claimed is False:
            lost_races += 1
            if lost_races > 1000:  # pragma: no cover - a guard, not a path
                break
            continue
        assert isinstance(claimed, _Claimed)
        if claimed.cancelled:
            report.cancelled.append(claimed.id)
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
            _record(session, claimed, worker_id, settings, clock(), error, report)
    return report


def list_outbox(session: Session, statuses: Iterable[str] = (), limit: int = 200) -> list[OutboundEmail]:
    stmt = select(OutboundEmail).order_by(OutboundEmail.id).limit(limit)
    wanted = tuple(statuses)
    if wanted:
        stmt = stmt.where(OutboundEmail.status.in_(wanted))
    return list(session.scalars(stmt))


def resolve(session: Session, email_id: int, *, outcome: str, now: dt.datetime, actor: str) -> OutboundEmail:
    """The operator's decision on a message: 'sent' (it did arrive) or 'resend' (queue it again)."""
    row = session.get(OutboundEmail, email_id, with_for_update=True)
    if row is None:
        raise NotFound("email", email_id)
    if outcome == "sent":
        if row.status != "unknown":
            raise Conflict(f"email {email_id} is {row.status}; only an unknown outcome can be marked sent")
        row.status, row.sent_at = "sent", row.claimed_at or now
        _set_selection(session, row.selection_id, "sent", None)
    elif outcome == "resend":
        if row.status not in ("unknown", "failed"):
            raise Conflict(f"email {email_id} is {row.status}; only unknown or failed emails can be resent")
        row.status, row.next_attempt_at, row.attempts = "queued", now, 0
        row.claimed_at = row.claimed_by = None
    else:
        raise InvalidInput("outcome", "must be sent or resend")
    session.add(
        AuditLog(
            actor=actor,
            action=f"outbox.resolve_{outcome}",
            entity_type="outbound_email",
            entity_id=str(email_id),
            details={"last_error": row.last_error},
            at=now,
        )
    )
    return row
