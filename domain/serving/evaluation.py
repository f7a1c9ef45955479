"""Offline evaluation of a data file: read it with the import's cleaning rules, run recommender.evaluation.

Beside the baselines and the tuned models, the row "served (current settings)" measures what `giftrec
train` would serve with the given settings, as serving answers a customer with no request filters:

- the model, its matrix (weights, damping, half-life ending at the newest line before the cut) and the
  hybrid's recent-bestsellers prior come from :func:`domain.serving.served.fit_served`, which training
  calls; the discovery picks use :func:`~domain.serving.served.discovery_model`, as the model store does;
- next purchases are what the next-purchase endpoint serves: the customer's own items and new candidates
  ranked by :class:`~recommender.next_basket.NextBasketRanker`, fitted by
  :func:`domain.serving.next_purchase.fit_purchase_days` on the sales' distinct (customer, product, day)
  rows with their line counts, as the endpoint reads them from the database (nothing is padded: the
  endpoint returns only the ranker's candidates); with `tune`, the ranking `giftrec train --tune` chooses
  on the validation window (the learned ranker or a simple baseline,
  :mod:`recommender.next_purchase_choice`), fitted the same way;
- discovery is the default picks (the discovery blend, items bought net of returns blocked), filled
  along serving's chain: the model's positive scores, items similar to the
  customer's purchases, then bestsellers of ``interactions.bestseller_days`` (distinct buyers, guests
  included, to the newest sale), then new arrivals (first sale). The catalogue is every item sold before
  the cut, all of it available (the file has no stock).

Data files have no manager edits. With ``reject_share`` > 0 the served row is fitted with *simulated*
rejections (:func:`simulated_rejections`): the served model is fitted once, a deterministic share of the
training customers had `SHOWN_PICKS` of its discovery picks reviewed and one (or ``reject_per_customer``)
removed, chosen by hash (edits that say nothing about what the customer buys next), and the served model
is fitted again with those as negative feedback. Compare the row with and without: docs/quality.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from config import Settings
from domain.customers.interactions import InteractionRows, SalesRows
from domain.customers.rejections import OWN, Rejections
from domain.customers.sources import Format, OrderLine, read_order_lines
from domain.errors import InvalidInput
from domain.serving.data import bought_matrix, csr_row, similar_for
from domain.serving.filling import fill_picks
from domain.serving.next_purchase import PurchaseDays, fit_purchase_days
from domain.serving.served import ServedModel, decay_anchor, fit_served
from domain.serving.tuning import report_lines, tune_blends
from recommender.evaluation import (
    Candidate,
    EvaluationResult,
    OrderHistory,
    ServedLists,
    Split,
    Task,
    evaluate,
    format_table,
)
from recommender.feedback import simulate_rejections
from recommender.interactions import IdIndex
from recommender.next_basket import RANKER_PARAMS
from recommender.next_purchase_choice import LEARNED
from recommender.popularity import NewArrivals, PopularityRecommender

__all__ = [
    "evaluate_command",
    "evaluate_file",
    "fit_served_on",
    "history_from_lines",
    "purchase_days_of",
    "served_lists",
    "simulated_rejections",
    "training_rows",
]


def history_from_lines(lines: Sequence[OrderLine]) -> OrderHistory:
    """Order lines (from `domain.customers.sources.read_order_lines`) as arrays; guests get the empty
    customer id.

    Each line is dated as `giftrec import` dates its order: at the order's earliest line (an invoice of
    the UCI file can straddle a minute), so the time decay is the one training computes.
    """
    n = len(lines)
    placed: dict[str, dt.datetime] = {}
    for line in lines:
        known = placed.get(line.order_id)
        if known is None or line.ordered_at < known:
            placed[line.order_id] = line.ordered_at
    return OrderHistory(
        user_ids=np.array([line.customer_id or "" for line in lines], dtype=str) if n else np.array([], str),
        item_ids=np.array([line.sku for line in lines], dtype=str) if n else np.array([], str),
        quantities=np.fromiter((line.quantity for line in lines), dtype=np.float64, count=n),
        timestamps=np.array([placed[line.order_id] for line in lines], dtype="datetime64[s]"),
        is_return=np.fromiter((line.is_return for line in lines), dtype=bool, count=n),
    )


def training_rows(train: OrderHistory) -> tuple[InteractionRows, SalesRows, IdIndex, IdIndex]:
    """Order lines as the database gives them to training: (interactions, sales, customers, products).

    Customers and products get integer ids (their positions in the returned indexes) as database keys
    would be, in the same order; guest lines are sales only (customer -1), returns are ``return`` rows
    with positive quantities.
    """
    # Numbered as `giftrec import` numbers them (customers in order of first appearance, products by
    # SKU): the matrix then has the database's row and column order, and ALS (whose start depends on the
    # order) fits the very factors `giftrec train` fits on the imported file.
    named = train.user_ids[train.user_ids != ""]
    unique, first = np.unique(named, return_index=True)
    customers = IdIndex(unique[np.argsort(first, kind="stable")])
    products = IdIndex(np.unique(train.item_ids))
    cust = customers.index_of(train.user_ids)  # -1 for guests: "" is never a customer id
    prod = products.index_of(train.item_ids)
    mine = cust >= 0
    kinds = np.where(train.is_return[mine], "return", "purchase").astype("U8")
    rows = InteractionRows(cust[mine], prod[mine], kinds, train.quantities[mine], train.timestamps[mine])
    sale = ~train.is_return
    sales = SalesRows(cust[sale], prod[sale], train.quantities[sale], train.timestamps[sale])
    return rows, sales, customers, products


def purchase_days_of(train: OrderHistory, customers: IdIndex, products: IdIndex) -> PurchaseDays:
    """The training sales as `load_purchase_days` reads them: distinct (customer key, product key, UTC
    day) with the number of order lines behind each; keys are positions in `customers` / `products`."""
    sales = train.select(train.is_sale)
    key = np.stack([customers.index_of(sales.user_ids), products.index_of(sales.item_ids), sales.days])
    rows, lines = np.unique(key, axis=1, return_counts=True)
    return PurchaseDays(rows[0], rows[1], rows[2], lines.astype(np.int64))


def purchase_order(rows: PurchaseDays, keys: np.ndarray, external_ids: np.ndarray) -> tuple[IdIndex, IdIndex]:
    """The customers and products of `rows` in the endpoint's order (`fit_next_purchase`: by external id
    and SKU as Python orders strings), so that a fit on the file's rows is the endpoint's bit for bit (ALS
    starts from random factors by position, and positions break ties).

    `keys` gives each external id's customer key (-1 for none); product keys are positions in an index
    sorted by SKU already.
    """
    customers = np.unique(rows.customer_ids)
    name = {int(k): str(n) for k, n in zip(keys.tolist(), external_ids.tolist(), strict=True) if k >= 0}
    ordered = np.array(sorted(customers.tolist(), key=lambda k: name[k]), dtype=np.int64)
    return IdIndex(ordered), IdIndex(np.unique(rows.product_ids))


def _next_purchase_lists(
    split: Split,
    k: int,
    rows: PurchaseDays,
    keys: np.ndarray,
    product_at: np.ndarray,
    ranking: str = LEARNED,
) -> np.ndarray:
    """Each evaluated customer's next-purchase items as the endpoint ranks them, in split positions."""
    cut_day = int(split.cut.astype("datetime64[D]").astype(np.int64))
    fitted = fit_purchase_days(rows, cut_day, *purchase_order(rows, keys, split.users.ids), ranking=ranking)
    users = split.truth["next_purchases"].user_idxs
    out = np.full((users.size, k), -1, dtype=np.int64)
    if fitted.ranker is None:
        return out
    model_rows = fitted.customers.index_of(keys[users])
    for r, row in enumerate(model_rows.tolist()):
        if row >= 0:
            items, _ = fitted.ranker.rank(row, k)
            out[r, : items.size] = product_at[fitted.products.ids[items]]
    return out


def fit_served_on(train: OrderHistory, cut: dt.datetime, settings: Settings) -> ServedModel:
    """What `giftrec train` would fit at `cut` on a database holding the lines of `train`."""
    rows, sales, _, _ = training_rows(train)
    if not len(rows):
        raise InvalidInput("data", "no customer order lines before the cut")
    return fit_served(rows, settings, anchor=decay_anchor(rows, cut), sales=lambda: sales)


#: Picks a manager sees in a reviewed selection (three tiers of three), for the simulated rejections.
SHOWN_PICKS = 9


def simulated_rejections(
    served: ServedModel, at: dt.datetime, *, share: float, per_customer: int = 1, seed: int = 0
) -> Rejections:
    """Rejections standing in for manager edits on a data file: a `share` of the model's customers (by a
    hash of their key) saw their top `SHOWN_PICKS` discovery picks and removed `per_customer` of them,
    chosen by hash (:func:`recommender.feedback.simulate_rejections`); all made at `at`."""
    user_rows = np.arange(len(served.users), dtype=np.int64)
    picks, _ = served.discovery.recommend_batch(user_rows, served.user_items, SHOWN_PICKS)
    keys = served.users.ids
    rows, cols = simulate_rejections(picks, keys, share=share, per_user=per_customer, seed=seed)
    n = rows.size
    return Rejections(
        customer_ids=np.asarray(keys[rows], dtype=np.int64),
        recipient_ids=np.full(n, OWN, dtype=np.int64),
        product_ids=np.asarray(served.items.ids[cols], dtype=np.int64),
        timestamps=np.full(n, np.datetime64(at, "s")),
    )


def served_lists(
    settings: Settings,
    *,
    reject_share: float = 0.0,
    reject_per_customer: int = 1,
    tune: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Callable[[Split, int], ServedLists]:
    """The ``served`` argument of `recommender.evaluation.evaluate`: fits the served configuration on the
    split's training lines and makes each evaluated customer's list as serving would (module docstring);
    with `reject_share`, refitted with simulated rejections first.

    With `tune` the blends are chosen first as `giftrec train --tune` chooses them at the cut (on the
    validation window just before it: nothing of the test window is seen)."""

    def lists(split: Split, k: int) -> ServedLists:
        cut: dt.datetime = split.cut.astype("datetime64[s]").item()
        rows, sales, customers, products = training_rows(split.train)
        anchor = decay_anchor(rows, cut)
        record: dict[str, Any] | None = None
        blends = None
        ranking = LEARNED
        if tune:
            tuning = tune_blends(rows, sales, settings, anchor=anchor)
            record = tuning.record()
            blends = tuning.blends if tuning.status == "tuned" else None
            ranking = tuning.next_purchase_ranking
        served = fit_served(rows, settings, anchor=anchor, sales=lambda: sales, blends=blends)
        rejections: Rejections | None = None
        if reject_share > 0:
            rejections = simulated_rejections(
                served, anchor, share=reject_share, per_customer=reject_per_customer
            )
            if progress is not None:
                progress(
                    f"simulated {len(rejections)} rejections for "
                    f"{np.unique(rejections.customer_ids).size} of {len(served.users)} customers"
                )
            served = fit_served(
                rows, settings, anchor=anchor, sales=lambda: sales, rejections=rejections, blends=blends
            )
        n = len(split.items)
        # Model columns -> split catalogue positions; split customers -> model rows and customer keys.
        product_at = split.items.index_of(products.ids)  # product key -> split position (-1: none)
        to_split = product_at[served.items.ids]
        keys = customers.index_of(split.users.ids)
        model_row = served.users.index_of(keys)
        bought = bought_matrix(rows, IdIndex(np.arange(len(customers))))
        sale_pos = product_at[sales.product_ids]
        ok = sale_pos >= 0
        bestsellers = PopularityRecommender(
            window_days=float(settings.interactions.bestseller_days), count="buyers"
        ).fit_events(sales.customer_ids[ok], sale_pos[ok], sales.timestamps[ok], n_items=n)
        first_sale = np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
        order = np.argsort(sales.timestamps[ok], kind="stable")[::-1]  # the earliest written last
        first_sale[sale_pos[ok][order]] = sales.timestamps[ok][order]
        similar, new_arrivals = similar_for(served.model), NewArrivals(first_sale)
        popularity = bestsellers.popularity
        assert popularity is not None
        recs: dict[Task, np.ndarray] = {}
        params: dict[Task, dict[str, Any]] = {}
        # Next purchases: the next-purchase endpoint's ranking (fit_purchase_days, as the endpoint fits it).
        recs["next_purchases"] = _next_purchase_lists(
            split, k, purchase_days_of(split.train, customers, products), keys, product_at, ranking
        )
        params["next_purchases"] = (
            {"ranker": "next_basket", **RANKER_PARAMS} if ranking == LEARNED else {"ranker": ranking}
        )
        # Discovery: the storefront's picks, filled as serving fills them (fill_picks).
        users = split.truth["discovery"].user_idxs
        out = np.full((users.size, k), -1, dtype=np.int64)
        model = served.discovery
        for r, u in enumerate(users.tolist()):
            blocked = np.zeros(n, dtype=bool)
            own = product_at[bought[int(keys[u])].indices]
            blocked[own[own >= 0]] = True
            user_idx = int(model_row[u])
            picks = fill_picks(
                k,
                blocked,
                model=model,
                user_idx=user_idx,
                row=csr_row(served.user_items, user_idx) if user_idx >= 0 else None,
                to_pos=to_split,
                similar=similar,
                bestsellers=popularity,
                new_arrivals=new_arrivals,
                explain_n=0,  # explanations do not change the order
            )
            out[r, : len(picks)] = [p.position for p in picks]
        recs["discovery"] = out
        params["discovery"] = {
            "algorithm": settings.model.algorithm,
            **model.params,
            "interactions": dataclasses.asdict(settings.interactions),
            "anchor": served.anchor.isoformat(sep=" "),
            "simulated_rejections": 0 if rejections is None else len(rejections),
        }
        notes = report_lines(record) if record is not None else ()
        return ServedLists(recs, params, tuning=record, notes=notes)

    return lists


def evaluate_file(
    data: str | Path,
    fmt: Format,
    *,
    test_days: int = 30,
    k: int = 10,
    seed: int = 42,
    grids: Mapping[str, Sequence[Candidate]] | None = None,
    progress: Callable[[str], None] | None = None,
    settings: Settings | None = None,
    reject_share: float = 0.0,
    reject_per_customer: int = 1,
    tune: bool = False,
) -> EvaluationResult:
    """Read `data` (raises `domain.errors.InvalidInput` for an unusable file) and evaluate every model.

    Rejected rows are left out exactly as `giftrec import` leaves them out. With `settings`, what
    `giftrec train` would serve with them is measured too (row "served (current settings)").
    """
    parsed = read_order_lines(data, fmt)
    if progress is not None:
        counts = parsed.counts
        progress(
            f"read {counts.lines} lines ({counts.rejected} rejected, {counts.non_product_rows} non-product)"
        )
    return evaluate(
        history_from_lines(parsed.lines),
        test_days=test_days,
        k=k,
        seed=seed,
        grids=grids,
        progress=progress,
        served=None
        if settings is None
        else served_lists(
            settings,
            reject_share=reject_share,
            reject_per_customer=reject_per_customer,
            tune=tune,
            progress=progress,
        ),
    )


def evaluate_command(
    data: str | Path,
    fmt: Format,
    test_days: int = 30,
    k: int = 10,
    as_json: bool = False,
    *,
    grids: Mapping[str, Sequence[Candidate]] | None = None,
    progress: Callable[[str], None] | None = None,
    settings: Settings | None = None,
    reject_share: float = 0.0,
    reject_per_customer: int = 1,
    tune: bool = False,
) -> str | dict[str, Any]:
    """What ``giftrec evaluate`` prints: the text table, or the JSON object when `as_json`.

    JSON shape: ``{"dataset", "cut", "k", "default", "served", "tasks": {"next_purchases": {name:
    {"recall@k", ..., "customers"}}, "discovery": {...}}, "intervals": {task: {"baseline", "difference",
    "low", "high", "confidence", "beyond_noise", "customers"}}, "tuning", "notes"}``; the dataset is the
    file's name; ``served`` holds the served configuration per task (None without `settings`);
    ``intervals`` the served row minus the best baseline (recall@k, paired bootstrap 95% CI); ``tuning``
    the validation record when `tune` chose the served blends. `grids` narrows the search space
    (tests); the default is `recommender.evaluation.DEFAULT_GRIDS`.
    """
    if test_days <= 0:
        raise InvalidInput("test_days", f"must be a positive number of days, got {test_days}")
    if k <= 0:
        raise InvalidInput("k", f"must be a positive list length, got {k}")
    if not 0.0 <= reject_share <= 1.0:
        raise InvalidInput("simulate_rejections", f"must be a share between 0 and 1, got {reject_share}")
    if reject_per_customer < 1:
        raise InvalidInput("rejections_per_customer", f"must be at least 1, got {reject_per_customer}")
    result = evaluate_file(
        data,
        fmt,
        test_days=test_days,
        k=k,
        grids=grids,
        progress=progress,
        settings=settings,
        reject_share=reject_share,
        reject_per_customer=reject_per_customer,
        tune=tune,
    )
    dataset = Path(data).name
    return result.to_json(dataset) if as_json else format_table(result, dataset)
