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

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.lifecycle.triggers import Firing
from domain.models import Customer, TriggerAssignment
from recommender.triggers import ARM_CODES, assign_arms, cooldown_over, period_of

__all__ = ["record_firings"]

_EPOCH = dt.date(1970, 1, 1)
IN_CHUNK = 900


def _chunks(values: Sequence[int]) -> list[Sequence[int]]:
    return [values[i : i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK)]


def record_firings(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    trigger: str,
    firings: list[Firing],
    segments: dict[int, str],
) -> tuple[list[tuple[TriggerAssignment, Firing]], dict[str, int]]:
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
    rows = [
        TriggerAssignment(
            customer_id=f.customer_id,
            trigger=trigger,
            window_key=f.window_key,
            eligible_on=today,
            eligible_at=now,
            period=period,
            arm=ARM_CODES[int(arm)],
            details={**f.details, "product_ids": list(f.product_ids)},
        )
        for f, arm in zip(fresh, arms.tolist(), strict=True)
    ]
    session.add_all(rows)
    session.flush()
    return list(zip(rows, fresh, strict=True)), skipped
