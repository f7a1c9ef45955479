"""Choose the next-purchase ranking's weights on a validation window (never on the test window).

Run from the repository root (by hand, never by the test suite)::

    timeout 1800 .venv/bin/python -m bench.tune_next_purchase UCI_PATH [--test-days 30] [--k 10]

The test cut is ``giftrec evaluate``'s (midnight of the last day minus ``--test-days``); the validation
window is the ``--test-days`` before it: the ranker (`recommender.repeat_ranking.RepeatRanker`) is fitted,
as the endpoint fits it, on the sales before the validation cut and scored on the customers who bought
in both periods. Coordinate ascent: starting from the repurchase chance alone (weight 1), each other
feature's weight in turn takes the value of a small grid that raises validation recall@k most, for two
rounds. The chosen weights are printed; `recommender.repeat_ranking.WEIGHTS` holds them.
"""

from __future__ import annotations

import numpy as np

from bench._common import uci_history
from domain.serving.evaluation import purchase_days_of, training_rows
from domain.serving.next_purchase import fit_purchase_days
from recommender.evaluation import make_split, ranking_metrics, temporal_cut
from recommender.interactions import IdIndex
from recommender.repeat_ranking import FEATURES

GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


def main(argv: list[str] | None = None) -> int:
    args, history = uci_history(__doc__ or "", argv)
    cut = temporal_cut(history.timestamps, args.test_days)
    val_cut = cut - np.timedelta64(args.test_days * 86400, "s")
    split = make_split(history, val_cut, cut)
    _, _, customers, products = training_rows(split.train)
    rows = purchase_days_of(split.train, customers, products)
    fitted = fit_purchase_days(
        rows,
        int(val_cut.astype("datetime64[D]").astype(np.int64)),
        IdIndex(np.unique(rows.customer_ids)),
        IdIndex(np.unique(rows.product_ids)),
    )
    assert fitted.ranker is not None
    truth = split.truth["next_purchases"]
    keys = customers.index_of(split.users.ids[truth.user_idxs])
    product_at = split.items.index_of(products.ids)
    cases = []
    for row in fitted.customers.index_of(keys).tolist():
        items, feats = fitted.ranker.features(row) if row >= 0 else (np.empty(0, np.int64), {})
        cases.append((product_at[fitted.products.ids[items]], feats))
    k = args.k

    def recall(weights: dict[str, float]) -> float:
        recs = np.full((len(cases), k), -1, dtype=np.int64)
        for r, (items, feats) in enumerate(cases):
            if items.size:
                score = sum(w * feats[f] for f, w in weights.items() if w)
                order = np.lexsort((items, -np.asarray(score)))[:k]
                recs[r, : order.size] = items[order]
        return ranking_metrics(recs, truth.relevant, k, len(split.items), truth.n_relevant).recall

    weights = {f: 0.0 for f in FEATURES}
    weights["chance"] = 1.0
    best = recall(weights)
    print(f"validation window {val_cut} .. {cut}: {truth.user_idxs.size} customers")
    print(f"start (chance only): recall@{k} {best:.4f}")
    for rnd in range(2):
        for feature in FEATURES:
            if feature == "chance":
                continue
            for value in GRID:
                trial = {**weights, feature: value}
                got = recall(trial)
                if got > best + 1e-9:
                    best, weights = got, trial
            print(f"round {rnd + 1}, {feature}: recall@{k} {best:.4f} {weights}")
    print(f"chosen: {weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
