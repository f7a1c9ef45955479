"""The served configuration, built in one place: the model, its matrix and its prior as training fits them.

`giftrec train` (:func:`domain.serving.training.train_model`) and `giftrec evaluate`'s "served (current
settings)" row (:mod:`domain.serving.evaluation`) both call :func:`fit_served`, and serving derives the
discovery blend with :func:`discovery_model`, so what is measured offline is what `make run` serves.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from config import Settings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import InteractionRows, SalesRows
from domain.customers.rejections import Rejections
from domain.errors import InvalidInput
from recommender.base import Recommender
from recommender.feedback import positive_part, rejection_amounts, subtract_rejections
from recommender.interactions import IdIndex
from recommender.popularity import PopularityRecommender

__all__ = [
    "HYBRID_POPULARITY_DAYS",
    "ServedModel",
    "decay_anchor",
    "discovery_model",
    "fit_served",
    "make_recommender",
    "recent_popularity",
    "settings_blends",
]

#: Window of the "recent bestsellers" prior the hybrid model blends in (distinct buyers, guests included).
HYBRID_POPULARITY_DAYS = 30.0


def make_recommender(settings: Settings) -> Recommender:
    """An unfitted recommender for ``settings.model.algorithm``, with the configured parameters."""
    m = settings.model
    als_like: dict[str, Any] = {
        "factors": m.factors,
        "regularization": m.regularization,
        "alpha": m.alpha,
        "iterations": m.iterations,
        "random_state": m.random_state,
        "num_threads": m.num_threads,
        "use_gpu": m.use_gpu,
    }
    if m.algorithm == "hybrid":
        from recommender.hybrid import HybridRecommender

        return HybridRecommender(
            **als_like,
            repeat_weight=m.repeat_weight,
            cf_weight=m.cf_weight,
            popularity_weight=m.popularity_weight,
        )
    if m.algorithm == "als":
        from recommender.collaborative import ALSRecommender

        return ALSRecommender(**als_like)
    if m.algorithm == "bpr":
        from recommender.collaborative import BPRRecommender

        return BPRRecommender(
            factors=m.factors,
            regularization=m.regularization,
            iterations=m.iterations,
            random_state=m.random_state,
            num_threads=m.num_threads,
        )
    if m.algorithm in ("item_bm25", "item_cosine"):
        from recommender.collaborative import ItemItemRecommender

        if m.algorithm == "item_bm25":
            return ItemItemRecommender(kind="bm25", num_threads=m.num_threads)
        return ItemItemRecommender(kind="cosine", num_threads=m.num_threads)
    if m.algorithm == "popularity":
        return PopularityRecommender(window_days=float(settings.interactions.bestseller_days))
    raise InvalidInput("model.algorithm", f"unknown algorithm {m.algorithm!r}")


def discovery_model(
    model: Recommender, settings: Settings, blend: Mapping[str, Any] | None = None
) -> Recommender:
    """The model that serves picks excluding bought items: a repeat-mode hybrid with its own repeat term
    off and the discovery `blend` (a tuned run's, recorded with it), else that of ``settings.model``; any
    other model as it is."""
    if getattr(model, "name", "") == "hybrid" and model.params.get("repeat"):
        if blend is not None:
            return model.with_blend(**{**blend, "repeat": False})  # type: ignore[attr-defined]
        m = settings.model
        return model.with_blend(  # type: ignore[attr-defined]
            repeat=False, cf_weight=m.discovery_cf_weight, popularity_weight=m.discovery_popularity_weight
        )
    return model


def settings_blends(settings: Settings) -> dict[str, dict[str, Any]]:
    """The hybrid's blends per task as ``settings.model`` configures them (what serves untuned)."""
    m = settings.model
    common = {"knn_weight": 0.0, "popularity_days": HYBRID_POPULARITY_DAYS}
    return {
        "next_purchases": {
            "repeat": True,
            "repeat_weight": m.repeat_weight,
            "cf_weight": m.cf_weight,
            "popularity_weight": m.popularity_weight,
            **common,
        },
        "discovery": {
            "repeat": False,
            "repeat_weight": 0.0,
            "cf_weight": m.discovery_cf_weight,
            "popularity_weight": m.discovery_popularity_weight,
            **common,
        },
    }


def decay_anchor(rows: InteractionRows, cut: dt.datetime) -> dt.datetime:
    """Where the time decay and the recent-bestsellers window end: the newest interaction up to `cut`.

    On a live shop that is now; on historical data (the UCI sample ends in 2011) a wall-clock anchor would
    decay every row to ~0 and leave no recent bestsellers at all.
    """
    return min(cut, rows.latest) if rows.latest is not None else cut


@dataclass(frozen=True)
class ServedModel:
    """A fitted served configuration and the matrix it was fitted on.

    ``model`` serves picks that may repeat past purchases (next purchases); ``discovery`` the picks that
    exclude them. ``users``/``items`` map the matrix rows/columns to customer/product ids; ``seconds``
    times the steps (``build``: the matrix, ``popularity``: reading sales and the prior, ``fit``).
    """

    model: Recommender
    discovery: Recommender
    user_items: csr_matrix
    users: IdIndex
    items: IdIndex
    anchor: dt.datetime
    seconds: dict[str, float]


def recent_popularity(
    sales: SalesRows, items: IdIndex, anchor: dt.datetime, days: float = HYBRID_POPULARITY_DAYS
) -> np.ndarray:
    """The hybrid's prior: distinct buyers per matrix column over the `days` (default
    `HYBRID_POPULARITY_DAYS`) to `anchor`."""
    pos = items.index_of(sales.product_ids)
    keep = pos >= 0
    pop = PopularityRecommender(window_days=float(days), count="buyers").fit_events(
        sales.customer_ids[keep], pos[keep], sales.timestamps[keep], n_items=len(items), now=anchor
    )
    assert pop.popularity is not None
    return pop.popularity


def fit_served(
    rows: InteractionRows,
    settings: Settings,
    *,
    anchor: dt.datetime,
    sales: Callable[[], SalesRows],
    rejections: Rejections | None = None,
    blends: Mapping[str, Mapping[str, Any]] | None = None,
) -> ServedModel:
    """Build the matrix of `rows` as ``settings.interactions`` says (weights, damping, half-life ending at
    `anchor`) and fit ``settings.model`` on it.

    `rejections` (picks account managers removed or replaced) are negative feedback: each takes
    ``interactions.weight_rejected`` (decayed like the rows) off its customer-product cell
    (:mod:`recommender.feedback`). A model that accepts negative feedback is fitted on the signed matrix;
    ``user_items`` (what serving reads) is its positive part.

    `sales` is called only when the model needs the recent-bestsellers prior (hybrid): sale lines up to
    `anchor`, guests included; lines before the longest prior's window may be left out (training reads
    only the window), they do not count. `blends` (hybrid only: the blend per task, "next_purchases" and
    "discovery", as `giftrec train --tune` chose them) replace the configured weights; the item-kNN part
    and the priors they name are fitted. Raises InvalidInput when nothing is left to train on.
    """
    t0 = time.perf_counter()
    user_items, users, items = build_matrix(rows, settings.interactions, now=anchor)
    model = make_recommender(settings)
    fit_on = user_items
    weight = settings.interactions.weight_rejected
    if rejections is not None and len(rejections) and weight > 0:
        amounts = rejection_amounts(
            rejections.timestamps,
            weight,
            half_life_days=settings.interactions.half_life_days or None,
            now=anchor,
        )
        signed = subtract_rejections(
            user_items,
            users.index_of(rejections.customer_ids),
            items.index_of(rejections.product_ids),
            amounts,
        )
        user_items = positive_part(signed)
        fit_on = signed if model.accepts_negative else user_items
    if user_items.nnz == 0:
        raise InvalidInput("data", "every interaction was cancelled by returns: nothing to train on")
    windows = [HYBRID_POPULARITY_DAYS]
    if blends is not None and settings.model.algorithm == "hybrid":
        chosen = blends["next_purchases"]
        needs_knn = any(b.get("knn_weight", 0.0) > 0 for b in blends.values())
        knn_k = settings.model.tune_knn_k if needs_knn else 0
        model = type(model)(**{**model.params, **chosen, "knn_k": knn_k})
        windows = sorted({float(b.get("popularity_days", HYBRID_POPULARITY_DAYS)) for b in blends.values()})
    t1 = time.perf_counter()
    popularity = None
    if settings.model.algorithm == "hybrid":
        batch = sales()
        popularity = {d: recent_popularity(batch, items, anchor, d) for d in windows}
    t2 = time.perf_counter()
    if popularity is not None:
        model.fit(fit_on, item_popularity=popularity)  # type: ignore[call-arg]
    else:
        model.fit(fit_on)
    seconds = {"build": t1 - t0, "popularity": t2 - t1, "fit": time.perf_counter() - t2}
    discovery = discovery_model(model, settings, None if blends is None else blends["discovery"])
    return ServedModel(model, discovery, user_items, users, items, anchor, seconds)
