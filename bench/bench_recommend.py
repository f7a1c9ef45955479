"""Benchmark: single-customer recommend latency (p50/p99, with filters) and batch recommendations per second.

Run from the repository root (by hand, never by the test suite)::

    .venv/bin/python -m bench.bench_recommend [UCI_PATH] [--calls 2000] [--repeat 3]

Setup, not measured: the full UCI file (default ../shared/data/online_retail.csv.gz) is imported into a
temporary SQLite database, and every product gets a category, the last word of its title (HOLDER, BAG,
MUG...: the UCI file has no categories, and the category filters need some); then
``domain.serving.training.train_model`` trains the default model, as ``giftrec train`` does. Each of
those steps runs in a child process. This process then loads the model like a serving process
(``build_serving`` with BLAS pinned, as ``create_app`` does) and times, over random known customers (seeded):

- ``model``: ``allowed_mask`` (price range, one category excluded, 10 excluded items) + the served
  model's ``recommend`` (n=10), through the Recommender interface;
- ``model, fold-in``: the same with ``recalculate_user=True`` (a customer who bought since training);
- ``chain``: the same filters through ``recommend_with_fallback`` (collaborative with explanations,
  similar items, bestsellers, new arrivals), and once more without explanations (``explain_n=0``) to
  show what they cost;
- ``recommend_for_customer``: the domain use case end to end in-process (catalog filters, customer
  lookup, chain, product cards), with a price range and 10 excluded SKUs, and once more with a category;
- batch: ``recommend_batch`` (n=10, catalog mask) over every customer of the model, in chunks.

Latency figures are per call, in milliseconds; ``--repeat`` rounds of ``--calls`` calls each (after a
warm-up), the median of the rounds' percentiles is reported, with the process CPU time per call (less
sensitive than wall time to other processes on the machine).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import in_workdir, machine_line, median, percentile, print_table, rss_mib, run_child

DEFAULT_UCI = "../shared/data/online_retail.csv.gz"
SEED = 7
MIN_PRICE, MAX_PRICE = 1.0, 15.0
N = 10
N_EXCLUDED = 10
BATCH_CHUNK = 1000


def child_categories(workdir: str) -> None:
    """Give every product a category: the last word of its title (setup, not measured)."""
    from sqlalchemy import select

    from bench.bench_train import _settings
    from domain.db import make_engine, make_session_factory, session_scope
    from domain.models import Product

    settings = _settings(workdir)
    engine = make_engine(settings.database.url)
    with session_scope(make_session_factory(engine)) as session:
        for product in session.scalars(select(Product)):
            words = re.findall(r"[A-Z]+", (product.title or "").upper())
            product.category = words[-1] if words else "OTHER"
    engine.dispose()
    print("{}")


def _length(result: Any) -> int:
    return len(result[0]) if isinstance(result, tuple) else len(result)


def _latencies(call: Callable[[int], Any], users: list[Any], calls: int, repeat: int) -> dict[str, float]:
    """Run `call` over `users` (cycled): a warm-up, then `repeat` rounds; median p50/p99/mean in ms."""
    for u in users[:100]:
        call(u)
    p50, p99, mean, cpu = [], [], [], []
    for r in range(repeat):
        times = []
        cpu_start = time.process_time()
        for i in range(calls):
            u = users[(r * calls + i) % len(users)]
            t = time.perf_counter_ns()
            call(u)
            times.append((time.perf_counter_ns() - t) / 1e6)
        cpu.append((time.process_time() - cpu_start) * 1000 / calls)
        p50.append(percentile(times, 50))
        p99.append(percentile(times, 99))
        mean.append(sum(times) / len(times))
    return {"p50": median(p50), "p99": median(p99), "mean": median(mean), "cpu": median(cpu)}


def measure(workdir: str, calls: int, repeat: int) -> None:
    import numpy as np

    from bench.bench_train import _settings
    from domain.db import make_engine, make_session_factory
    from domain.serving.recommendations import build_serving, recommend_for_customer
    from recommender.chain import recommend_with_fallback
    from recommender.filters import allowed_mask
    from recommender.popularity import NewArrivals, PopularityRecommender
    from recommender.threads import pin_blas_threads

    pin_blas_threads()
    settings = _settings(workdir)
    engine = make_engine(settings.database.url)
    serving = build_serving(settings, make_session_factory(engine))
    t = time.perf_counter()
    data = serving.store.current()
    cat = serving.catalog.current()
    loaded = data.model
    if loaded is None or data.user_items is None:
        raise SystemExit(f"no model loaded: {serving.store.error}")
    print(
        f"serving {loaded.algorithm} model {loaded.version}: {len(loaded.user_index):,} customers x "
        f"{loaded.n_items:,} items; loaded in {time.perf_counter() - t:.1f} s, RSS {rss_mib():.0f} MiB"
    )
    serving.store.wait(900)  # the precomputed rankings (a background thread): made before any timing
    model = loaded.discovery  # what picks that leave out bought items use
    to_cat = cat.aligned(loaded.item_index)
    in_cat = to_cat >= 0
    base = np.zeros(loaded.n_items, dtype=bool)
    base[in_cat] = cat.available[to_cat[in_cat]]
    prices = np.full(loaded.n_items, np.nan)
    prices[in_cat] = cat.price_values[to_cat[in_cat]]
    cats = np.full(loaded.n_items, "", dtype=cat.categories.dtype)
    cats[in_cat] = cat.categories[to_cat[in_cat]]
    labels, counts = np.unique(cats[cats != ""], return_counts=True)
    excluded_category = str(labels[np.argmax(counts)])

    sales = data.sales
    pos = loaded.item_index.index_of(sales.product_ids)
    keep = pos >= 0
    bestsellers = PopularityRecommender(window_days=float(settings.interactions.bestseller_days)).fit_events(
        sales.customer_ids[keep], pos[keep], sales.timestamps[keep], n_items=loaded.n_items
    )
    created = np.full(loaded.n_items, np.datetime64("NaT"), dtype="datetime64[s]")
    created[in_cat] = cat.created_at[to_cat[in_cat]]
    new_arrivals = NewArrivals(created)

    rng = np.random.default_rng(SEED)
    known = np.arange(len(loaded.user_index))
    users = rng.permutation(known).tolist()
    top_items = np.asarray(bestsellers.top(200)[0])
    excludes = {u: rng.choice(top_items, N_EXCLUDED, replace=False) for u in users}
    external = dict(zip(data.customers.values(), data.customers.keys(), strict=True))
    customer_ids = loaded.user_index.ids
    top_skus = {u: [cat.skus[to_cat[i]] for i in excludes[u] if to_cat[i] >= 0] for u in users}
    in_window = cats[(prices >= MIN_PRICE) & (prices <= MAX_PRICE) & base]
    labels, counts = np.unique(in_window[in_window != ""], return_counts=True)
    include_category = str(labels[np.argmax(counts)])
    print(
        f"filters: price {MIN_PRICE:g}-{MAX_PRICE:g}, category {excluded_category!r} excluded "
        f"({int((cats == excluded_category).sum())} items), {N_EXCLUDED} excluded bestsellers per call; "
        f"{int(base.sum()):,} of {loaded.n_items:,} items available"
    )

    def mask(u: int) -> np.ndarray:
        return allowed_mask(
            loaded.n_items,
            base=base,
            prices=prices,
            min_price=MIN_PRICE,
            max_price=MAX_PRICE,
            categories=cats,
            exclude_categories=[excluded_category],
            exclude_items=excludes[u],
        )

    def via_model(u: int) -> Any:
        return model.recommend(u, data.user_items[u], N, allowed=mask(u))

    def via_model_fold_in(u: int) -> Any:
        return model.recommend(u, data.user_items[u], N, allowed=mask(u), recalculate_user=True)

    def via_chain(u: int) -> Any:
        return recommend_with_fallback(
            N,
            model=model,
            user_idx=u,
            user_items_row=data.user_items[u],
            allowed=mask(u),
            similar=loaded.similar,
            bestsellers=bestsellers,
            new_arrivals=new_arrivals,
        )

    def via_chain_unexplained(u: int) -> Any:
        return recommend_with_fallback(
            N,
            model=model,
            user_idx=u,
            user_items_row=data.user_items[u],
            allowed=mask(u),
            similar=loaded.similar,
            bestsellers=bestsellers,
            new_arrivals=new_arrivals,
            explain_n=0,
        )

    def end_to_end(u: int) -> Any:
        return recommend_for_customer(
            serving,
            external[int(customer_ids[u])],
            N,
            min_price=MIN_PRICE,
            max_price=MAX_PRICE,
            exclude=top_skus[u],
        )

    def end_to_end_category(u: int) -> Any:
        return recommend_for_customer(
            serving,
            external[int(customer_ids[u])],
            N,
            category=include_category,
            min_price=MIN_PRICE,
            max_price=MAX_PRICE,
            exclude=top_skus[u],
        )

    # Sanity: every path returns a full list for most customers.
    sample = users[:200]
    filled = {
        name: sum(_length(fn(u)) == N for u in sample) / len(sample)
        for name, fn in (("model", via_model), ("chain", via_chain), ("e2e", end_to_end))
    }
    print("share of calls with a full list of 10: " + ", ".join(f"{k} {v:.0%}" for k, v in filled.items()))

    rows = []
    for label, fn in (
        ("model.recommend", via_model),
        ("model.recommend, fold-in", via_model_fold_in),
        ("recommend_with_fallback", via_chain),
        ("recommend_with_fallback, explain_n=0", via_chain_unexplained),
        ("recommend_for_customer", end_to_end),
        (f"recommend_for_customer, category {include_category}", end_to_end_category),
    ):
        r = _latencies(fn, users, calls, repeat)
        rows.append([label, r["p50"], r["p99"], r["mean"], r["cpu"], 1000 / r["mean"]])
        print(f"  {label}: p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms")
    print()
    print(f"single-customer latency, n={N}, {calls} calls x {repeat} rounds (median of rounds), ms")
    print_table(["path", "p50 ms", "p99 ms", "mean ms", "CPU ms/call", "calls/s"], rows)

    # Batch: every customer of the model, n=10, catalog mask, chunks of BATCH_CHUNK users.
    user_items = data.user_items[: len(loaded.user_index)]
    seconds = []
    for _ in range(repeat):
        t = time.perf_counter()
        for start in range(0, len(known), BATCH_CHUNK):
            stop = min(start + BATCH_CHUNK, len(known))
            model.recommend_batch(known[start:stop], user_items[start:stop], N, allowed=base)
        seconds.append(time.perf_counter() - t)
    s = median(seconds)
    print()
    print(
        f"recommend_batch over {len(known):,} customers, n={N}, chunks of {BATCH_CHUNK}, median of {repeat}:"
    )
    print_table(
        ["customers", "seconds", "customers/s", "recommendations/s"],
        [[len(known), s, round(len(known) / s), round(len(known) * N / s)]],
    )
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default=DEFAULT_UCI, help="the full UCI Online Retail file")
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and path")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (latency) and batch passes")
    parser.add_argument("--workdir", help="reuse a database + model set up by an earlier run (kept)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_categories(args.child[1])
        return

    print(machine_line())
    print(f"command: {' '.join([Path(sys.executable).name, '-m', 'bench.bench_recommend', *sys.argv[1:]])}")

    def setup(workdir: str) -> None:
        imported = run_child(["-m", "bench.bench_train", "--child", "import", args.path, workdir])
        run_child(["-m", "bench.bench_recommend", "--child", "categories", workdir])
        trained = run_child(["-m", "bench.bench_train", "--child", "train", workdir])
        print(
            f"setup: imported {imported['rows']:,} rows, trained {trained['algorithm']} on "
            f"{trained['users']:,} x {trained['items']:,} in {trained['total']:.1f} s (not measured)"
        )

    in_workdir(
        args.workdir, "giftrec-bench-rec-", setup, lambda workdir: measure(workdir, args.calls, args.repeat)
    )


if __name__ == "__main__":
    main()
