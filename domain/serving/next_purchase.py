"""Next likely purchase: BG/NBD and repurchase intervals fitted from orders, served from memory.

Purchases are the lines of sale orders of registered customers, counted in whole UTC days: several lines
or orders on one day are one purchase (wholesalers often split an order), returns are not purchases
and guest orders belong to nobody. One aggregate query reads them (distinct customer, product, day).

The data's clock: "today" is the day of the newest order when that is earlier than the real date, as
training and bestsellers do, so that historical data (the UCI file ends on 2011-12-09) gives sensible
answers. Every answer states it as ``as_of``.

The learned ranking costs tens of seconds of CPU on a large shop: it is fitted by its own training step
(:mod:`domain.serving.next_purchase_runs`), never by a web process, which loads its artifact
(:class:`~domain.serving.next_purchase_service.NextPurchaseService`) and answers with
:func:`next_purchase_for`. Until an artifact exists, answers come from the timing model alone (fitted
without the ranker, about a second at most), own items ranked by repurchase chance, with `PREPARING`
as the note.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from domain.errors import InvalidInput, NotFound
from domain.models import Customer, Order, OrderLine, Product
from domain.models._types import utcnow
from domain.origin import real_orders
from domain.serving.recommendations import MAX_N, Serving
from recommender.base import RecommenderError
from recommender.interactions import IdIndex
from recommender.next_basket import NextBasketRanker, Purchases
from recommender.next_purchase import NextPurchaseModel
from recommender.next_purchase_choice import LEARNED, BaselineRanker

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "FittedNextPurchase",
    "NextPurchase",
    "NextPurchaseItem",
    "NextPurchaseSource",
    "PREPARING",
    "PurchaseDays",
    "day_number",
    "fit_next_purchase",
    "fit_purchase_days",
    "load_purchase_days",
    "next_purchase_for",
    "served_ranking",
]

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 30
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class PurchaseDays:
    """Distinct (customer, product, day) purchases as parallel int64 arrays; days since 1970-01-01 (UTC).

    ``lines`` counts the order lines behind each entry.
    """

    customer_ids: np.ndarray
    product_ids: np.ndarray
    days: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return int(self.customer_ids.size)


def day_number(session: Session) -> Any:
    """The order's UTC day as an integer number of days since 1970-01-01, on either database."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.julianday(func.date(Order.ordered_at)) - 2440587.5, Integer)
    return cast(func.floor(func.extract("epoch", Order.ordered_at) / 86400), Integer)


def load_purchase_days(session: Session, *, until: dt.datetime | None = None) -> PurchaseDays:
    """Every day on which a registered customer bought a product (sale orders up to ``until`` inclusive).

    One query, grouped in the database: a customer's several lines of a product on one day are one row.
    """
    day = day_number(session).label("day")
    statement = (
        select(Order.customer_id, OrderLine.product_id, day, func.count())
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.kind == "sale", Order.customer_id.is_not(None), real_orders())
        .group_by(Order.customer_id, OrderLine.product_id, day)
    )
    if until is not None:
        statement = statement.where(Order.ordered_at <= until)
    rows = session.connection().execute(statement).fetchall()
    n = len(rows)
    return PurchaseDays(
        customer_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        product_ids=np.fromiter((r[1] for r in rows), dtype=np.int64, count=n),
        days=np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
        lines=np.fromiter((r[3] for r in rows), dtype=np.int64, count=n),
    )


@dataclass(frozen=True)
class FittedNextPurchase:
    """A fitted :class:`~recommender.next_purchase.NextPurchaseModel` with its id maps and clock.

    ``model`` is None when the orders cannot support a fit (no orders, nobody bought twice); ``note``
    then says why and every customer gets an answer without estimates. ``ranker`` (None with it) ranks
    the items; its ``model`` is ``model``; ``ranker.note`` says when it had too little history to learn.
    A fit of the timing model alone has no ``ranker`` (the service's answers while the learned one is
    fitted, with ``note`` = `PREPARING`).
    """

    model: NextPurchaseModel | None
    ranker: NextBasketRanker | BaselineRanker | None
    customers: IdIndex
    products: IdIndex
    as_of: dt.date
    fitted_at: dt.datetime
    note: str | None = None
    #: The artifact's version (:mod:`domain.serving.next_purchase_runs`); None for a fit in this process.
    version: str | None = None


def _date(day: int | np.integer[Any]) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(day))


def fit_next_purchase(
    session: Session,
    now: dt.datetime | None = None,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    rank: bool = True,
) -> FittedNextPurchase:
    """Fit BG/NBD and the repurchase intervals on every purchase up to ``now`` (default: the current time),
    and with `rank` the learned item ranking (what the endpoint serves; callers that need only the
    timing model, like the lifecycle triggers, skip its cost).

    "Today" is the day of ``now`` or of the newest purchase, whichever is earlier.
    """
    cut = now or utcnow()
    rows = load_purchase_days(session, until=cut)
    customers = _by_name(session, Customer.id, Customer.external_id, rows.customer_ids)
    products = _by_name(session, Product.id, Product.sku, rows.product_ids)
    return fit_purchase_days(
        rows,
        (cut.date() - _EPOCH).days,
        customers,
        products,
        horizon_days=horizon_days,
        rank=rank,
        ranking=served_ranking(session),
    )


def served_ranking(session: Session) -> str:
    """The ranking the serving model run chose for this shop (``params["served"]["next_purchase_ranking"]``,
    written by ``giftrec train --tune`` and kept by the nightly refit); the learned ranker without one."""
    from domain.serving.training import serving_run  # training -> tuning -> this module's callers

    run = serving_run(session)
    served = (run.params.get("served") or {}) if run is not None else {}
    return str(served.get("next_purchase_ranking") or LEARNED)


def _by_name(session: Session, key: Any, name: Any, wanted: np.ndarray) -> IdIndex:
    """The keys in `wanted`, ordered by their name (external id, SKU) as Python orders strings.

    Positions decide ties (equal scores, equally near neighbours), so the endpoint orders customers and
    products as `giftrec evaluate` does (by external id and SKU) and both break ties alike.
    """
    keys = np.unique(wanted)
    names: dict[int, str] = {k: n for k, n in session.execute(select(key, name))}
    return IdIndex(np.array(sorted(keys.tolist(), key=lambda k: names[k]), dtype=np.int64))


def fit_purchase_days(
    rows: PurchaseDays,
    cut_day: int,
    customers: IdIndex,
    products: IdIndex,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    ranker_params: dict[str, Any] | None = None,
    rank: bool = True,
    ranking: str = LEARNED,
) -> FittedNextPurchase:
    """Fit the ranker (`recommender.next_basket.NextBasketRanker`) on purchase days up to `cut_day`.

    "Today" is `cut_day` or the newest purchase's day, whichever is earlier. `customers` and `products`
    hold every key of `rows` in the order that breaks ties (see `_by_name`). `giftrec evaluate` calls
    this with the lines of a file, the service with the database's; `ranker_params` (tuning only)
    override `recommender.next_basket.RANKER_PARAMS`. Without `rank` only the timing model is fitted
    (``ranker`` is None). `ranking` is the shop's chosen ranking (`served_ranking`): the learned one, or a
    simple baseline (`recommender.next_purchase_choice.BaselineRanker`) where it won on validation.
    """
    today = min(cut_day, int(rows.days.max())) if len(rows) else cut_day
    # one canonical order of the rows, so that sums come out bit for bit the same on either path
    u, i = customers.index_of(rows.customer_ids), products.index_of(rows.product_ids)
    order = np.lexsort((rows.days, i, u))
    ranker = NextBasketRanker(horizon=float(horizon_days), params=ranker_params)
    try:
        if not rank:
            model = NextPurchaseModel(horizon=float(horizon_days))
            model.fit(u[order], i[order], rows.days[order], len(customers), len(products), now=today)
            return FittedNextPurchase(model, None, customers, products, _date(today), utcnow())
        purchases = Purchases(
            u[order], i[order], rows.days[order], rows.lines[order], len(customers), len(products)
        )
        if ranking != LEARNED:
            baseline = BaselineRanker(ranking, horizon=float(horizon_days)).fit(purchases, today)
            return FittedNextPurchase(baseline.model, baseline, customers, products, _date(today), utcnow())
        ranker.fit(purchases, today)
    except RecommenderError as exc:
        note = f"no next-purchase estimates yet: {exc}"
        log.warning("%s", note)
        return FittedNextPurchase(None, None, customers, products, _date(today), utcnow(), note)
    return FittedNextPurchase(ranker.model, ranker, customers, products, _date(today), utcnow())


#: The answer's note until a learned ranking is loaded (items ranked by repurchase chance meanwhile).
PREPARING = (
    "the learned ranking is not available yet: items bought before, by their chance of being bought again"
)


@dataclass(frozen=True, slots=True)
class NextPurchaseItem:
    """A product the customer will probably buy next: again (with when), or for the first time (``is_new``).

    ``score`` is the ranker's estimated chance of buying it within the horizon (the order of the list);
    ``probability``, ``expected_on`` and ``last_bought_on`` come from the repurchase-interval model and are
    None for a new item.
    """

    sku: str
    title: str
    price: Decimal
    currency: str
    url: str | None
    image_url: str | None
    category: str | None
    is_new: bool
    score: float
    expected_on: dt.date | None
    expected_in_days: float | None
    probability: float | None
    purchases: int
    last_bought_on: dt.date | None


@dataclass(frozen=True)
class NextPurchase:
    """When a customer will probably buy next, and what. Estimates are None without purchase history."""

    customer_id: str
    as_of: dt.date
    horizon_days: float
    purchase_days: int
    last_purchase_on: dt.date | None
    p_alive: float | None
    expected_purchases_30d: float | None
    expected_purchases_90d: float | None
    probability_30d: float | None
    next_purchase_on: dt.date | None
    items: list[NextPurchaseItem]
    note: str | None = None


class NextPurchaseSource(Protocol):
    """What :func:`next_purchase_for` answers from (a web process's
    :class:`~domain.serving.next_purchase_service.NextPurchaseService`)."""

    serving: Serving
    horizon_days: float

    def current(self) -> FittedNextPurchase: ...


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise InvalidInput("n", f"must be an integer from 1 to {MAX_N}")
    return n


def next_purchase_for(service: NextPurchaseSource, customer_external_id: str, n: int = 10) -> NextPurchase:
    """What the customer will probably buy next and when, plus P(alive) and the expected purchases.

    Items are active, in-stock products the customer bought before or may buy for the first time, ranked
    by :class:`~recommender.next_basket.NextBasketRanker` (what ``giftrec evaluate`` measures as served);
    each carries the ranker's score, and an item bought before the repurchase model's chance of buying it
    again within the service's horizon and its expected date. Until the service has loaded a trained
    ranker, only items bought before, by that chance (their score), and ``note`` says so.
    Raises NotFound for an unknown customer and InvalidInput for a bad ``n``.
    """
    _check_n(n)
    store = service.serving.store
    data = store.current()
    customer_id = store.find_customer(data, customer_external_id)
    if customer_id is None:
        raise NotFound("customer", customer_external_id)
    fitted = service.current()
    row = int(fitted.customers.index_of(customer_id)[0])
    model = fitted.model
    if model is None or row < 0 or model.summary is None:
        return NextPurchase(
            customer_external_id,
            fitted.as_of,
            service.horizon_days,
            0,
            None,
            None,
            None,
            None,
            None,
            None,
            [],
            (fitted.note if model is None else None) or "no purchases yet",
        )
    cat = service.serving.catalog.current()
    positions = cat.positions(fitted.products.ids)
    allowed = np.zeros(len(fitted.products), dtype=bool)
    inside = positions >= 0
    allowed[inside] = cat.available[positions[inside]]
    # the customer-level estimates, and each own item's timing (every own item, in the model's order)
    p = model.predict(row, model.intervals.n_items, allowed=allowed)
    if fitted.ranker is not None:
        ranked, scores = fitted.ranker.rank(row, n, allowed=allowed)
    else:  # the timing model alone (no trained ranker loaded yet): own items by repurchase chance
        ranked, scores = p.item_idxs[:n], p.probabilities[:n]
    at = {item: pos for pos, item in enumerate(p.item_idxs.tolist())}
    items = []
    for item, score in zip(ranked.tolist(), scores.tolist(), strict=True):
        card = cat.card(int(positions[item]))
        pos = at.get(item)
        wait = None if pos is None else float(p.expected_in[pos])
        items.append(
            NextPurchaseItem(
                sku=card.sku,
                title=card.title,
                price=card.price,
                currency=card.currency,
                url=card.url,
                image_url=card.image_url,
                category=card.category,
                is_new=pos is None,
                score=round(float(score), 6),
                expected_on=None if wait is None else fitted.as_of + dt.timedelta(days=round(wait)),
                expected_in_days=None if wait is None else round(wait, 1),
                probability=None if pos is None else round(float(p.probabilities[pos]), 6),
                purchases=0 if pos is None else int(p.purchases[pos]),
                last_bought_on=None if pos is None else _date(p.last_days[pos]),
            )
        )
    summary = model.summary
    median = p.median_days_to_next
    return NextPurchase(
        customer_id=customer_external_id,
        as_of=fitted.as_of,
        horizon_days=service.horizon_days,
        purchase_days=int(summary.frequency[row]) + 1,
        last_purchase_on=_date(summary.last[row]),
        p_alive=_round(p.p_alive),
        expected_purchases_30d=_round(p.expected_purchases_30),
        expected_purchases_90d=_round(p.expected_purchases_90),
        probability_30d=_round(p.probability_30),
        next_purchase_on=None
        if median is None or not np.isfinite(median) or median > 36500
        else fitted.as_of + dt.timedelta(days=round(median)),
        items=items,
        note=fitted.note,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
