"""Gift candidates for selection planning: the catalogue as arrays and the default blended scorer.

``plan_selections`` asks a *candidates function* for scores over the whole catalogue, a batch of
selections at a time (:data:`CandidatesFn`). The default, :class:`BlendedCandidates`, blends four
components, each scaled to [0, 1]:

* ``collaborative``: the buyer's own picks from the trained model (the run serving would load: the
  newest usable :class:`~domain.models.ModelRun` whose artifact loads, else the previous one; see
  :mod:`domain.serving.model_runs`), when there is one and it knows the customer;
* ``profile``: the recipient's interests (plus gender and age words) matched against product titles,
  categories and tags, with scikit-learn's ``CountVectorizer``;
* ``seasonal``: what sold in the four weeks before this occasion's date in past years;
* ``bestseller``: what sold over ``interactions.bestseller_days`` (all time when that window is empty).

All of it is loaded in bulk: one query for the catalogue, one for bestsellers, one per distinct occasion
date for the season, and none per customer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_matrix
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from config import Settings
from domain.models import ModelRun, Order, OrderLine, Product
from domain.models._types import naive_utc
from domain.origin import real_orders
from domain.serving.model_runs import load_newest_usable, load_run_artifact
from recommender.artifacts import Artifact
from recommender.curation import SOURCES

if TYPE_CHECKING:  # imported where used: scikit-learn (with pandas, scipy.stats) is a second to import
    from sklearn.feature_extraction.text import CountVectorizer

log = logging.getLogger(__name__)

__all__ = [
    "SEASON_DAYS",
    "WEIGHTS",
    "BlendedCandidates",
    "CandidateRows",
    "Candidates",
    "CandidatesFn",
    "Catalog",
    "CollaborativeFn",
    "default_candidates",
    "latest_model_scorer",
    "profile_words",
]

#: Weight of each component in the blend, in the order of ``recommender.curation.SOURCES``.
WEIGHTS: dict[str, float] = {"collaborative": 0.4, "profile": 0.3, "seasonal": 0.2, "bestseller": 0.1}
#: "The weeks before the occasion": sales in this many days before the date, in past years.
SEASON_DAYS = 28
#: How many collaborative picks are scored per customer.
CF_TOP_N = 200
_TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"


@dataclass(frozen=True)
class Catalog:
    """Every product as arrays in one item order (ascending product id); positions are ``item_idx``."""

    product_ids: np.ndarray
    skus: list[str]
    prices: np.ndarray
    categories: np.ndarray
    category_names: list[str]
    is_active: np.ndarray
    in_stock: np.ndarray
    delivery_days: np.ndarray
    texts: list[str]

    @classmethod
    def load(cls, session: Session) -> Catalog:
        rows = session.execute(
            select(
                Product.id,
                Product.sku,
                Product.price,
                Product.category,
                Product.is_active,
                Product.in_stock,
                Product.delivery_days,
                Product.title,
                Product.tags,
            ).order_by(Product.id)
        ).all()
        names = sorted({r.category for r in rows if r.category})
        code = {name: i for i, name in enumerate(names)}
        return cls(
            product_ids=np.array([r.id for r in rows], dtype=np.int64),
            skus=[r.sku for r in rows],
            prices=np.array([float(r.price) for r in rows], dtype=np.float64),
            categories=np.array([code.get(r.category or "", -1) for r in rows], dtype=np.int64),
            category_names=names,
            is_active=np.array([bool(r.is_active) for r in rows], dtype=bool),
            in_stock=np.array([bool(r.in_stock) for r in rows], dtype=bool),
            delivery_days=np.array([r.delivery_days for r in rows], dtype=np.int64),
            texts=[" ".join([r.title or "", r.category or "", *(r.tags or [])]) for r in rows],
        )

    @property
    def n_items(self) -> int:
        return int(self.product_ids.size)

    @property
    def available(self) -> np.ndarray:
        """Active and in stock, shape (n_items,)."""
        return self.is_active & self.in_stock

    def take(self, items: np.ndarray) -> Catalog:
        """The catalogue of the item positions `items` (ascending), in that order; category codes and
        names unchanged."""
        return Catalog(
            product_ids=self.product_ids[items],
            skus=[self.skus[i] for i in items.tolist()],
            prices=self.prices[items],
            categories=self.categories[items],
            category_names=self.category_names,
            is_active=self.is_active[items],
            in_stock=self.in_stock[items],
            delivery_days=self.delivery_days[items],
            texts=[self.texts[i] for i in items.tolist()],
        )

    def index_of(self, product_ids: np.ndarray | list[int]) -> np.ndarray:
        """Positions of product ids, -1 for ids not in the catalogue."""
        ids = np.asarray(product_ids, dtype=np.int64).reshape(-1)
        if self.product_ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.product_ids, ids), 0, self.product_ids.size - 1)
        return np.where(self.product_ids[pos] == ids, pos, -1)


@dataclass(frozen=True)
class CandidateRows:
    """A batch of selections to score; every array and list has one entry per selection."""

    customer_ids: np.ndarray
    recipient_ids: np.ndarray
    profiles: list[list[str]]
    occasion_codes: list[str]
    occasion_on: list[dt.date]
    #: The item positions to score, ascending; None scores the whole catalogue. A caller that offers a
    #: few items (a trigger's new arrivals, one category) asks for those only: their scores are the same.
    items: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.customer_ids.size)


@dataclass(frozen=True)
class Candidates:
    """Scores over the catalogue, shape (n_rows, n_items), and the main source of each score; or over
    the item positions ``items`` only (``CandidateRows.items``), shape (n_rows, items.size)."""

    scores: np.ndarray
    sources: np.ndarray
    model_run_id: int | None = None
    items: np.ndarray | None = None


CandidatesFn = Callable[[Catalog, CandidateRows], Candidates]

#: customer ids (n_rows,) -> (product ids, scores), each (n_rows, k), padded with -1 / -inf.
CollaborativeFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def profile_words(
    interests: list[str] | None, gender: str | None, birth_on: dt.date | None, on: dt.date
) -> list[str]:
    """Words describing a recipient: interests, plus gender and age words that shop tags use."""
    words = [w for w in (interests or []) if isinstance(w, str)]
    if gender == "female":
        words += ["her", "women", "ladies"]
    elif gender == "male":
        words += ["him", "men", "mens"]
    if birth_on is not None:
        age = on.year - birth_on.year - ((on.month, on.day) < (birth_on.month, birth_on.day))
        if age < 3:
            words += ["baby", "kids"]
        elif age < 13:
            words += ["kids", "children", "childrens"]
    return words


def _scaled(values: np.ndarray) -> np.ndarray:
    """log1p, then divided by the maximum: one huge bestseller must not flatten everything else."""
    out = np.log1p(np.maximum(values.astype(np.float64), 0.0))
    top = out.max() if out.size else 0.0
    return (out / top).astype(np.float32) if top > 0 else np.zeros(values.shape, dtype=np.float32)


@dataclass
class BlendedCandidates:
    """The default candidates function; build it with :func:`default_candidates`."""

    now: dt.datetime
    bestseller: np.ndarray
    vectorizer: CountVectorizer | None
    item_terms: csr_matrix | None
    collaborative: CollaborativeFn | None = None
    model_run_id: int | None = None
    #: Units sold per (item position, day ordinal) in the windows that matter for this run.
    season_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    season_days: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    season_units: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _season: dict[dt.date, np.ndarray] = field(default_factory=dict)

    def seasonal(self, catalog: Catalog, on: dt.date) -> np.ndarray:
        """Units sold per item in the SEASON_DAYS before `on`'s month and day in past years, scaled."""
        if on not in self._season:
            mask = np.zeros(self.season_days.shape, dtype=bool)
            days = self.season_days
            first = dt.date.fromordinal(int(days.min())).year if days.size else on.year
            for year in range(first, on.year):
                end = _same_day(on, year).toordinal()
                mask |= (days >= end - SEASON_DAYS) & (days < end)
            counts = np.bincount(
                self.season_items[mask], weights=self.season_units[mask], minlength=catalog.n_items
            )
            self._season[on] = _scaled(counts)
        return self._season[on]

    def __call__(self, catalog: Catalog, rows: CandidateRows) -> Candidates:
        cols = rows.items
        n_rows = len(rows)
        n_cols = catalog.n_items if cols is None else int(cols.size)

        def take(values: np.ndarray) -> np.ndarray:
            return values if cols is None else values[..., cols]

        # each part scaled to [0, 1] over the whole catalogue (also when only `cols` are scored, so that
        # their scores do not change), in the order of SOURCES; None where a part is absent (all zero)
        parts: list[np.ndarray | None] = [None] * len(SOURCES)
        if self.collaborative is not None and n_rows:
            parts[0] = self._collaborative(catalog, rows.customer_ids, cols)
        if self.vectorizer is not None and self.item_terms is not None and n_rows:
            docs = [" ".join(words) for words in rows.profiles]
            matches = csr_matrix(self.vectorizer.transform(docs) @ self.item_terms.T).astype(np.float32)
            top = matches.max(axis=1).toarray()  # the matches are >= 0: the implicit zeros change nothing
            match = (matches if cols is None else matches[:, cols]).toarray()
            parts[1] = np.divide(match, top, out=np.zeros_like(match), where=top > 0)
        if n_rows:
            parts[2] = np.stack([take(self.seasonal(catalog, on)) for on in rows.occasion_on])
        parts[3] = take(self.bestseller)[None, :]
        scores, sources = _blend(parts, (n_rows, n_cols))
        return Candidates(scores=scores, sources=sources, model_run_id=self.model_run_id, items=cols)

    def _collaborative(
        self, catalog: Catalog, customer_ids: np.ndarray, cols: np.ndarray | None
    ) -> np.ndarray:
        """The model's top picks of each customer, divided by the customer's best (over the catalogue),
        in the columns `cols` (None: every item)."""
        assert self.collaborative is not None
        pids, cf_scores = self.collaborative(customer_ids)
        pos = np.where(pids >= 0, catalog.index_of(pids).reshape(pids.shape), -1)
        vals = np.where(pos >= 0, np.maximum(np.asarray(cf_scores, dtype=np.float32), 0.0), np.float32(0.0))
        top = vals.max(axis=1, initial=np.float32(0.0), keepdims=True)  # a model's picks are distinct items
        if cols is None:
            column = pos
        else:
            column_of = np.full(catalog.n_items, -1, dtype=np.int64)
            column_of[cols] = np.arange(cols.size)
            column = np.where(pos >= 0, column_of[np.maximum(pos, 0)], -1)
        r, c = np.nonzero(column >= 0)
        cf = np.zeros((customer_ids.size, catalog.n_items if cols is None else cols.size), dtype=np.float32)
        cf[r, column[r, c]] = vals[r, c]
        return np.divide(cf, top, out=np.zeros_like(cf), where=top > 0)


def _blend(parts: list[np.ndarray | None], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The weighted sum of the parts and the index of the largest weighted part (the first on a tie;
    "bestseller" where none is positive), without stacking them into one (parts, rows, items) array:
    a third of the memory passes. Sums in SOURCES order, so the scores are the same to the bit."""
    scores = np.zeros(shape, dtype=np.float32)
    best = np.zeros(shape, dtype=np.float32)
    sources = np.zeros(shape, dtype=np.int8)
    first = True
    for k, part in enumerate(parts):
        if part is None:  # an absent part adds 0 and never wins: max > 0 wins, else "bestseller"
            continue
        weighted = part * np.float32(WEIGHTS[SOURCES[k]])
        if first:
            scores += weighted
            best[...] = weighted
            sources[...] = k
            first = False
            continue
        scores += weighted
        sources[weighted > best] = k
        np.maximum(best, weighted, out=best)
    sources[best <= 0] = SOURCES.index("bestseller")
    return scores, sources


def _same_day(on: dt.date, year: int) -> dt.date:
    try:
        return on.replace(year=year)
    except ValueError:  # 29 February
        return dt.date(year, 2, 28)


def _season_sales(
    session: Session, catalog: Catalog, window: tuple[dt.date, dt.date]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sales per (item, day) in the SEASON_DAYS before `window`, in every past year: one query."""
    first = session.execute(select(func.min(Order.ordered_at)).where(Order.kind == "sale")).scalar()
    lo, hi = window
    ranges = []
    if first is not None:
        # k years back, the union of every date's window is [lo - SEASON_DAYS, hi), moved back k years.
        for k in range(1, hi.year - first.year + 1):
            start = _same_day(lo, lo.year - k) - dt.timedelta(days=SEASON_DAYS)
            end = _same_day(hi, hi.year - k)
            ranges.append(
                (Order.ordered_at >= dt.datetime.combine(start, dt.time()))
                & (Order.ordered_at < dt.datetime.combine(end, dt.time()))
            )
    empty = np.zeros(0, dtype=np.int64)
    if not ranges:
        return empty, empty, np.zeros(0)
    day = func.date(Order.ordered_at)
    rows = session.execute(
        select(OrderLine.product_id, day, func.sum(OrderLine.quantity))
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.kind == "sale", or_(*ranges), real_orders())
        .group_by(OrderLine.product_id, day)
    ).all()
    if not rows:
        return empty, empty, np.zeros(0)
    pos = catalog.index_of(np.array([r[0] for r in rows], dtype=np.int64))
    days = np.array([dt.date.fromisoformat(str(r[1])[:10]).toordinal() for r in rows], dtype=np.int64)
    units = np.array([float(r[2]) for r in rows])
    keep = pos >= 0
    return pos[keep], days[keep], units[keep]


def _bestsellers(session: Session, catalog: Catalog, now: dt.datetime, days: int) -> np.ndarray:
    def counts(since: dt.datetime | None) -> np.ndarray:
        stmt = (
            select(OrderLine.product_id, func.count(func.distinct(OrderLine.order_id)))
            .join(Order, Order.id == OrderLine.order_id)
            .where(Order.kind == "sale", Order.ordered_at < now, real_orders())
            .group_by(OrderLine.product_id)
        )
        if since is not None:
            stmt = stmt.where(Order.ordered_at >= since)
        out = np.zeros(catalog.n_items, dtype=np.float64)
        rows = session.execute(stmt).all()
        if rows:
            pos = catalog.index_of(np.array([r[0] for r in rows], dtype=np.int64))
            ok = pos >= 0
            out[pos[ok]] = np.array([float(r[1]) for r in rows])[ok]
        return out

    recent = counts(now - dt.timedelta(days=days))
    return _scaled(recent if recent.any() else counts(None))


def latest_model_scorer(session: Session, settings: Settings) -> tuple[CollaborativeFn | None, int | None]:
    """The buyer's collaborative picks from the model run serving would load.

    The run is chosen by the rule serving follows (:func:`~domain.serving.model_runs.load_newest_usable`):
    the newest usable run whose artifact loads, else the previous usable one. Returns ``(None, None)``
    only when no usable run loads (none trained, every artifact missing or corrupt): planning then blends
    the other components. The artifact's user index holds customer ids (integers) or external ids
    (strings), its item index product ids or SKUs; both are handled.
    """

    def load(run: ModelRun) -> CollaborativeFn:
        return _scorer(session, load_run_artifact(session, settings, run))

    picked = load_newest_usable(session, settings, load)
    if picked.errors:
        log.warning("planning skipped unusable model runs: %s", "; ".join(picked.errors))
    if picked.run is None or picked.loaded is None:
        if picked.any_usable:
            log.warning("no model run could be loaded for planning: blending without collaborative picks")
        return None, None
    return picked.loaded, picked.run.id


def _scorer(session: Session, artifact: Artifact) -> CollaborativeFn:
    users, items = artifact.user_index, artifact.item_index
    if items.ids.dtype.kind == "i":
        item_pids = items.ids.astype(np.int64)
    else:
        by_sku = dict(session.execute(select(Product.sku, Product.id)).all())
        item_pids = np.array([by_sku.get(str(s), -1) for s in items.ids.tolist()], dtype=np.int64)
    ext_by_id: dict[int, str] | None = None
    if users.ids.dtype.kind != "i":
        from domain.models import Customer

        ext_by_id = dict(session.execute(select(Customer.id, Customer.external_id)).all())
    model = artifact.model

    def score(customer_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = (
            customer_ids if ext_by_id is None else np.array([ext_by_id.get(int(c), "") for c in customer_ids])
        )
        idx = users.index_of(keys)
        known = np.flatnonzero((idx >= 0) & (idx < model.n_users))
        out_p = np.full((customer_ids.size, CF_TOP_N), -1, dtype=np.int64)
        out_s = np.full((customer_ids.size, CF_TOP_N), -np.inf, dtype=np.float32)
        if known.size:
            empty = csr_matrix((known.size, model.n_items), dtype=np.float32)
            ids, scores = model.recommend_batch(idx[known], empty, CF_TOP_N, exclude_seen=False)
            out_p[known] = np.where(ids >= 0, item_pids[np.maximum(ids, 0)], -1)
            out_s[known] = scores
        return out_p, out_s

    return score


def default_candidates(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    catalog: Catalog,
    window: tuple[dt.date, dt.date] | None = None,
) -> BlendedCandidates:
    """Build the default blended candidates function for one planning run (bulk queries only).

    `window` bounds the occasion dates of the run (default: the next 60 days): seasonal sales are
    loaded for it once, in one query.
    """
    now = naive_utc(now)
    if window is None:
        window = (now.date(), now.date() + dt.timedelta(days=60))
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer: CountVectorizer | None = CountVectorizer(binary=True, token_pattern=_TOKEN_PATTERN)
    item_terms: csr_matrix | None = None
    try:
        item_terms = csr_matrix(vectorizer.fit_transform(catalog.texts), dtype=np.float32)  # type: ignore[union-attr]
    except ValueError:  # an empty catalogue or no words at all
        vectorizer = None
    items, days, units = _season_sales(session, catalog, window)
    collaborative, run_id = latest_model_scorer(session, settings)
    return BlendedCandidates(
        now=now,
        bestseller=_bestsellers(session, catalog, now, settings.interactions.bestseller_days),
        vectorizer=vectorizer,
        item_terms=item_terms,
        collaborative=collaborative,
        model_run_id=run_id,
        season_items=items,
        season_days=days,
        season_units=units,
    )
