"""Storefront recommendation use cases: picks for a customer, similar items, bestsellers, new arrivals.

Everything here reads memory only (:class:`~domain.serving.model_store.ModelStore` and
:class:`~domain.catalog.snapshot.CatalogSnapshot`); the one exception is a customer id the process has
not seen yet, looked up once in the database. Every path applies the same filters: only active, in-stock
products, plus the caller's price range, category and excluded SKUs; picks for a customer also leave out what
the customer already bought (unless ``keep_repeats``).

A customer's picks are ranked once, unfiltered (:mod:`domain.serving.ranked`), and kept per worker (up to
``api.picks_cache_customers``): a request only filters that order, which answers exactly what ranking under
its filters would. A customer's first request ranks the same way (kept rankings off: every request does)
and explains only the items it shows; a request whose filters exhaust the ranking goes down the fallback
chain under its own filters.

Each item carries a ``source`` (``collaborative``, ``similar``, ``bestsellers``, ``new_arrivals``), a
one-line explanation and a ``recommendation_id``: ``<response token>.<position><source letter>``, unique
per item shown (11 random URL-safe characters per response), for a later click event to cite.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.catalog.snapshot import Catalog, CatalogSnapshot
from domain.customers.confidence import build_matrix
from domain.customers.interactions import WrittenRows, load_session
from domain.errors import InvalidInput, NotFound
from domain.serving.data import CustomerRows, LoadedModel, ServingData
from domain.serving.filling import bestseller_picks, fill_picks
from domain.serving.model_store import ModelStore
from domain.serving.precomputed import rank_customer
from domain.serving.ranked import EXPLAIN_N, Ranked
from recommender.interactions import IdIndex
from recommender.popularity import NewArrivals, PopularityRecommender

__all__ = [
    "MAX_N",
    "RecommendedItem",
    "Serving",
    "bestsellers",
    "build_serving",
    "catalog_changed",
    "customer_changed",
    "customer_erased",
    "new_arrivals",
    "recommend_for_customer",
    "recommend_for_session",
    "similar_products",
]

MAX_N = 100
MAX_DAYS = 3650
#: Kept candidates explained at once when a kept ranking is asked again for items it has not explained
#: (explaining 25 costs about 1.2x explaining 10); a first request explains only the items it shows.
EXPLAIN_BLOCK = 25
_SOURCE_CODE = {"collaborative": "c", "similar": "s", "bestsellers": "b", "new_arrivals": "n"}


class RecommendedItem(NamedTuple):
    """One product to show, with where it came from and why (a tuple: built ten times per request)."""

    sku: str
    title: str
    price: Decimal
    currency: str
    url: str | None
    image_url: str | None
    category: str | None
    score: float
    source: str
    explanation: str
    recommendation_id: str


#: RecommendedItem from one tuple, without the generated ``__new__``'s Python frame (its first fields are
#: CARD_FIELDS, in that order: tests/domain/test_recommendations.py).
_new_item = functools.partial(tuple.__new__, RecommendedItem)


@dataclass(frozen=True)
class Serving:
    """What the recommendation use cases read: built once per process by the composition root."""

    settings: Settings
    store: ModelStore
    catalog: CatalogSnapshot


def build_serving(settings: Settings, sessions: sessionmaker[Session], **store_options: Any) -> Serving:
    """A ModelStore and a CatalogSnapshot for a serving process (nothing is read until first use)."""
    catalog = CatalogSnapshot(sessions, background=bool(store_options.get("background", True)))
    return Serving(settings, ModelStore(settings, sessions, **store_options), catalog)


def customer_changed(
    serving: Serving,
    customer_id: int,
    *,
    order_ids: Iterable[int] = (),
    event_ids: Iterable[int] = (),
    rows: WrittenRows | None = None,
) -> None:
    """Call after committing an order, return, event or erasure of a customer (database id), with the ids
    of the orders and events written for them (this process's freshness check skips those) and, when the
    writer has them, their interaction rows (added to the customer's without a read, see
    :meth:`ModelStore.customer_changed <domain.serving.model_store.ModelStore.customer_changed>`)."""
    serving.store.customer_changed(customer_id, order_ids=order_ids, event_ids=event_ids, rows=rows)


def customer_erased(serving: Serving, customer_external_id: str) -> None:
    """Call after committing an erasure: the shop's id no longer resolves, in this process at once."""
    serving.store.customer_erased(customer_external_id)


def catalog_changed(serving: Serving) -> None:
    """Call after committing a product change: the next response sees it."""
    serving.catalog.invalidate()


# ------------------------------------------------------------------------------------------- validation
def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise InvalidInput("n", f"must be an integer from 1 to {MAX_N}")
    return n


def _price(name: str, value: Decimal | float | int | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(name, "must be a number") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidInput(name, "must be a number >= 0")
    return number


class _Filter(NamedTuple):
    """A request's filters, checked: price bounds, category and excluded catalog positions."""

    low: float | None
    high: float | None
    category: str | None
    excluded: tuple[int, ...]

    def mask(self, cat: Catalog) -> np.ndarray:
        """Catalog positions a response may show: available, in the price range and category, not excluded.

        The same rules as ``recommender.filters.allowed_mask`` (a NaN price fails any bound), on arrays
        the catalog keeps ready.
        """
        mask = cat.available.copy()
        if self.low is not None:
            mask &= cat.price_values >= self.low
        if self.high is not None:
            mask &= cat.price_values <= self.high
        if self.category is not None:
            mask &= cat.categories == self.category
        mask[list(self.excluded)] = False
        return mask


def _filter(
    cat: Catalog,
    *,
    category: str | None = None,
    min_price: Decimal | float | int | None = None,
    max_price: Decimal | float | int | None = None,
    exclude: Iterable[str] = (),
) -> _Filter:
    """Check a request's filters (InvalidInput names the parameter at fault)."""
    low, high = _price("min_price", min_price), _price("max_price", max_price)
    if low is not None and high is not None and low > high:
        raise InvalidInput("max_price", "must not be less than min_price")
    if isinstance(exclude, str):
        exclude = [exclude]
    by_sku = cat.position_by_sku
    excluded = tuple(p for p in (by_sku.get(sku) for sku in exclude) if p is not None)
    return _Filter(low, high, category, excluded)


def _filters(cat: Catalog, **filters: Any) -> np.ndarray:
    """The mask of :func:`_filter`'s filters (this runs on every storefront request)."""
    return _filter(cat, **filters).mask(cat)


# ----------------------------------------------------------------------------------------- building blocks
class _Picks:
    """Catalog positions picked so far, with scores, sources and explanations."""

    def __init__(self, cat: Catalog, allowed: np.ndarray, n: int) -> None:
        self.cat, self.n = cat, n
        self.blocked = ~allowed
        self.items: list[tuple[int, float, str, str]] = []

    @property
    def missing(self) -> int:
        return self.n - len(self.items)

    def add(self, position: int, score: float, source: str, explanation: str) -> None:
        if self.missing > 0 and not self.blocked[position]:
            self.items.append((position, score, source, explanation))
            self.blocked[position] = True

    def result(self) -> list[RecommendedItem]:
        return _recommended(self.cat, [(p, round(float(s), 6), src, why) for p, s, src, why in self.items])


def _recommended(cat: Catalog, items: list[tuple[int, float, str, str]]) -> list[RecommendedItem]:
    """(catalog position, score rounded to 6 decimals, source, explanation) -> items with their cards and
    recommendation ids."""
    token = secrets.token_urlsafe(8)
    fields = cat.card_fields
    return [
        _new_item((*fields(position), score, source, explanation, f"{token}.{i}{_SOURCE_CODE[source]}"))
        for i, (position, score, source, explanation) in enumerate(items)
    ]


def _popularity(data: ServingData, cat: Catalog, days: int) -> np.ndarray:
    """Distinct buyers (guests count once per line) per catalog position over the last ``days`` of sales."""
    key = ("popularity", days, cat.version)
    found = data.cache.get(key)
    if found is None:
        sales = data.sales
        pos = cat.positions(sales.product_ids)
        keep = pos >= 0
        model = PopularityRecommender(window_days=float(days), count="buyers").fit_events(
            sales.customer_ids[keep], pos[keep], sales.timestamps[keep], n_items=len(cat)
        )
        found = model.popularity
        if len(data.cache) > 64:
            data.cache.clear()
        data.cache[key] = found
    assert found is not None
    return found


def _newest(data: ServingData, cat: Catalog) -> NewArrivals:
    key = ("new_arrivals", cat.version)
    found = data.cache.get(key)
    if found is None:
        found = data.cache[key] = NewArrivals(cat.created_at)
    assert isinstance(found, NewArrivals)
    return found


def _fill_bestsellers(picks: _Picks, data: ServingData, days: int, category: str | None = None) -> None:
    if picks.missing <= 0:
        return
    blocked = picks.blocked.copy()
    if category is not None:
        blocked |= picks.cat.categories != category
    where = f" in {category}" if category else ""
    for pick in bestseller_picks(_popularity(data, picks.cat, days), blocked, picks.missing):
        picks.add(pick.position, pick.score, "bestsellers", f"Bestseller{where} of the last {days} days")


def _fill_new_arrivals(picks: _Picks, data: ServingData) -> None:
    if picks.missing <= 0:
        return
    ids, values = _newest(data, picks.cat).top(picks.missing, allowed=~picks.blocked)
    for position, score in zip(ids.tolist(), values.tolist(), strict=True):
        picks.add(position, score, "new_arrivals", "New arrival")


def _titles(cat: Catalog, positions: list[int]) -> str:
    names = [cat.titles[p] for p in positions[:2]]
    return " and ".join(names)


def _explanation(
    cat: Catalog, to_cat: np.ndarray, source: str, because: tuple[int, ...], bought: set[int]
) -> str:
    """The line shown under a pick (``because``: model item ids behind it)."""
    positions = [p for p in map(int, to_cat[list(because)]) if p >= 0] if because else []
    if source == "collaborative":
        verb = "bought" if any(p in bought for p in positions) else "looked at"
        return f"Because you {verb} {_titles(cat, positions)}" if positions else "Picked for you"
    return f"Similar to {_titles(cat, positions)}" if positions else "Similar to your purchases"


def _collaborative_texts(
    cat: Catalog, loaded: LoadedModel, reasons: list[list[int]], bought_product_ids: np.ndarray
) -> list[str]:
    """:func:`_explanation` of collaborative picks with these reasons (model item ids), all at once: one
    catalog lookup for every item named. A named item was bought when its product id is among the
    customer's (what :func:`_explanation` asks of its catalog position, without a catalog search)."""
    named = [i for reason in reasons for i in reason]
    if not named:
        return ["Picked for you"] * len(reasons)
    at = cat.aligned(loaded.item_index)[named].tolist()
    product_ids = loaded.item_index.ids[named].tolist()
    bought = set(bought_product_ids.tolist())
    titles = cat.titles
    out = []
    start = 0
    for reason in reasons:
        stop = start + len(reason)
        shown = [(p, pid) for p, pid in zip(at[start:stop], product_ids[start:stop], strict=True) if p >= 0]
        start = stop
        if not shown:
            out.append("Picked for you")
            continue
        verb = "bought" if any(pid in bought for _, pid in shown) else "looked at"
        out.append(f"Because you {verb} {' and '.join(titles[p] for p, _ in shown[:2])}")
    return out


def _ranked(data: ServingData, loaded: LoadedModel, rows: CustomerRows) -> Ranked | None:
    """The customer's kept discovery ranking: kept, else precomputed when the model was loaded (while the
    customer's rows are the ones it was made from), else made now; kept unless kept rankings are off
    (None: the model has nothing to say about this customer)."""
    cache = data.ranked
    found = cache.get(rows.customer_id, rows)
    if found is not None:
        return found
    ahead = data.precomputed
    if ahead is not None and ahead.user_items is data.user_items and rows.customer_id not in data.fresh:
        found = ahead.ranked(rows.customer_id, rows)
    if found is None:
        ranking = rank_customer(loaded, rows)
        if ranking is None:
            return None  # the chain starts at similar items / bestsellers for them
        ids, scores = ranking
        # Rounded as _Picks.result rounds (exactly: a float32 times 1e6 is exact in float64), once here
        # rather than per request.
        found = Ranked(rows, ids, np.round(scores.astype(np.float64), 6))
    cache.put(rows.customer_id, found)
    return found


def _take_ranked(
    cat: Catalog, flt: _Filter, n: int, loaded: LoadedModel, rows: CustomerRows, ranked: Ranked
) -> list[RecommendedItem] | None:
    """The first ``n`` kept products the request's filters allow, with scores and explanations; None when
    the kept ranking holds fewer: then the request ranks under its own filters."""
    to_cat = cat.aligned(loaded.item_index)
    if ranked.version != cat.version:
        kept_at = to_cat[ranked.items]
        in_cat = kept_at >= 0
        offered = np.flatnonzero(in_cat & cat.available[np.where(in_cat, kept_at, 0)])
        at = kept_at[offered]
        ranked.offered_ranks, ranked.offered_positions = offered.astype(np.int32), at.astype(np.int32)
        ranked.offered_prices = cat.price_values[at]
        ranked.texts, ranked.version = {}, cat.version
    # The same rules as _Filter.mask (a NaN price fails any bound), on the kept products in order, a
    # slice at a time as Python lists: a request nearly always stops within its first slice, and a dozen
    # numpy calls over all 200 kept products cost more than this loop over a few dozen.
    low, high, category, excluded = flt
    categories = cat.categories if category is not None else None
    ranks: list[int] = []
    positions: list[int] = []
    size = int(ranked.offered_ranks.size)
    start, step = 0, 2 * (n + len(excluded))
    while start < size and len(ranks) < n:
        stop = min(size, start + step)
        chunk = zip(
            ranked.offered_ranks[start:stop].tolist(),
            ranked.offered_positions[start:stop].tolist(),
            ranked.offered_prices[start:stop].tolist(),
            strict=True,
        )
        for rank, position, price in chunk:
            if (low is not None and not price >= low) or (high is not None and not price <= high):
                continue
            if position in excluded or (categories is not None and categories[position] != category):
                continue
            ranks.append(rank)
            positions.append(position)
            if len(ranks) == n:
                break
        start, step = stop, 2 * step
    if len(ranks) < n:
        return None
    items = ranked.items[ranks].tolist()
    texts = ranked.texts
    todo = [r for r, i in zip(ranks, items, strict=True) if i not in texts]
    if todo:
        if texts:
            # A kept ranking asked again for items it has not explained (other filters): explained a
            # block at a time, so that this one factorisation serves the next requests' filters too.
            upto = (ranks[-1] // EXPLAIN_BLOCK + 1) * EXPLAIN_BLOCK
            todo = [r for r, i in enumerate(ranked.items[:upto].tolist()) if i not in texts]
        # else a customer's first request (every request, with kept rankings off): only the items shown.
        _explain(cat, loaded, rows, ranked, todo)
    scores = ranked.scores[ranks].tolist()
    return _recommended(
        cat,
        [
            (position, score, "collaborative", texts[item])
            for item, position, score in zip(items, positions, scores, strict=True)
        ],
    )


def _explain(cat: Catalog, loaded: LoadedModel, rows: CustomerRows, ranked: Ranked, todo: list[int]) -> None:
    """Add the texts of the kept items at ranks ``todo``: from the reasons explained ahead where the
    ranking has them (precomputed), else from one factorisation for the rest."""
    ahead = ranked.reasons
    known = [r for r in todo if r < len(ahead)]
    rest = [r for r in todo if r >= len(ahead)]
    reasons = [[i for i in ids if i >= 0] for ids in ahead[known].tolist()] if known else []
    items = ranked.items[known + rest].tolist()
    if rest:
        row = rows.row
        assert row is not None
        if row.nnz:
            found = loaded.discovery.explain_ids(rows.user_idx, row, items[len(known) :], EXPLAIN_N)
            reasons += [[i for i in ids if i >= 0] for ids in found.tolist()]
        else:
            reasons += [[] for _ in rest]
    ranked.texts.update(
        zip(items, _collaborative_texts(cat, loaded, reasons, rows.bought_product_ids), strict=True)
    )


# ---------------------------------------------------------------------------------------------- use cases
def recommend_for_customer(
    serving: Serving,
    customer_external_id: str,
    n: int = 10,
    *,
    category: str | None = None,
    min_price: Decimal | float | int | None = None,
    max_price: Decimal | float | int | None = None,
    exclude: Iterable[str] = (),
    keep_repeats: bool = False,
) -> list[RecommendedItem]:
    """Personal picks, filled along the chain collaborative -> similar -> bestsellers -> new arrivals.

    A customer who bought since the last training is folded in from their current rows; one the model
    never saw gets the fallbacks (or fold-in, if they have rows). Raises NotFound for an unknown customer
    id, InvalidInput for a bad ``n`` or price range.
    """
    _check_n(n)
    cat = serving.catalog.current()
    flt = _filter(cat, category=category, min_price=min_price, max_price=max_price, exclude=exclude)
    data = serving.store.current()
    customer_id = serving.store.find_customer(data, customer_external_id)
    if customer_id is None:
        raise NotFound("customer", customer_external_id)
    rows = serving.store.customer(data, customer_id)
    loaded = data.model
    if loaded is not None and rows.row is not None and not keep_repeats:
        # A kept ranking holds nothing the customer bought: the filters are all this request adds.
        ranked = _ranked(data, loaded, rows)
        taken = None if ranked is None else _take_ranked(cat, flt, n, loaded, rows, ranked)
        if taken is not None:
            return taken
    return _picks_for(serving, data, cat, flt, n, rows, keep_repeats)


def _picks_for(
    serving: Serving,
    data: ServingData,
    cat: Catalog,
    flt: _Filter,
    n: int,
    rows: CustomerRows,
    keep_repeats: bool = False,
) -> list[RecommendedItem]:
    """Ranked under this request's filters: the chain collaborative -> similar, then the fallbacks."""
    loaded = data.model
    picks = _Picks(cat, flt.mask(cat), n)
    bought_positions = cat.positions(rows.bought_product_ids)
    bought_positions = bought_positions[bought_positions >= 0]
    if not keep_repeats:
        picks.blocked[bought_positions] = True
    days = serving.settings.interactions.bestseller_days
    to_cat = cat.aligned(loaded.item_index) if loaded is not None else np.empty(0, dtype=np.int64)
    model = None if loaded is None else loaded.model if keep_repeats else loaded.discovery
    filled = fill_picks(
        n,
        picks.blocked,
        model=model,
        user_idx=rows.user_idx,
        row=rows.row,
        to_pos=to_cat,
        similar=loaded.similar if loaded is not None else None,
        bestsellers=_popularity(data, cat, days),
        new_arrivals=_newest(data, cat),
        recalculate=rows.recalculate,
    )
    bought = set(bought_positions.tolist())
    for pick in filled:
        if pick.source == "bestsellers":
            text = f"Bestseller of the last {days} days"
        elif pick.source == "new_arrivals":
            text = "New arrival"
        else:
            text = _explanation(cat, to_cat, pick.source, pick.because, bought)
        picks.items.append((pick.position, pick.score, pick.source, text))
    return picks.result()


def recommend_for_session(
    serving: Serving,
    anonymous_id: str,
    n: int = 10,
    *,
    category: str | None = None,
    min_price: Decimal | float | int | None = None,
    max_price: Decimal | float | int | None = None,
    exclude: Iterable[str] = (),
) -> list[RecommendedItem]:
    """Picks for an anonymous browser session from its own views, clicks and carts (folded into the model
    like a new customer), filled along the same chain; bestsellers and new arrivals for a session the
    API has no events of. Nothing about any customer: safe for a public widget key."""
    _check_n(n)
    if not 1 <= len(anonymous_id) <= 100:
        raise InvalidInput("anonymous_id", "must be 1 to 100 characters")
    cat = serving.catalog.current()
    flt = _filter(cat, category=category, min_price=min_price, max_price=max_price, exclude=exclude)
    data = serving.store.current()
    row = None
    if data.model is not None:
        with serving.store.sessions() as session:
            events = load_session(session, anonymous_id)
        if len(events):
            matrix, _, _ = build_matrix(
                events,
                serving.settings.interactions,
                user_index=IdIndex(np.array([-1], dtype=np.int64)),
                item_index=data.model.item_index,
            )
            row = matrix[0:1] if matrix[0:1].nnz else None
    rows = CustomerRows(-1, -1, row, np.empty(0, dtype=np.int64), True)
    return _picks_for(serving, data, cat, flt, n, rows)


def similar_products(serving: Serving, sku: str, n: int = 10) -> list[RecommendedItem]:
    """Products like ``sku`` (bought by the same customers); short lists are filled with bestsellers of the
    same category, then overall. Raises NotFound for an unknown SKU."""
    _check_n(n)
    cat = serving.catalog.current()
    position = cat.position_by_sku.get(sku)
    if position is None:
        raise NotFound("product", sku)
    allowed = cat.available.copy()
    allowed[position] = False
    picks = _Picks(cat, allowed, n)
    data = serving.store.current()
    loaded = data.model
    if loaded is not None and loaded.similar is not None:
        item = int(loaded.item_index.index_of(int(cat.product_ids[position]))[0])
        if item >= 0:
            to_cat = cat.aligned(loaded.item_index)
            in_cat = to_cat >= 0
            allowed_model = np.zeros(loaded.n_items, dtype=bool)
            allowed_model[in_cat] = allowed[to_cat[in_cat]]
            ids, scores = loaded.similar.similar(item, n, allowed=allowed_model)
            text = f"Customers who bought {cat.titles[position]} also bought this"
            for i, score in zip(ids.tolist(), scores.tolist(), strict=True):
                picks.add(int(to_cat[i]), score, "similar", text)
    days = serving.settings.interactions.bestseller_days
    category = str(cat.categories[position]) or None
    if category is not None:
        _fill_bestsellers(picks, data, days, category)
    _fill_bestsellers(picks, data, days)
    _fill_new_arrivals(picks, data)
    return picks.result()


def bestsellers(
    serving: Serving, category: str | None = None, days: int | None = None, n: int = 10
) -> list[RecommendedItem]:
    """The most bought available products (distinct buyers) over the last ``days`` days of sales.

    The window ends at the newest sale, so a quiet week does not empty the list. ``days`` defaults to
    ``interactions.bestseller_days``.
    """
    _check_n(n)
    window = serving.settings.interactions.bestseller_days if days is None else days
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_DAYS:
        raise InvalidInput("days", f"must be an integer from 1 to {MAX_DAYS}")
    cat = serving.catalog.current()
    picks = _Picks(cat, _filters(cat, category=category), n)
    _fill_bestsellers(picks, serving.store.current(), window, category)
    return picks.result()


def new_arrivals(serving: Serving, category: str | None = None, n: int = 10) -> list[RecommendedItem]:
    """The newest available products (by first appearance in the catalog)."""
    _check_n(n)
    cat = serving.catalog.current()
    picks = _Picks(cat, _filters(cat, category=category), n)
    _fill_new_arrivals(picks, serving.store.current())
    return picks.result()
