"""`giftrec train --tune`: choose the served blends on a validation window of the shop's own data.

The window is the ``model.tune_validation_days`` just before the newest interaction: the hybrid (ALS,
item-kNN and the popularity priors of every candidate window) is fitted on what came before it, and each
candidate of :mod:`recommender.selection` (the simple baselines themselves and blends of them) is scored
on what the customers bought in it, per task. The winner of each task is then re-fitted on all the data by
:func:`domain.serving.served.fit_served` and recorded with the run (its validation figures, the runner-up's
and the best baseline's), so serving serves what was chosen. With fewer than ``model.tune_min_customers``
customers buying in the window there is nothing to choose on: the configured blends serve (the documented
safe default) and the run says so.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

from config import Settings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import InteractionRows, SalesRows
from domain.serving.served import decay_anchor, recent_popularity, settings_blends
from recommender.evaluation import TASKS, Task, task_truth
from recommender.hybrid import HybridRecommender
from recommender.interactions import IdIndex
from recommender.next_basket import Purchases
from recommender.next_purchase_choice import LEARNED, RankingChoice, choose_ranking
from recommender.popularity import PopularityRecommender
from recommender.selection import POPULARITY_WINDOWS, Scored, ValidationTruth, rank_candidates

__all__ = [
    "TUNE_K",
    "Tuning",
    "candidate_label",
    "choose_next_purchase_ranking",
    "report_lines",
    "tune_blends",
]

#: List length the candidates are compared at (the storefront's default page of picks).
TUNE_K = 10


@dataclass(frozen=True)
class Tuning:
    """The outcome of a tuning: the blend per task and why.

    ``status`` is ``tuned`` (chosen on the window) or ``default`` (too little data: the configured
    blends, ``reason`` says why); ``ranking[task]`` lists every candidate, best first.
    """

    status: str
    reason: str
    blends: dict[str, dict[str, Any]]
    validation_from: dt.datetime | None
    validation_until: dt.datetime | None
    ranking: dict[Task, list[Scored]] = field(default_factory=dict)
    seconds: float = 0.0
    #: The next-purchase endpoint's ranking chosen on the same window (None: not chosen, the learned one).
    next_purchase: RankingChoice | None = None

    @property
    def next_purchase_ranking(self) -> str:
        """The ranking the next-purchase endpoint serves (`recommender.next_purchase_choice`)."""
        return LEARNED if self.next_purchase is None else self.next_purchase.chosen

    def record(self) -> dict[str, Any]:
        """The JSON kept with the model run (``metrics["tuning"]``)."""
        tasks: dict[str, Any] = {}
        for task, ranked in self.ranking.items():
            if not ranked:
                continue
            baseline = next((s for s in ranked if s.is_baseline), None)
            tasks[task] = {
                "chosen": ranked[0].as_dict(TUNE_K),
                "runner_up": ranked[1].as_dict(TUNE_K) if len(ranked) > 1 else None,
                "best_baseline": baseline.as_dict(TUNE_K) if baseline is not None else None,
                "candidates": len(ranked),
            }
        return {
            "status": self.status,
            "reason": self.reason,
            "k": TUNE_K,
            "validation": {
                "from": None if self.validation_from is None else self.validation_from.isoformat(),
                "until": None if self.validation_until is None else self.validation_until.isoformat(),
            },
            "tasks": tasks,
            "next_purchase_ranking": None
            if self.next_purchase is None
            else self.next_purchase.record(TUNE_K),
            "seconds": round(self.seconds, 3),
        }


def report_lines(record: dict[str, Any]) -> list[str]:
    """One line per task of a tuning record: which candidate won on validation and by how much."""
    if record.get("status") != "tuned":
        return [f"tuning: safe default (configured blends): {record.get('reason', '')}"]
    k = record.get("k", TUNE_K)
    lines = []
    for task in TASKS:
        entry = record.get("tasks", {}).get(task)
        if entry is None:
            lines.append(f"{task}: no validation customers, configured blend")
            continue
        chosen, runner, base = entry["chosen"], entry.get("runner_up"), entry.get("best_baseline")
        line = f"{task}: {candidate_label(chosen)} won on validation, recall@{k} {chosen[f'recall@{k}']:.4f}"
        line += f" ({chosen['customers']} customers)"
        if runner is not None:
            line += f"; runner-up {candidate_label(runner)} {runner[f'recall@{k}']:.4f}"
            line += f" ({_margin(chosen[f'recall@{k}'], runner[f'recall@{k}'])})"
        if base is not None and base is not chosen and base["name"] != chosen["name"]:
            line += f"; best baseline {base['name']} {base[f'recall@{k}']:.4f}"
            line += f" ({_margin(chosen[f'recall@{k}'], base[f'recall@{k}'])})"
        lines.append(line)
    choice = record.get("next_purchase_ranking")
    if choice is not None:
        lines.append(_ranking_line(choice, k))
    return lines


def _ranking_line(choice: dict[str, Any], k: int) -> str:
    if choice["status"] != "tuned":
        return f"next-purchase ranking: {choice['chosen']} (safe default): {choice['reason']}"
    best, runner, learned = choice["best"], choice.get("runner_up"), choice.get("learned")
    lead = choice.get("lead")
    verb = "won" if best["name"] == choice["chosen"] else "led"
    line = f"next-purchase ranking: {best['name']} {verb} on validation, recall@{k} {best[f'recall@{k}']:.4f}"
    earlier = choice.get("year_earlier") or 0
    season = f", {earlier} of them in the same window one year earlier" if earlier else ""
    line += f" ({choice['customers']} customers{season})"
    if runner is not None:
        line += f"; runner-up {runner['name']} {runner[f'recall@{k}']:.4f}"
        line += f" ({_margin(best[f'recall@{k}'], runner[f'recall@{k}'])})"
    if learned is not None and learned["name"] not in (best["name"], (runner or {}).get("name")):
        line += f"; {learned['name']} {learned[f'recall@{k}']:.4f}"
    if lead is not None:
        noise = "beyond noise" if lead["beyond_noise"] else "not beyond noise"
        line += (
            f"; {lead['name']} minus {lead['over']} {lead['difference']:+.4f},"
            f" {lead['confidence']:.0%} CI [{lead['low']:+.4f}, {lead['high']:+.4f}], {noise}:"
            f" {choice['chosen']} serves"
        )
    return line


def candidate_label(entry: dict[str, Any]) -> str:
    """A candidate of a tuning record in words: its name, or a blend's terms and weights."""
    if entry["name"] != "blend":
        return str(entry["name"])
    b = entry["blend"]
    parts = [
        f"{name} {b[key]:g}"
        for name, key in (
            ("own", "repeat_weight"),
            ("ALS", "cf_weight"),
            ("kNN", "knn_weight"),
            ("popularity", "popularity_weight"),
        )
        if b.get(key, 0) > 0 and (key != "repeat_weight" or b.get("repeat"))
    ]
    days = f", {b['popularity_days']:g} days" if b.get("popularity_weight", 0) > 0 else ""
    return f"blend ({', '.join(parts)}{days})"


def _margin(a: float, b: float) -> str:
    if b > 0:
        return f"{a - b:+.4f}, {a / b:.2f}x"
    return f"{a - b:+.4f}"


def _net_bought(rows: InteractionRows, users: IdIndex, items: IdIndex) -> csr_matrix:
    """Users x items of the matrix: 1 where purchases exceed returns."""
    buys = rows.only({"purchase", "return"})
    u, i = users.index_of(buys.customer_ids), items.index_of(buys.product_ids)
    ok = (u >= 0) & (i >= 0)
    sign = np.where(buys.kinds[ok] == "return", -1.0, 1.0)
    m = coo_matrix((buys.quantities[ok] * sign, (u[ok], i[ok])), shape=(len(users), len(items))).tocsr()
    m.data = (m.data > 0).astype(np.float32)
    m.eliminate_zeros()
    return m


def _truth(
    window: InteractionRows, users: IdIndex, items: IdIndex, bought: csr_matrix, *, new_only: bool
) -> ValidationTruth:
    """Distinct (customer, product) purchases in the window of customers the matrix knows."""
    buys = window.only({"purchase"})
    u = users.index_of(buys.customer_ids)
    known = u >= 0
    truth = task_truth(u[known], buys.product_ids[known], items, bought, new_only=new_only)
    blocked = bought[truth.user_idxs] if new_only else None
    return ValidationTruth(truth.user_idxs, truth.relevant, truth.n_relevant, blocked)


def tune_blends(
    rows: InteractionRows, sales: SalesRows, settings: Settings, *, anchor: dt.datetime
) -> Tuning:
    """Choose the served blend of each task on the validation window ending at `anchor` (see module).

    `rows` and `sales` are everything up to `anchor` (sales: guests included). Never raises for too
    little data: the result's status is then ``default``, with the configured blends.
    """
    t0 = time.perf_counter()
    m = settings.model
    default = settings_blends(settings)
    if m.algorithm != "hybrid":
        return Tuning(
            "default",
            f"model.algorithm is {m.algorithm!r}: tuning chooses hybrid blends",
            default,
            None,
            None,
        )
    cut = anchor - dt.timedelta(days=m.tune_validation_days)
    cut64 = np.datetime64(cut, "s")
    before = rows.timestamps < cut64
    past = rows.subset(before)
    window = rows.subset(~before & (rows.timestamps <= np.datetime64(anchor, "s")))
    if not len(past.only({"purchase"})):
        return Tuning(
            "default", f"no purchases before the validation window ({cut:%Y-%m-%d})", default, cut, anchor
        )
    past_anchor = decay_anchor(past, cut)
    user_items, users, items = build_matrix(past, settings.interactions, now=past_anchor)
    bought = _net_bought(past, users, items)
    truth: dict[Task, ValidationTruth] = {
        "next_purchases": _truth(window, users, items, bought, new_only=False),
        "discovery": _truth(window, users, items, bought, new_only=True),
    }
    n = truth["next_purchases"].customers
    if n < m.tune_min_customers or user_items.nnz == 0:
        reason = (
            f"{n} customers bought in the validation window {cut:%Y-%m-%d} to {anchor:%Y-%m-%d}, "
            f"fewer than model.tune_min_customers = {m.tune_min_customers}"
        )
        return Tuning("default", reason, default, cut, anchor, seconds=time.perf_counter() - t0)
    sold = sales.timestamps < cut64
    past_sales = SalesRows(
        sales.customer_ids[sold], sales.product_ids[sold], sales.quantities[sold], sales.timestamps[sold]
    )
    priors = {d: recent_popularity(past_sales, items, past_anchor, d) for d in POPULARITY_WINDOWS}
    pos = items.index_of(past_sales.product_ids)
    ok = pos >= 0
    bestsellers = PopularityRecommender(
        window_days=float(settings.interactions.bestseller_days), count="buyers"
    )
    fill = bestsellers.fit_events(
        past_sales.customer_ids[ok], pos[ok], past_sales.timestamps[ok], n_items=len(items)
    ).popularity
    assert fill is not None
    model = HybridRecommender(
        factors=m.factors,
        regularization=m.regularization,
        alpha=m.alpha,
        iterations=m.iterations,
        random_state=m.random_state,
        num_threads=m.num_threads,
        use_gpu=m.use_gpu,
        knn_k=m.tune_knn_k,
    ).fit(user_items, item_popularity=priors)
    ranking = rank_candidates(model, user_items, truth, fill, TUNE_K)
    blends: dict[str, dict[str, Any]] = {
        task: (dict(ranking[task][0].blend) if ranking[task] else default[task]) for task in TASKS
    }
    choice = choose_next_purchase_ranking(sales, settings, anchor=anchor)
    return Tuning(
        "tuned",
        "chosen on the validation window",
        blends,
        cut,
        anchor,
        ranking,
        time.perf_counter() - t0,
        choice,
    )


def _day(at: dt.datetime) -> int:
    return int(np.datetime64(at, "D").astype(np.int64))


def choose_next_purchase_ranking(
    sales: SalesRows, settings: Settings, *, anchor: dt.datetime
) -> RankingChoice:
    """The next-purchase endpoint's ranking for this shop: the learned ranker or a simple baseline, chosen
    on the same validation window as the blends (`recommender.next_purchase_choice.choose_ranking`), on
    the registered customers' sales up to `anchor` as distinct (customer, product, day) purchases with
    their order lines, as the endpoint reads them."""
    m = settings.model
    mine = (sales.customer_ids >= 0) & (sales.timestamps <= np.datetime64(anchor, "s"))
    if not mine.any():
        return RankingChoice(LEARNED, "default", "no registered customer's sales")
    days = sales.timestamps[mine].astype("datetime64[D]").astype(np.int64)
    customers, u = np.unique(sales.customer_ids[mine], return_inverse=True)
    products, i = np.unique(sales.product_ids[mine], return_inverse=True)
    key, lines = np.unique(np.stack([u, i, days]), axis=1, return_counts=True)
    purchases = Purchases(
        key[0].astype(np.int64),
        key[1].astype(np.int64),
        key[2].astype(np.int64),
        lines.astype(np.int64),
        int(customers.size),
        int(products.size),
    )
    return choose_ranking(
        purchases,
        _day(anchor),
        validation_days=m.tune_validation_days,
        k=TUNE_K,
        min_customers=m.tune_min_customers,
    )
