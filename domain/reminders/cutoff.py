"""The VIP review cut-off: selections still awaiting review at their deadline are sent or skipped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from domain.models import (
    AuditLog,
    Customer,
    GiftSelection,
)
from domain.models._types import naive_utc

#: Who the audit log names for the cut-off decisions.
JOB_ACTOR = "job:plan-selections"


@dataclass
class CutoffSummary:
    approved: int = 0
    skipped: int = 0


def apply_review_cutoff(session: Session, settings: Settings, now: dt.datetime) -> CutoffSummary:
    """VIP selections still awaiting review at their cut-off: approve as is (``send``) or skip and alert.

    Skipping writes an audit-log entry for the customer's account manager (``selection.cutoff_skipped``,
    with ``alert: true``); approving writes ``selection.cutoff_approved``.
    """
    now = naive_utc(now)
    policy = settings.reminders.vip_cutoff_policy
    out = CutoffSummary()
    rows = session.execute(
        select(GiftSelection, Customer.account_manager_id)
        .join(Customer, Customer.id == GiftSelection.customer_id)
        .where(GiftSelection.status == "awaiting_review", GiftSelection.review_cutoff_at <= now)
        .order_by(GiftSelection.id)
    ).all()
    for selection, manager_id in rows:
        details: dict[str, Any] = {
            "customer_id": selection.customer_id,
            "account_manager_id": manager_id,
            "occasion_on": selection.occasion_on.isoformat(),
            "review_cutoff_at": (selection.review_cutoff_at or now).isoformat(),
            "policy": policy,
        }
        if policy == "skip":
            selection.status = "skipped"
            selection.status_reason = "not reviewed by the account manager before the cut-off"
            action = "selection.cutoff_skipped"
            details["alert"] = True
            out.skipped += 1
        else:
            selection.status = "approved"
            selection.approved_version = selection.version
            selection.status_reason = "not reviewed before the cut-off: sent as planned"
            action = "selection.cutoff_approved"
            out.approved += 1
        session.add(
            AuditLog(
                actor=JOB_ACTOR,
                action=action,
                entity_type="gift_selection",
                entity_id=str(selection.id),
                details=details,
            )
        )
    session.flush()
    return out
