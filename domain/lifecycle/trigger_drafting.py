"""Drafting trigger emails: the picks of each treated customer's email, as a gift selection.

A trigger email is a :class:`~domain.models.GiftSelection` with ``occasion_key = trigger:<name>:<assignment>``
and ``occasion_code`` the trigger's name, so it takes the reminders' path: a VIP client's waits for their
account manager (``awaiting_review``, with the review cut-off ``triggers.vip_review_hours`` ahead), edits
raise its version, and the outbox sends it at most once. Picks per trigger:

* replacement: three price tiers anchored on what the customer paid last time, from the category;
* running out: the products running out;
* win-back: the customer's best personalised picks;
* new arrivals: the new products ranked for the customer;
* abandoned cart: the cart's products, then a few personalised picks;
* review request: the order's products.

Scores are the reminders' blended candidates (collaborative, bestsellers...), computed in batches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from config import Settings
from domain.customers.rejections import OWN, load_rejections
from domain.lifecycle.assignments import Recorded
from domain.lifecycle.triggers import Firing
from domain.reminders.drafting import insert_selections
from domain.serving.candidates import CandidateRows, Candidates, CandidatesFn, Catalog
from recommender.curation import EXPLANATION_KEYS, SOURCES, CurationError, curate
from recommender.triggers import anchored_tier_bounds

__all__ = ["BATCH", "draft_trigger_selections", "occasion_key"]

BATCH = 256
#: Picks named by the trigger itself rather than by a score: their source and explanation key.
TRIGGER_SOURCES = {
    "running_out": ("repurchase", "running_out"),
    "abandoned_cart": ("cart", "left_in_cart"),
    "review_request": ("order", "review_this_product"),
}


def occasion_key(trigger: str, assignment_id: int) -> str:
    return f"trigger:{trigger}:{assignment_id}"


def _top(scores: np.ndarray, mask: np.ndarray, k: int) -> list[int]:
    idx = np.flatnonzero(mask & np.isfinite(scores))
    order = idx[np.lexsort((idx, -scores[idx]))]
    return [int(i) for i in order[:k]]


def _pick(
    catalog: Catalog, i: int, tier: int, position: int, score: float, source: str, why: str
) -> dict[str, Any]:
    return {
        "product_id": int(catalog.product_ids[i]),
        "tier": tier,
        "position": position,
        "score": round(float(score), 6),
        "source": source,
        "explanation": why,
        "price_at_pick": catalog.prices[i],
    }


def _scored(
    catalog: Catalog, cands: Candidates, row: int, idxs: Sequence[int], tier: int
) -> list[dict[str, Any]]:
    out = []
    for pos, i in enumerate(idxs):
        code = int(cands.sources[row][i])
        source = SOURCES[code] if 0 <= code < len(SOURCES) else "bestseller"
        out.append(_pick(catalog, i, tier, pos + 1, cands.scores[row][i], source, EXPLANATION_KEYS[source]))
    return out


def _picks(
    settings: Settings,
    catalog: Catalog,
    cands: Candidates,
    row: int,
    firing: Firing,
    rejected: Sequence[int] = (),
    positions: dict[tuple[int, ...], np.ndarray] | None = None,
) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """The picks of one firing; `rejected` (product ids a manager took out of the customer's own
    selections) are never offered, not even when the trigger names them. `positions` keeps the catalogue
    positions of product id tuples between calls (every new-arrivals firing of a run names the same)."""
    k = settings.triggers.picks
    scores = cands.scores[row].astype(np.float64)
    available = catalog.available
    if rejected:
        available = available.copy()
        blocked = catalog.index_of(list(rejected))
        available[blocked[blocked >= 0]] = False
    own = _positions(catalog, firing.product_ids, {} if positions is None else positions)
    if firing.trigger == "replacement":
        category = str(firing.details.get("category", ""))
        code = catalog.category_names.index(category) if category in catalog.category_names else -2
        bounds = anchored_tier_bounds(float(firing.details.get("last_price") or 0.0) or 1.0)
        masked = np.where(catalog.categories == code, scores, -np.inf)
        picks = curate(
            masked,
            cands.sources[row],
            prices=catalog.prices,
            categories=catalog.categories,
            available=available,
            bounds=bounds,
            picks_per_tier=k,
            min_picks=1,
        )
        out = [
            _pick(catalog, p.item_idx, p.tier + 1, p.position + 1, p.score, p.source, p.explanation)
            for p in picks
        ]
        return out, bounds.as_list()
    if firing.trigger in TRIGGER_SOURCES:
        source, why = TRIGGER_SOURCES[firing.trigger]
        named = [int(i) for i in own if available[i]][: max(k, 5)]
        out = [_pick(catalog, i, 1, pos + 1, 1.0, source, why) for pos, i in enumerate(named)]
        if firing.trigger == "abandoned_cart":
            mask = available.copy()
            mask[own] = False
            out += _scored(catalog, cands, row, _top(scores, mask, k), 2)
        return out, []
    mask = available
    if firing.trigger == "new_arrivals":
        mask = np.zeros(catalog.n_items, dtype=bool)
        mask[own] = available[own]
    return _scored(catalog, cands, row, _top(scores, mask, k), 1), []


def _positions(
    catalog: Catalog, product_ids: tuple[int, ...], known: dict[tuple[int, ...], np.ndarray]
) -> np.ndarray:
    """The catalogue positions of the products (those in the catalogue), remembered in `known`."""
    if product_ids not in known:
        found = catalog.index_of(list(product_ids))
        known[product_ids] = found[found >= 0]
    return known[product_ids]


def _offered(catalog: Catalog, firings: Sequence[Firing]) -> np.ndarray | None:
    """The item positions (ascending) the firings' emails may offer, or None for the whole catalogue:
    a trigger that picks from everything (win-back, the cart's "you may also like") needs every score;
    the others offer their own products (new arrivals, running out...) or one category (replacement)."""
    if any(f.trigger in ("winback", "abandoned_cart") for f in firings):
        return None
    wanted = np.zeros(catalog.n_items, dtype=bool)
    named = catalog.index_of(sorted({p for f in firings for p in f.product_ids}))
    wanted[named[named >= 0]] = True
    for category in {str(f.details.get("category", "")) for f in firings if f.trigger == "replacement"}:
        if category in catalog.category_names:
            wanted |= catalog.categories == catalog.category_names.index(category)
    return np.flatnonzero(wanted)


def draft_trigger_selections(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    treated: list[tuple[Recorded, Firing, bool]],
    catalog: Catalog,
    candidates_fn: CandidatesFn,
) -> dict[str, int]:
    """Create the selection of each treated assignment (``(assignment, firing, is_vip)``); never commits.

    An assignment whose email has nothing to offer keeps a ``reason`` and no selection. Returns counts.
    """
    counts = {"ready": 0, "awaiting_review": 0, "nothing to offer": 0}
    cutoff = now + dt.timedelta(hours=settings.triggers.vip_review_hours)
    for start in range(0, len(treated), BATCH):
        batch = treated[start : start + BATCH]
        rows = CandidateRows(
            customer_ids=np.array([a.customer_id for a, _, _ in batch], dtype=np.int64),
            recipient_ids=np.full(len(batch), -1, dtype=np.int64),
            profiles=[
                [str(f.details.get("category", ""))] if f.details.get("category") else [] for _, f, _ in batch
            ],
            occasion_codes=[a.trigger for a, _, _ in batch],
            occasion_on=[now.date()] * len(batch),
            items=_offered(catalog, [f for _, f, _ in batch]),
        )
        cands = candidates_fn(catalog, rows)
        # a candidates function that scores the offered items only gives their columns: pick from those
        offered = catalog if cands.items is None else catalog.take(cands.items)
        positions: dict[tuple[int, ...], np.ndarray] = {}
        rejected = load_rejections(session, customer_ids=rows.customer_ids.tolist()).by_key()
        drafted: list[Recorded] = []
        selection_rows: list[dict[str, Any]] = []
        pick_rows: list[list[dict[str, Any]]] = []
        for row, (assignment, firing, is_vip) in enumerate(batch):
            try:
                picks, bounds = _picks(
                    settings,
                    offered,
                    cands,
                    row,
                    firing,
                    rejected.get((assignment.customer_id, OWN), []),
                    positions,
                )
            except (CurationError, ValueError) as exc:
                assignment.reason = f"no picks: {exc}"[:300]
                counts["nothing to offer"] += 1
                continue
            if not picks and firing.trigger != "winback":
                assignment.reason = "nothing to offer: no product is active and in stock"
                counts["nothing to offer"] += 1
                continue
            status = "awaiting_review" if is_vip else "ready"
            selection_rows.append(
                {
                    "customer_id": assignment.customer_id,
                    "recipient_id": None,
                    "important_date_id": None,
                    "occasion_key": occasion_key(assignment.trigger, assignment.id),
                    "occasion_code": assignment.trigger,
                    "occasion_on": now.date(),
                    "year": now.year,
                    "status": status,
                    "status_reason": None,
                    "model_run_id": cands.model_run_id,
                    "tier_bounds": bounds,
                    "review_cutoff_at": cutoff if is_vip else None,
                }
            )
            pick_rows.append([{**p, "is_manual": False} for p in picks])
            drafted.append(assignment)
            counts[status] += 1
        # the batch's selections and picks in two bulk INSERTs (the planner's), no ORM object per row
        ids = insert_selections(session, selection_rows, pick_rows)
        for assignment, selection_id in zip(drafted, ids, strict=True):
            assignment.selection_id = selection_id
    return counts
