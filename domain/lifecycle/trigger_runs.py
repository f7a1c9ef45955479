"""The nightly trigger run: who is eligible, their arm, the treated customers' emails, queued at once.

:func:`run_triggers` evaluates every trigger that is on (``settings.triggers``) after the day's RFM
snapshot: finders (:mod:`domain.lifecycle.triggers`) -> assignments with their arm
(:mod:`domain.lifecycle.assignments`) -> for the treated, unless a reminder wins, a selection with its
picks (:mod:`domain.lifecycle.trigger_drafting`) -> the outbox (:mod:`domain.lifecycle.trigger_emails`).
Idempotent: a second run the same day finds every window recorded and adds nothing. Never commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from config.settings import TRIGGERS
from domain.lifecycle.assignments import Recorded, record_firings, save_outcomes
from domain.lifecycle.phases import Phases, timed
from domain.lifecycle.trigger_drafting import draft_trigger_selections
from domain.lifecycle.trigger_emails import queue_trigger_emails, reminder_blocks_many
from domain.lifecycle.triggers import FINDERS, Firing, emailable_customers, latest_segments
from domain.models import Customer
from domain.models._types import naive_utc
from domain.serving.candidates import CandidatesFn, Catalog, default_candidates

__all__ = ["TriggerRunSummary", "run_triggers"]

log = logging.getLogger(__name__)


@dataclass
class TriggerRunSummary:
    """Per trigger: eligible (new assignments) by arm, and what became of the treated."""

    eligible: dict[str, dict[str, int]] = field(default_factory=dict)
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)
    drafted: dict[str, dict[str, int]] = field(default_factory=dict)
    reminder_won: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    skipped: int = 0
    seconds: float = 0.0
    #: Wall and CPU seconds of each phase: loading, then per trigger find, assign, curation, queueing.
    phases: Phases = field(default_factory=dict)

    def summary(self) -> str:
        parts = []
        for trigger, arms in self.eligible.items():
            n = sum(arms.values())
            drafted = self.drafted.get(trigger, {})
            parts.append(
                f"{trigger} {n} (treatment {arms.get('treatment', 0)}, control {arms.get('control', 0)}, "
                f"holdout {arms.get('holdout', 0)}; emails {drafted.get('ready', 0)}, "
                f"for review {drafted.get('awaiting_review', 0)}, reminder or cap first "
                f"{self.reminder_won.get(trigger, 0)})"
            )
        head = "triggers: " + ("; ".join(parts) if parts else "none on")
        return f"{head}; trigger emails queued {self.queued}, skipped {self.skipped}"


def run_triggers(
    session: Session, settings: Settings, now: dt.datetime, *, candidates_fn: CandidatesFn | None = None
) -> TriggerRunSummary:
    """Evaluate every trigger that is on for ``now`` and queue the treated customers' emails."""
    started = time.perf_counter()
    now = naive_utc(now)
    summary = TriggerRunSummary()
    on = [t for t in TRIGGERS if settings.triggers.is_on(t)]
    if not on:
        return summary
    phases = summary.phases
    with timed(phases, "triggers: consent, segments, VIPs"):
        allowed = emailable_customers(session)
        _, segments = latest_segments(session, now.date())
        vip = set(session.scalars(select(Customer.id).where(Customer.is_vip.is_(True))))
    catalog: Catalog | None = None
    for trigger in on:
        with timed(phases, f"{trigger}: find"):
            firings = FINDERS[trigger](session, settings, now, allowed)
        with timed(phases, f"{trigger}: assign"):
            recorded, left_out = record_firings(session, settings, now, trigger, firings, segments)
            arms: dict[str, int] = {}
            treated: list[tuple[Recorded, Firing, bool]] = []
            won = 0
            blocks = reminder_blocks_many(
                session, settings, (a.customer_id for a, _ in recorded if a.arm == "treatment"), now
            )
            for assignment, firing in recorded:
                arms[assignment.arm] = arms.get(assignment.arm, 0) + 1
                if assignment.arm != "treatment":  # recorded with its reason
                    continue
                blocked = blocks.get(assignment.customer_id)
                if blocked:
                    assignment.reason = blocked[:300]
                    won += 1
                    continue
                treated.append((assignment, firing, assignment.customer_id in vip))
            save_outcomes(session, [a for a, _ in recorded if a.reason is not None])  # reminder or cap won
        summary.eligible[trigger], summary.left_out[trigger], summary.reminder_won[trigger] = (
            arms,
            left_out,
            won,
        )
        if treated:
            if catalog is None:
                with timed(phases, "candidates: catalogue, model, bestsellers, season"):
                    catalog = Catalog.load(session)
                    if candidates_fn is None:
                        candidates_fn = default_candidates(session, settings, now=now, catalog=catalog)
            assert candidates_fn is not None
            with timed(phases, f"{trigger}: curation"):
                summary.drafted[trigger] = draft_trigger_selections(
                    session, settings, now, treated, catalog, candidates_fn
                )
                save_outcomes(session, [a for a, _, _ in treated])  # the emails read their assignment
            # queue this trigger's emails before the next trigger looks: the frequency cap then keeps a
            # customer eligible for two triggers from getting both
            with timed(phases, f"{trigger}: queueing"):
                report = queue_trigger_emails(session, settings, now)
            summary.queued += len(report.queued)
            summary.skipped += len(report.skipped)
    with timed(phases, "triggers: final flush"):
        session.flush()
    summary.seconds = time.perf_counter() - started
    log.info("%s", summary.summary())
    return summary
