"""The product catalog in memory for the serving path: arrays per field, refreshed when products change.

:class:`CatalogSnapshot` holds an immutable :class:`Catalog` and swaps in a new one when the products
table changes. The check is one aggregate query (``count``, ``max(updated_at)``, a checksum of the
visibility flags and prices) run at most every ``check_interval`` seconds, inside the call that finds it
due, or in a background thread that call starts (``background=True``, serving); a change reloads the
table (a few thousand rows: milliseconds). A writer in the same process calls
:meth:`CatalogSnapshot.invalidate` so that its own change is visible to the very next call; other
processes see it within ``check_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from domain.models import Product
from recommender.interactions import IdIndex

__all__ = ["CARD_FIELDS", "Catalog", "CatalogSnapshot", "ProductCard"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProductCard:
    """What a storefront shows for a product."""

    product_id: int
    sku: str
    title: str
    price: Decimal
    currency: str
    url: str | None
    image_url: str | None
    category: str | None


#: The card fields a storefront shows, in the order :meth:`Catalog.card_fields` gives them.
CARD_FIELDS = ("sku", "title", "price", "currency", "url", "image_url", "category")


@dataclass(frozen=True)
class Catalog:
    """Every product as arrays in product-id order (position ``p`` is the same product in each array)."""

    version: tuple[Any, ...]
    product_ids: np.ndarray  # int64, increasing
    skus: list[str]
    titles: list[str]
    prices: list[Decimal]
    price_values: np.ndarray  # float64, for filters
    currencies: list[str]
    urls: list[str | None]
    image_urls: list[str | None]
    categories: np.ndarray  # unicode; "" = no category
    is_active: np.ndarray  # bool
    in_stock: np.ndarray  # bool
    created_at: np.ndarray  # datetime64[s]
    position_by_sku: dict[str, int]
    _aligned: dict[int, tuple[IdIndex, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    _cards: dict[int, ProductCard] = field(default_factory=dict, repr=False, compare=False)
    _card_fields: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False, compare=False)
    _available: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.product_ids.size)

    @property
    def available(self) -> np.ndarray:
        """Active and in stock: the only products any recommendation may show (read-only; copy to edit)."""
        if not self._available:
            mask = self.is_active & self.in_stock
            mask.setflags(write=False)
            self._available.append(mask)
        return self._available[0]

    def positions(self, product_ids: Any) -> np.ndarray:
        """Catalog positions of ``product_ids`` (int64), -1 where the product is not in the catalog."""
        query = np.atleast_1d(np.asarray(product_ids, dtype=np.int64))
        if not len(self) or not query.size:
            return np.full(query.size, -1, dtype=np.int64)
        pos = np.searchsorted(self.product_ids, query)
        pos_c = np.minimum(pos, len(self) - 1)
        return np.where(self.product_ids[pos_c] == query, pos_c, -1).astype(np.int64)

    def aligned(self, item_index: IdIndex) -> np.ndarray:
        """Catalog position of each of a model's items (its ids are product ids), -1 if gone; cached."""
        found = self._aligned.get(id(item_index))
        # The entry keeps its index alive, so the id cannot be reused by another index meanwhile.
        if found is not None and found[0] is item_index:
            return found[1]
        positions = self.positions(item_index.ids)
        positions.setflags(write=False)
        if len(self._aligned) > 8:  # a few model versions at most
            self._aligned.clear()
        self._aligned[id(item_index)] = (item_index, positions)
        return positions

    def to_model(self, item_index: IdIndex, mask: np.ndarray) -> np.ndarray:
        """A catalog-position mask carried over to a model's items (False where the item left the catalog)."""
        # Position -1 (not in the catalog) picks the appended False.
        return np.append(mask, False)[self.aligned(item_index)]

    def card(self, position: int) -> ProductCard:
        """The storefront card of the product at ``position`` (built once per catalog version)."""
        p = int(position)
        found = self._cards.get(p)
        if found is None:
            found = self._cards[p] = self._card(p)
        return found

    def card_fields(self, position: int) -> tuple[Any, ...]:
        """:data:`CARD_FIELDS` of the product at ``position``, as a tuple built once per catalog version
        (what a recommended item starts with: ten of them are built per storefront request)."""
        found = self._card_fields.get(position)
        if found is None:
            c = self.card(position)
            found = self._card_fields[position] = tuple(getattr(c, name) for name in CARD_FIELDS)
        return found

    def _card(self, p: int) -> ProductCard:
        category = str(self.categories[p]) or None
        return ProductCard(
            product_id=int(self.product_ids[p]),
            sku=self.skus[p],
            title=self.titles[p],
            price=self.prices[p],
            currency=self.currencies[p],
            url=self.urls[p],
            image_url=self.image_urls[p],
            category=category,
        )


def _version_query() -> Any:
    visible = case((and_(Product.is_active, Product.in_stock), Product.id), else_=0)
    return select(
        func.count(Product.id),
        func.max(Product.updated_at),
        func.max(Product.id),
        func.sum(visible),
        func.sum(Product.price),
    )


def read_version(session: Session) -> tuple[Any, ...]:
    """A value that changes whenever a product is added, removed, hidden, shown, repriced or edited."""
    row = session.execute(_version_query()).one()
    return (int(row[0] or 0), row[1], int(row[2] or 0), int(row[3] or 0), str(row[4] or 0))


def load_catalog(session: Session) -> Catalog:
    """Read every product (one query) into a :class:`Catalog`."""
    version = read_version(session)
    rows = session.execute(
        select(
            Product.id,
            Product.sku,
            Product.title,
            Product.price,
            Product.currency,
            Product.url,
            Product.image_url,
            Product.category,
            Product.is_active,
            Product.in_stock,
            Product.created_at,
        ).order_by(Product.id)
    ).all()
    n = len(rows)
    prices = [Decimal(r[3]) for r in rows]
    skus = [r[1] for r in rows]
    return Catalog(
        version=version,
        product_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        skus=skus,
        titles=[r[2] for r in rows],
        prices=prices,
        price_values=np.array([float(p) for p in prices], dtype=np.float64),
        currencies=[r[4] for r in rows],
        urls=[r[5] for r in rows],
        image_urls=[r[6] for r in rows],
        categories=np.array([r[7] or "" for r in rows], dtype=str) if n else np.empty(0, dtype="U1"),
        is_active=np.fromiter((bool(r[8]) for r in rows), dtype=bool, count=n),
        in_stock=np.fromiter((bool(r[9]) for r in rows), dtype=bool, count=n),
        created_at=np.array([r[10] for r in rows], dtype="datetime64[s]")
        if n
        else np.empty(0, "datetime64[s]"),
        position_by_sku={sku: i for i, sku in enumerate(skus)},
    )


class CatalogSnapshot:
    """The current :class:`Catalog` of a serving process.

    Parameters
    ----------
    sessions : sessionmaker
    check_interval : float
        Seconds between version checks (the query that tells whether products changed).
    clock : callable
        Monotonic seconds; tests may pass their own.
    background : bool
        Run the periodic version check in a background thread (serving) instead of inline (tests, CLI).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        self._sessions = sessions
        self._interval = check_interval
        self._clock = clock
        self._background = background
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._checked_at = float("-inf")
        self._dirty = True
        self._worker: threading.Thread | None = None
        self.last_error: str | None = None

    def invalidate(self) -> None:
        """Products changed in this process: the next :meth:`current` re-checks the table."""
        self._dirty = True

    def current(self) -> Catalog:
        """The catalog, re-checked if the interval passed or :meth:`invalidate` was called.

        A change made in this process (:meth:`invalidate`) and the first load are read before returning.
        The periodic check for other processes' changes runs inline, or, with ``background=True`` (a
        serving process), in a thread of its own while this call returns the catalog in memory: the
        version query then never adds its milliseconds to a request.

        If the database cannot be read the previous catalog keeps serving (the error is logged and kept in
        ``last_error``); with no previous catalog the error is raised.
        """
        catalog = self._catalog
        if catalog is not None and not self._dirty and self._clock() - self._checked_at < self._interval:
            return catalog
        if catalog is not None and not self._dirty and self._background:
            self._check_in_background()
            return catalog
        return self._check()

    def _check(self, *, force: bool = False) -> Catalog:
        with self._lock:
            catalog = self._catalog
            fresh = self._clock() - self._checked_at < self._interval
            if catalog is not None and not self._dirty and fresh and not force:
                return catalog  # another thread checked while this one waited
            self._dirty = False
            try:
                with self._sessions() as session:
                    if catalog is None or read_version(session) != catalog.version:
                        catalog = load_catalog(session)
                self.last_error = None
            except Exception as exc:
                if catalog is None:
                    self._dirty = True
                    raise
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("catalog refresh failed, serving the previous one: %s", self.last_error)
            self._catalog = catalog
            self._checked_at = self._clock()
            return catalog

    def _check_in_background(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        # Not due again until this check ends (it sets the time), so one thread at a time is started.
        self._checked_at = self._clock()

        def work() -> None:
            try:
                self._check(force=True)
            except Exception:  # noqa: BLE001 - the next due check retries; requests keep the catalog
                log.exception("catalog check failed")

        self._worker = threading.Thread(target=work, name="giftrec-catalog-check", daemon=True)
        self._worker.start()

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for a running background check to finish (tests)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def loaded_at_version(self) -> tuple[Any, ...] | None:
        """Version of the catalog in memory (None before the first load)."""
        return None if self._catalog is None else self._catalog.version
