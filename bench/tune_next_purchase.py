"""Choose the next-purchase ranker's settings on a validation window (never on the test window).

Run from the repository root (by hand, never by the test suite)::

    timeout 3600 .venv/bin/python -m bench.tune_next_purchase DATA [--test-days 30] [--k 10]

The test cut is ``giftrec evaluate``'s (midnight of the last day minus ``--test-days``); the validation
window is the ``--test-days`` before it. For each candidate setting the ranker
(`recommender.next_basket.NextBasketRanker`) is fitted as the endpoint fits it
(`domain.serving.next_purchase.fit_purchase_days`) on the sales before the validation cut (so its
classifier learns from the windows before that) and scored on the customers who bought in both periods.
Each row prints validation recall@k, the same for repeat and for new items, and the process CPU seconds
of the fit; `recommender.next_basket.RANKER_PARAMS` holds the chosen one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench._common import machine_line, uci_history
from domain.serving.evaluation import purchase_days_of, purchase_order, training_rows
from domain.serving.next_purchase import fit_purchase_days
from recommender.evaluation import make_split, ranking_metrics, temporal_cut
from recommender.next_basket import RANKER_PARAMS

GRID: list[dict[str, Any]] = [
    {"training_windows": 2},  # RANKER_PARAMS
    {"training_windows": 3},
    {"training_windows": 4},
]


def main(argv: list[str] | None = None) -> int:
    args, history = uci_history(__doc__ or "", argv)
    print(machine_line())
    cut = temporal_cut(history.timestamps, args.test_days)
    val_cut = cut - np.timedelta64(args.test_days * 86400, "s")
    split = make_split(history, val_cut, cut)
    _, _, customers, products = training_rows(split.train)
    rows = purchase_days_of(split.train, customers, products)
    truth = split.truth["next_purchases"]
    keys = customers.index_of(split.users.ids[truth.user_idxs])
    product_at = split.items.index_of(products.ids)
    bought_before = split.counts[truth.user_idxs] > 0
    repeat_truth = truth.relevant.multiply(bought_before).tocsr()
    new_truth = (truth.relevant - repeat_truth).tocsr()
    new_truth.eliminate_zeros()
    has_repeat, has_new = np.diff(repeat_truth.indptr) > 0, np.diff(new_truth.indptr) > 0
    k, n = args.k, len(split.items)
    print(f"validation window {val_cut} .. {cut}: {truth.user_idxs.size} customers")
    print(f"| setting | recall@{k} | repeat items | new items | fit CPU s |")
    print("|---|---|---|---|---|")
    for overrides in GRID:
        started = time.process_time()
        fitted = fit_purchase_days(
            rows,
            int(val_cut.astype("datetime64[D]").astype(np.int64)),
            *purchase_order(rows, customers.index_of(split.users.ids), split.users.ids),
            ranker_params=overrides,
        )
        cpu = time.process_time() - started
        assert fitted.ranker is not None
        recs = np.full((keys.size, k), -1, dtype=np.int64)
        for r, row in enumerate(fitted.customers.index_of(keys).tolist()):
            if row >= 0:
                items, _ = fitted.ranker.rank(row, k)
                recs[r, : items.size] = product_at[fitted.products.ids[items]]
        every = ranking_metrics(recs, truth.relevant, k, n, truth.n_relevant).recall
        repeat = ranking_metrics(recs[has_repeat], repeat_truth[has_repeat], k, n).recall
        new = ranking_metrics(recs[has_new], new_truth[has_new], k, n).recall
        print(f"| {dict(RANKER_PARAMS, **overrides)} | {every:.4f} | {repeat:.4f} | {new:.4f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
