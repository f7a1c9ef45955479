"""The email outbox: rows are claimed before sending and marked sent only after the SMTP server accepted.

Never twice: a unique ``dedupe_key`` per message; a claim is one conditional UPDATE committed before the
message leaves; a row still 'sending' long after its claim (its sender died between claim and outcome) is
not retried but set to 'unknown' for the operator (`giftrec outbox list --unknown`, `outbox resolve`).
This module queues, lists and resolves; ``domain.messaging.sending`` sends.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import Conflict, InvalidInput, NotFound
from domain.models import EMAIL_STATUSES, AuditLog, Customer, GiftSelection, OutboundEmail

log = logging.getLogger(__name__)

#: Selection states an email may still move on to 'sent' (or 'failed').
UNSENT_SELECTION_STATUSES = ("planned", "ready", "awaiting_review", "approved", "failed")
#: Rows that count against the frequency cap when queueing: sent, about to be, or maybe sent.
CAPPED_STATUSES = ("queued", "sending", "sent", "unknown")
#: What the cap is re-checked against when a message is about to leave: what left or may have left.
SENT_OR_MAYBE = ("sending", "sent", "unknown")
#: First key of PostgreSQL's two-key advisory locks taken for a customer's mail ("mail").
_MAIL_LOCK_SPACE = 0x6D61696C
#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 900
#: Outbox rows per bulk INSERT (each carries its rendered bodies).
ENQUEUE_CHUNK = 500


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
    deadline_at: dt.datetime | None = None,
) -> OutboundEmail | None:
    """Add a message to the outbox unless one with ``dedupe_key`` exists (then return None).

    ``deadline_at``: the message is never sent from then on (cancelled instead); without one it is
    retried ``mail.max_attempts`` times.
    """
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
        deadline_at=deadline_at,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent run queued the same key first
        return None
    return row


def enqueue_many(session: Session, messages: list[dict[str, Any]]) -> None:
    """:func:`enqueue` of many messages (dicts of its keyword arguments) in a few statements.

    A message whose ``dedupe_key`` exists already (queued earlier, or by a concurrent run that committed
    first) is left out by the database (``ON CONFLICT DO NOTHING``), so nothing is queued twice.
    """
    if not messages:
        return
    dialect = session.get_bind().dialect.name
    insert_of: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - giftrec runs on these two
        raise RuntimeError(f"enqueue_many does not know the {dialect} dialect")
    rows = [
        {
            **{k: v for k, v in m.items() if k not in ("not_before",)},
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": m["not_before"],
            "deadline_at": m.get("deadline_at"),
        }
        for m in messages
    ]
    stmt = insert_of(OutboundEmail).on_conflict_do_nothing(index_elements=[OutboundEmail.dedupe_key])
    for start in range(0, len(rows), ENQUEUE_CHUNK):
        session.execute(stmt, rows[start : start + ENQUEUE_CHUNK])


def lock_customer_mail(session: Session, customer_id: int) -> None:
    """Serialise decisions about one customer's mail (queueing, the cap at send time) until commit.

    PostgreSQL: a transaction-level advisory lock. SQLite: a writing transaction already holds the
    database's only write lock, so nothing is needed.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :customer)"),
            {"space": _MAIL_LOCK_SPACE, "customer": customer_id},
        )


def next_marketing_slot(
    session: Session,
    customer_id: int,
    now: dt.datetime,
    cap_days: int,
    *,
    statuses: tuple[str, ...] = CAPPED_STATUSES,
    exclude_id: int | None = None,
) -> dt.datetime:
    """Earliest time another marketing email may go to the customer under the frequency cap.

    A message counts from its business time (``counted_at``, set at its claim), so a run ``--today``
    another day measures the cap on the same calendar as the one that sent it.
    """
    if cap_days <= 0:
        return now
    stmt = select(func.max(_capped_at())).where(
        OutboundEmail.customer_id == customer_id, OutboundEmail.status.in_(statuses)
    )
    if exclude_id is not None:
        stmt = stmt.where(OutboundEmail.id != exclude_id)
    latest = session.scalar(stmt)
    if latest is None:
        return now
    return max(now, latest + dt.timedelta(days=cap_days))


def next_marketing_slots(
    session: Session, customer_ids: Iterable[int], now: dt.datetime, cap_days: int
) -> dict[int, dt.datetime]:
    """:func:`next_marketing_slot` of many customers at once: one grouped query per chunk of ids.

    Returns the slot of every customer whose cap runs past ``now``; the others may be emailed now.
    """
    if cap_days <= 0:
        return {}
    ids = sorted(set(customer_ids))
    cap = dt.timedelta(days=cap_days)
    out: dict[int, dt.datetime] = {}
    for start in range(0, len(ids), IN_CHUNK):
        rows = session.execute(
            select(OutboundEmail.customer_id, func.max(_capped_at()))
            .where(
                OutboundEmail.customer_id.in_(ids[start : start + IN_CHUNK]),
                OutboundEmail.status.in_(CAPPED_STATUSES),
            )
            .group_by(OutboundEmail.customer_id)
        )
        for cid, latest in rows:
            if cid is not None and latest is not None and latest + cap > now:
                out[cid] = latest + cap
    return out


def _capped_at() -> Any:
    """When a message counts for the cap: its business time, else when it went, was claimed or is due."""
    e = OutboundEmail
    return func.coalesce(e.counted_at, e.sent_at, e.claimed_at, e.next_attempt_at)


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
            counted_at=at,
            claimed_by=actor[:100],
            sent_at=at,
        )
    )
    set_selection_status(session, selection.id, "sent", "sent by the shop's email platform")
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


def set_selection_status(session: Session, selection_id: int | None, status: str, reason: str | None) -> None:
    """Move a selection whose email has not gone out on to ``status`` (sent, failed, skipped)."""
    if selection_id is None:
        return
    session.execute(
        update(GiftSelection)
        .where(GiftSelection.id == selection_id, GiftSelection.status.in_(UNSENT_SELECTION_STATUSES))
        .values(status=status, status_reason=reason)
        .execution_options(synchronize_session=False)
    )


def outbox_counts(session: Session, now: dt.datetime) -> tuple[dict[str, int], dt.datetime | None]:
    """Messages per status (every status, zero included), and when the oldest reminder that is due and
    not sent yet (queued, ``next_attempt_at`` passed) became due: for the operator's metrics."""
    counts = dict.fromkeys(EMAIL_STATUSES, 0)
    for status, n in session.execute(
        select(OutboundEmail.status, func.count()).group_by(OutboundEmail.status)
    ):
        counts[str(status)] = int(n)
    oldest = session.scalar(
        select(func.min(OutboundEmail.next_attempt_at)).where(
            OutboundEmail.status == "queued",
            OutboundEmail.kind == "reminder",
            OutboundEmail.next_attempt_at <= now,
        )
    )
    return counts, oldest


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
        set_selection_status(session, row.selection_id, "sent", None)
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


def retry_failed(
    session: Session, *, since: dt.datetime, until: dt.datetime, now: dt.datetime, actor: str
) -> tuple[list[int], list[int]]:
    """Queue again every message that failed for good during [since, until) (its last attempt, UTC).

    Returns (queued again, left alone because their deadline has passed). The frequency cap, consent and
    the deadline are re-checked when each one leaves, as for any message.
    """
    rows = session.scalars(
        select(OutboundEmail)
        .where(
            OutboundEmail.status == "failed",
            OutboundEmail.claimed_at >= since,
            OutboundEmail.claimed_at < until,
        )
        .order_by(OutboundEmail.id)
        .with_for_update()
    ).all()
    queued, expired = [], []
    for row in rows:
        if row.deadline_at is not None and row.deadline_at <= now:
            expired.append(row.id)
            continue
        row.status, row.next_attempt_at, row.attempts = "queued", now, 0
        row.claimed_at = row.claimed_by = None
        queued.append(row.id)
    session.add(
        AuditLog(
            actor=actor,
            action="outbox.retry_failed",
            entity_type="outbound_email",
            entity_id=f"{since:%Y-%m-%dT%H:%M}..{until:%Y-%m-%dT%H:%M}",
            details={"queued": queued, "past_deadline": expired},
            at=now,
        )
    )
    session.flush()
    return queued, expired
