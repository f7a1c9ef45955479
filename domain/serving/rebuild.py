"""A serving process's data for one model, read in bulk, and the rankings made ahead for it.

What :class:`~domain.serving.model_store.ModelStore` does when a model is loaded (at start-up, when a
new run is found, and when a full re-read is due): the run's artifact loaded and checked into a
:class:`~domain.serving.data.LoadedModel`, every interaction, sale and customer id read into a new
:class:`~domain.serving.data.ServingData`, and its most active customers ranked
(:mod:`domain.serving.precomputed`). Nothing here holds state: the store decides when these run and which
data serves.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import (
    SalesRows,
    Watermark,
    changed_customers,
    load_interactions,
    load_sales,
)
from domain.models import Customer, ModelRun
from domain.models._types import utcnow
from domain.serving.data import (
    CustomerRows,
    LoadedModel,
    ServingData,
    bought_matrix,
    data_version,
    rows_between,
    similar_for,
)
from domain.serving.model_runs import load_run_artifact
from domain.serving.precomputed import fill as fill_ahead
from domain.serving.ranked import PrecomputedRankings, RankedCache
from domain.serving.served import discovery_model
from recommender.interactions import IdIndex

__all__ = ["Pacer", "build_data", "fill_rankings", "load_model", "rankings_for"]

log = logging.getLogger(__name__)


def load_model(session: Session, settings: Settings, run: ModelRun) -> LoadedModel:
    """The run's artifact, loaded and verified, with what serving derives from it once."""
    artifact = load_run_artifact(session, settings, run)
    model = artifact.model
    served = artifact.params.get("served") or {}
    blends = served.get("blends") or {}
    discovery = discovery_model(model, settings, blends.get("discovery"))
    seen = run.params.get("watermark") or {}
    return LoadedModel(
        run_id=run.id,
        version=run.version,
        algorithm=run.algorithm,
        model=model,
        discovery=discovery,
        user_index=artifact.user_index,
        item_index=artifact.item_index,
        similar=similar_for(model),
        trained_watermark=Watermark(int(seen.get("order_id", 0)), int(seen.get("event_id", 0))),
        loaded_at=utcnow(),
        trained_at=run.finished_at,
    )


def build_data(
    session: Session,
    settings: Settings,
    model: LoadedModel | None,
    previous: ServingData | None,
    erasures_since: dt.datetime,
    *,
    pause: Callable[[], None] | None = None,
) -> ServingData:
    """Read every interaction, sale and customer id (bulk) into a new ServingData for ``model`` (None: no
    model yet); ``erasures_since`` is when its read began, less the overlap. The sales of ``previous``
    data are kept when they can be (:func:`_sales`). ``pause`` is called between batches of the
    interactions read (a swap beside requests: :class:`Pacer`)."""
    version = data_version(session)
    rows = load_interactions(session, pause=pause)
    sales = _sales(session, previous, version)
    customers = {
        ext: cid
        for ext, cid in session.execute(
            select(Customer.external_id, Customer.id).where(Customer.erased_at.is_(None))
        )
    }
    present = np.unique(rows.customer_ids)
    users = IdIndex(present) if model is None else model.user_index.extend(present)
    user_items = None
    refold: frozenset[int] = frozenset()
    if model is not None:
        user_items, _, _ = build_matrix(
            rows, settings.interactions, user_index=users, item_index=model.item_index
        )
        refold = frozenset(changed_customers(session, model.trained_watermark))
    return ServingData(
        model=model,
        version=version,
        users=users,
        user_items=user_items,
        bought=bought_matrix(rows, users),
        sales=sales,
        customers=customers,
        refold=refold,
        built_at=utcnow(),
        erasures_seen=erasures_since,
        ranked=RankedCache(settings.api.picks_cache_customers, same=CustomerRows.same_as),
    )


def _sales(session: Session, previous: ServingData | None, version: tuple[int, int, int, int]) -> SalesRows:
    """Every sale line up to the orders of ``version``: those of ``previous`` data (they do not depend
    on the model) with the orders added since, when no order or event was removed and no customer
    erased since it was read (an erasure detaches the customer's orders from them); else all read."""
    if previous is not None and previous.erasures_seen is not None:
        since = Watermark(previous.version[0], previous.version[2])
        upto = Watermark(version[0], version[2])
        added = rows_between(session, since, upto)
        erased = session.scalar(select(func.max(Customer.erased_at)))
        kept = (previous.version[1] + added[0], previous.version[3] + added[1]) == (
            version[1],
            version[3],
        )
        if kept and (erased is None or erased < previous.erasures_seen):
            return previous.sales.extended(load_sales(session, order_ids=(since.order_id, upto.order_id)))
    return load_sales(session)


def rankings_for(data: ServingData, limit: int) -> PrecomputedRankings | None:
    """The rankings to make ahead for ``data``, at most ``limit`` (``api.precomputed_customers``), set as
    its ``precomputed`` (None: no model, or ``limit`` 0)."""
    model, user_items = data.model, data.user_items
    if model is None or user_items is None or limit <= 0:
        return None
    ahead = PrecomputedRankings.most_active(user_items, data.users.ids, model.n_items, limit)
    data.precomputed = ahead
    return ahead


class Pacer:
    """Called between two pieces of background work: sleeps so that the calling thread uses at most
    ``share`` of one core (CPU time on ``cpu``, since the previous call, or since it was made: make it in
    the thread that calls it, as ``time.thread_time`` counts that thread's CPU).

    A new model's customers are ranked while the old model serves (about 0.5 ms of CPU each). As fast as
    it can, that is a burst of a core's work beside the requests for as long as it lasts (0.3 s for the
    bundled sample, several seconds on a large shop), in each web process at about the same moment; a
    host already busy with requests answers them later by that much. Paced, the same work is spread: at a
    share of 0.2 it takes five times as long and takes a fifth of a core meanwhile (docs/performance.md).
    Every call sleeps, even for 0 s: a sleep releases the GIL, so a request waiting for it takes it then
    instead of after ``sys.getswitchinterval()``. ``share`` >= 1 only yields.
    """

    def __init__(
        self,
        share: float,
        *,
        cpu: Callable[[], float] = time.thread_time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if share <= 0:
            raise ValueError("share must be > 0")
        self._factor = max(0.0, 1.0 / share - 1.0)
        self._cpu, self._sleep = cpu, sleep
        self._mark = cpu()

    def __call__(self) -> None:
        self._sleep((self._cpu() - self._mark) * self._factor)
        self._mark = self._cpu()


def fill_rankings(
    data: ServingData,
    ahead: PrecomputedRankings,
    rows_of: Callable[[int], CustomerRows | None],
    *,
    pause: Callable[[], None] | None = None,
) -> None:
    """Rank the customers ``ahead`` chose, most active first (see :mod:`domain.serving.precomputed`);
    ``rows_of`` gives a customer's rows (None: skip them). A failure is logged: the customers left rank
    on their first request."""
    model = data.model
    assert model is not None
    started = time.thread_time()
    try:
        fill_ahead(ahead, model, rows_of, pause=pause)
    except Exception:  # noqa: BLE001 - the customers left rank on their first request
        log.exception("precomputing rankings failed")
    log.info(
        "precomputed %d rankings of model %s (%.1f MiB, %.1f s CPU of this thread)",
        ahead.ranked_count,
        model.version,
        ahead.nbytes / 2**20,
        time.thread_time() - started,
    )
