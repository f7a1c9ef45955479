"""Recording eligibility: audience, once per window, cooldown, and the arm each customer is drawn into.

A firing becomes a :class:`~domain.models.TriggerAssignment` when the customer is in the trigger's audience
(RFM segments of the newest snapshot; an empty audience is everyone), has no assignment for the same window
yet, and none for the trigger within its cooldown. The arm (treatment, per-trigger control, global
holdout) is a hash of (the shop's customer id, trigger, quarter) (:func:`recommender.triggers.assign_arms`),
so a re-run draws the same. Control and holdout members are recorded and never emailed: the campaign
report compares arms as assigned (intention to treat).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from config import Settings
from domain.lifecycle.triggers import Firing
from domain.models import Customer, TriggerAssignment
from recommender.triggers import ARM_CODES, assign_arms, cooldown_over, period_of

__all__ = ["Recorded", "record_firings", "save_outcomes"]

_EPOCH = dt.date(1970, 1, 1)
IN_CHUNK = 900
#: Rows per bulk INSERT / UPDATE.
INSERT_CHUNK = 1000


def _chunks(values: Sequence[int]) -> list[Sequence[int]]:
    return [values[i : i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK)]


@dataclass
class Recorded:
    """A new assignment as the run sees it; :func:`save_outcomes` writes its reason and selection."""

    id: int
    customer_id: int
    trigger: str
    arm: str
    reason: str | None = None
    selection_id: int | None = None


def record_firings(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    trigger: str,
    firings: list[Firing],
    segments: dict[int, str],
) -> tuple[list[tuple[Recorded, Firing]], dict[str, int]]:
    """Record the firings of one trigger that pass audience, window and cooldown; never commits.

    Returns the new assignments with their firings, and counts of what was left out and why.
    """
    skipped = {"audience": 0, "same window": 0, "cooldown": 0}
    audience = settings.triggers.audience(trigger)
    if audience:
        kept = [f for f in firings if segments.get(f.customer_id) in audience]
        skipped["audience"] = len(firings) - len(kept)
        firings = kept
    if not firings:
        return [], skipped
    ids = sorted({f.customer_id for f in firings})
    last_fired: dict[int, dt.date] = {}
    windows: set[tuple[int, str]] = set()
    for chunk in _chunks(ids):
        for cid, on in session.execute(
            select(TriggerAssignment.customer_id, func.max(TriggerAssignment.eligible_on))
            .where(TriggerAssignment.trigger == trigger, TriggerAssignment.customer_id.in_(chunk))
            .group_by(TriggerAssignment.customer_id)
        ):
            last_fired[cid] = on
        for cid, key in session.execute(
            select(TriggerAssignment.customer_id, TriggerAssignment.window_key).where(
                TriggerAssignment.trigger == trigger, TriggerAssignment.customer_id.in_(chunk)
            )
        ):
            windows.add((cid, key))
    today = now.date()
    fresh, seen = [], set()
    for f in firings:
        if (f.customer_id, f.window_key) in windows or f.customer_id in seen:
            skipped["same window"] += 1
            continue
        fresh.append(f)
        seen.add(f.customer_id)  # one email per customer and trigger per run
    last = np.array(
        [(last_fired[f.customer_id] - _EPOCH).days if f.customer_id in last_fired else -1 for f in fresh],
        dtype=np.int64,
    )
    ok = cooldown_over(last, (today - _EPOCH).days, getattr(settings.triggers, f"{trigger}_cooldown_days"))
    skipped["cooldown"] = int((~ok).sum())
    fresh = [f for f, keep in zip(fresh, ok.tolist(), strict=True) if keep]
    if not fresh:
        return [], skipped
    period = period_of(today)
    external: dict[int, str] = {}
    for chunk in _chunks(sorted({f.customer_id for f in fresh})):
        for cid, key in session.execute(
            select(Customer.id, Customer.external_id).where(Customer.id.in_(chunk))
        ):
            external[cid] = key
    arms = assign_arms(
        [external[f.customer_id] for f in fresh],
        trigger,
        period,
        settings.triggers.holdout_share,
        settings.triggers.control_share,
    )
    names = [ARM_CODES[int(arm)] for arm in arms.tolist()]
    rows = [
        {
            "customer_id": f.customer_id,
            "trigger": trigger,
            "window_key": f.window_key,
            "eligible_on": today,
            "eligible_at": now,
            "period": period,
            "arm": arm,
            # control and holdout are never emailed: their reason is known now
            "reason": None if arm == "treatment" else f"{arm} group: never emailed",
            "details": {**f.details, "product_ids": list(f.product_ids)},
        }
        for f, arm in zip(fresh, names, strict=True)
    ]
    table = cast(Table, TriggerAssignment.__table__)
    recorded: list[tuple[Recorded, Firing]] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        part = rows[start : start + INSERT_CHUNK]
        new_ids = session.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), part
        ).scalars()
        recorded += [
            (Recorded(int(i), f.customer_id, trigger, arm), f)
            for i, f, arm in zip(
                new_ids, fresh[start : start + INSERT_CHUNK], names[start : start + INSERT_CHUNK], strict=True
            )
        ]
    return recorded, skipped


def save_outcomes(session: Session, recorded: Sequence[Recorded]) -> None:
    """Write what became of the treated (their selection, or why they got none): one executemany."""
    changed = [
        {"id": r.id, "reason": r.reason, "selection_id": r.selection_id}
        for r in recorded
        if r.arm == "treatment" and (r.reason is not None or r.selection_id is not None)
    ]
    table = cast(Table, TriggerAssignment.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(reason=bindparam("b_reason"), selection_id=bindparam("b_selection_id"))
    )
    for start in range(0, len(changed), INSERT_CHUNK):
        session.execute(
            stmt,
            [
                {"b_id": c["id"], "b_reason": c["reason"], "b_selection_id": c["selection_id"]}
                for c in changed[start : start + INSERT_CHUNK]
            ],
        )
