"""Is "next likely purchase" useful? A temporal split of real orders, checked against plain baselines.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.eval_next_purchase [UCI_PATH] [--test-days 30] [--k 10] [--format FORMAT]

UCI_PATH defaults to ../shared/data/online_retail.csv.gz; ``--format generic`` reads a generated shop of
``bench.shop_data generate`` instead. The file is read with the import's cleaning
rules and split as ``giftrec evaluate`` splits it: training = order lines before midnight of the last day
minus ``--test-days``, test = the sales from then on. Purchases are counted in distinct days per
customer (as giftrec serves them); returns and guest lines are never purchases.

1. **When / how many.** For every customer with a purchase before the cut: BG/NBD's expected number of
   purchase days in the test window against the actual number (MAE, RMSE, Pearson correlation, totals),
   next to the naive "historical rate" (repeat purchase days per day since the first purchase, x / T,
   times the window) and its variant (x + 1) / T. Then P(at least one purchase in the window): mean
   predicted vs the share that did buy, Brier score and ROC AUC (scikit-learn).
2. **What.** recall@k / NDCG@k of the item ranking (the customer's own items by estimated chance of
   buying each within the window, padded with 90-day bestsellers) vs personal top-frequency (the
   baseline of ``giftrec evaluate``, same padding) and popularity, on two truths: every test purchase of
   the evaluated customers (the ``next_purchases`` task) and only repeat items (bought before the cut
   as well). Plus the calibration of the item probabilities: their mean over every (customer, own item)
   pair vs the share of those pairs bought in the window.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from bench._common import machine_line, uci_history
from domain.serving.evaluation import _next_purchase_lists, purchase_days_of, training_rows
from domain.serving.next_purchase import fit_purchase_days
from recommender.base import top_k_rows
from recommender.evaluation import (
    POPULARITY_DAYS,
    TIFU_KNN,
    _personal_top_frequency_recs,  # the exact baselines of `giftrec evaluate`
    _tifu_knn_recs,
    make_split,
    ranking_metrics,
    temporal_cut,
)
from recommender.interactions import IdIndex
from recommender.intervals import paired_difference
from recommender.next_purchase import NextPurchaseModel
from recommender.tifuknn import PUBLISHED_PARAMS

DEFAULT_UCI = "../shared/data/online_retail.csv.gz"


def _days(timestamps: np.ndarray) -> np.ndarray:
    return timestamps.astype("datetime64[D]").astype(np.int64)


def _row(name: str, values: list[str]) -> str:
    return f"| {name} | " + " | ".join(values) + " |"


def _recency_rule(
    history: Any, cut: np.datetime64, test_days: int, split: Any, last: np.ndarray, cut_day: int
) -> np.ndarray:
    """P(buys in the window) from days since the last purchase alone: an isotonic (decreasing) fit of
    "bought in the window" on recency, learned on the validation window before the test cut."""
    val_cut = cut - np.timedelta64(test_days * 86400, "s")
    val = make_split(history, val_cut, cut)
    sales = val.train.select(val.train.is_sale)
    users = val.users.index_of(sales.user_ids)
    last_val = np.full(len(val.users), -1, dtype=np.int64)
    np.maximum.at(last_val, users, sales.days)
    val_day = int(val_cut.astype("datetime64[D]").astype(np.int64))
    bought = np.zeros(len(val.users), dtype=bool)
    bought[val.truth["next_purchases"].user_idxs] = True
    rule = IsotonicRegression(increasing=False, out_of_bounds="clip")
    rule.fit((val_day - last_val).astype(np.float64), bought.astype(np.float64))
    return np.asarray(rule.predict((cut_day - last).astype(np.float64)))


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args, history = uci_history(__doc__ or "", argv, DEFAULT_UCI, other_formats=True)
    print(machine_line())
    cut = temporal_cut(history.timestamps, args.test_days)
    split = make_split(history, cut)
    read_s = time.perf_counter() - started
    cut_day = int(_days(np.asarray([cut]))[0])
    window = float(args.test_days)

    train = split.train.select(split.train.is_sale)
    users = split.users.index_of(train.user_ids)
    items = split.items.index_of(train.item_ids)
    t0 = time.perf_counter()
    model = NextPurchaseModel(horizon=window).fit(
        users, items, _days(train.timestamps), len(split.users), len(split.items), now=cut_day
    )
    fit_s = time.perf_counter() - t0
    s = model.summary
    assert s is not None
    p = model.bgnbd.params

    # ---------------------------------------------------------------- when / how many: per customer
    test = history.select((history.timestamps >= cut) & history.is_sale)
    tu = split.users.index_of(test.user_ids)
    known = tu >= 0
    pairs = np.unique(np.stack([tu[known], _days(test.timestamps[known])], axis=1), axis=0)
    actual = np.bincount(pairs[:, 0], minlength=len(split.users)).astype(np.float64)
    x, t_x, age = s.frequency, s.recency, s.T
    predicted = model.bgnbd.expected_purchases(window, x, t_x, age)
    rate = x / age * window
    rate1 = (x + 1) / age * window
    print(f"data: {args.data}; cut {np.datetime_as_string(cut, unit='D')}, test {args.test_days} days")
    print(f"read + split {read_s:.1f} s; fit {fit_s:.2f} s")
    print(
        f"BG/NBD (days): r = {p.r:.4f}, alpha = {p.alpha:.3f}, a = {p.a:.4f}, b = {p.b:.4f}, "
        f"LL = {p.log_likelihood:.1f}, customers = {p.n_customers}, at bound: {p.at_bound}"
    )
    print(
        f"repurchase intervals: median over items {model.intervals.global_interval:.0f} days, "
        f"sigma {model.intervals.sigma:.2f}, repeat rate {model.intervals.global_repeat_rate:.3f}"
    )
    print()
    print(
        f"Purchase days per customer in the test window ({len(actual)} customers, "
        f"{int(actual.sum())} actual purchase days)"
    )
    print()
    print("| predictor | MAE | RMSE | Pearson r | total predicted |")
    print("|---|---|---|---|---|")
    for name, pred in (
        ("BG/NBD expected purchases", predicted),
        ("historical rate x / T", rate),
        ("historical rate (x + 1) / T", rate1),
        ("zero", np.zeros_like(actual)),
    ):
        err = pred - actual
        corr = float(np.corrcoef(pred, actual)[0, 1]) if pred.std() > 0 else float("nan")
        print(
            _row(
                name,
                [
                    f"{np.abs(err).mean():.3f}",
                    f"{np.sqrt((err**2).mean()):.3f}",
                    f"{corr:.3f}",
                    f"{pred.sum():.0f}",
                ],
            )
        )
    bought = actual > 0
    prob = model.bgnbd.probability_of_purchase(window, x, t_x, age)
    print()
    print("| P(buys in the window) | mean predicted | share that bought | Brier | ROC AUC |")
    print("|---|---|---|---|---|")
    recency_rule = _recency_rule(history, cut, args.test_days, split, s.last, cut_day)
    for name, score in (
        ("BG/NBD", prob),
        ("recency only (isotonic, fitted on the validation window)", recency_rule),
        ("historical rate x / T (as a score)", rate),
    ):
        shown = np.clip(score, 0, 1)
        print(
            _row(
                name,
                [
                    f"{shown.mean():.3f}",
                    f"{bought.mean():.3f}",
                    f"{((shown - bought) ** 2).mean():.3f}",
                    f"{roc_auc_score(bought, score):.3f}",
                ],
            )
        )

    # ---------------------------------------------------------------- what: item rankings
    k = args.k
    truth = split.truth["next_purchases"]
    scored = model.score_all()
    n_items = len(split.items)
    pop = split.popularity(POPULARITY_DAYS)
    own = csr_matrix(
        (scored["chance"] + 1.0, (scored["user"], scored["item"])), shape=(len(split.users), n_items)
    )
    # own items first (chance + 1 > 1), then bestsellers scaled below 1
    scores = own[truth.user_idxs].toarray() + (pop / max(float(pop.max()), 1.0) * 0.999)[None, :]
    ours, _ = top_k_rows(scores, k)
    baseline = _personal_top_frequency_recs(split, k)
    popular, _ = top_k_rows(np.broadcast_to(pop, (truth.user_idxs.size, n_items)).copy(), k)
    _, _, customers, products = training_rows(split.train)
    ranker_cpu = time.process_time()
    served = _next_purchase_lists(
        split,
        k,
        purchase_days_of(split.train, customers, products),
        customers.index_of(split.users.ids),
        split.items.index_of(products.ids),
    )
    ranker_cpu = time.process_time() - ranker_cpu
    # what the service answers from while the learned fit runs in the background: the timing model alone
    rows = purchase_days_of(split.train, customers, products)
    timing_cpu = []
    for _ in range(3):
        t0 = time.process_time()
        fit_purchase_days(
            rows,
            cut_day,
            IdIndex(np.unique(rows.customer_ids)),
            IdIndex(np.unique(rows.product_ids)),
            rank=False,
        )
        timing_cpu.append(time.process_time() - t0)
    bought_before = split.counts[truth.user_idxs] > 0
    repeat_truth = truth.relevant.multiply(bought_before).tocsr()
    new_truth = (truth.relevant - repeat_truth).tocsr()
    new_truth.eliminate_zeros()
    has_repeat = np.diff(repeat_truth.indptr) > 0
    has_new = np.diff(new_truth.indptr) > 0
    print()
    print(f"Item ranking, k = {k}")
    print()
    print(
        f"| ranking | recall@{k} all | NDCG@{k} all | recall@{k} repeat items | NDCG@{k} repeat items "
        f"| recall@{k} new items | NDCG@{k} new items |"
    )
    print("|---|---|---|---|---|---|---|")
    rankings = [
        ("served (learned ranker)", served),
        ("due-date ranking", ours),
        ("personal top-frequency", baseline),
        *(
            (name, _tifu_knn_recs(split, k, params))
            for name, params in zip(TIFU_KNN, PUBLISHED_PARAMS.values(), strict=True)
        ),
        ("popularity", popular),
    ]
    every_of = {}
    for name, recs in rankings:
        every = ranking_metrics(recs, truth.relevant, k, n_items, truth.n_relevant)
        every_of[name] = every
        repeat = ranking_metrics(recs[has_repeat], repeat_truth[has_repeat], k, n_items)
        new = ranking_metrics(recs[has_new], new_truth[has_new], k, n_items)
        print(
            _row(
                name,
                [
                    f"{m:.4f}"
                    for m in (every.recall, every.ndcg, repeat.recall, repeat.ndcg, new.recall, new.ndcg)
                ],
            )
        )
    served_m = every_of[rankings[0][0]]
    best_name, best = max(
        ((n_, m) for n_, m in every_of.items() if n_.startswith(("personal", "tifu", "popularity"))),
        key=lambda nm: nm[1].recall,
    )
    assert served_m.per_customer_recall is not None and best.per_customer_recall is not None
    diff = paired_difference(served_m.per_customer_recall, best.per_customer_recall)
    print(
        f"\nserved / best baseline ({best_name}): recall@{k} {served_m.recall / best.recall:.3f}x, "
        f"difference {diff.mean:+.4f} (paired bootstrap {diff.confidence:.0%} CI {diff.low:+.4f} .. "
        f"{diff.high:+.4f}); the served ranker's fit (learning + scoring every customer): "
        f"{ranker_cpu:.1f} s process CPU; the timing model alone (the service's answers until the learned "
        f"fit is ready): median of 3 {float(np.median(timing_cpu)):.2f} s process CPU"
    )
    print(
        f"\ncustomers: {truth.user_idxs.size} evaluated, "
        f"{int(has_repeat.sum())} with a repeat item in the window, {int(has_new.sum())} with a new one "
        "(new items the catalogue lacked count as relevant in 'all' only)"
    )

    test_pairs = csr_matrix(
        (np.ones(int(known.sum())), (tu[known], split.items.index_of(test.item_ids[known]).clip(0))),
        shape=(len(split.users), n_items),
    )
    test_pairs.data[:] = 1.0
    hit = np.asarray(test_pairs[scored["user"], scored["item"]]).ravel() > 0
    prob_items = scored["probability"]
    print()
    print("| item probabilities | pairs | mean predicted | share bought in the window | ROC AUC |")
    print("|---|---|---|---|---|")
    print(
        _row(
            "every (customer, own item) pair",
            [
                str(hit.size),
                f"{prob_items.mean():.4f}",
                f"{hit.mean():.4f}",
                f"{roc_auc_score(hit, prob_items):.3f}",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
