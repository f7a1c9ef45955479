"""The serving process's model and interaction data: loaded once, refreshed in the background, never blocking.

A :class:`ModelStore` holds one immutable-ish :class:`ServingData`: the model of the newest usable
:class:`~domain.models.ModelRun` (succeeded, not rolled back) with everything the request path needs in
memory: every customer's interaction row aligned to the model, what each customer bought, the sale lines
for bestsellers and the customer directory. Requests only read it.

Refreshing, in a background thread started by the request that finds a check due (one at a time):

- **model**: every ``settings.model.reload_interval`` seconds, look for a different usable run; load and
  verify its artifact, rebuild the data (the sales are kept), rank its most active customers, then swap:
  the old model serves every request until the new one is ready, and the bulk read and the ranking
  sleep between batches of rows and between customers, yielding the GIL and keeping to
  ``model.swap_cpu_share`` of a core (:meth:`ModelStore._swap`).
  A missing or corrupt artifact is logged and reported by :meth:`ModelStore.status`; the model in memory
  keeps answering (at start-up the next older usable run is tried instead: the rule of
  :mod:`domain.serving.model_runs`, which planning follows too). A version that failed is tried again
  after ``settings.model.load_retry_seconds``.
- **data**: every ``data_refresh_interval`` seconds, if orders or events changed, add what is new since the
  data's watermark: the rows of the customers concerned and the new sale lines (what refreshes
  bestsellers). The matrix, the directory and the kept rankings stay; only rows that disappeared (an
  erasure) make it read everything again, and even then rankings of unchanged customers are kept. Only a
  new model starts an empty ranked-picks cache.
- **customers** (freshness): every ``freshness_interval`` seconds, reload the rows of the customers other
  processes wrote for since (:class:`~domain.serving.freshness.Freshness`, which also makes this
  process's own writes visible at once).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.customers.interactions import Watermark, WrittenRows, changed_customers, load_sales
from domain.models import Customer, ModelRun
from domain.models._types import utcnow
from domain.serving.data import (
    CustomerRows,
    LoadedModel,
    ServingData,
    data_version,
    rows_as_read,
    rows_between,
)
from domain.serving.freshness import Freshness
from domain.serving.model_runs import LoadFailures, load_newest_usable
from domain.serving.ranked import PrecomputedRankings
from domain.serving.rebuild import Pacer, build_data, fill_rankings, load_model, rankings_for

__all__ = ["CustomerRows", "LoadedModel", "ModelStore", "ServingData"]

log = logging.getLogger(__name__)

#: A read made of one statement needs no transaction of its own (see :meth:`ModelStore.customer`).
_ONE_STATEMENT = {"isolation_level": "AUTOCOMMIT"}


class ModelStore:
    """The model and interaction data of a serving process (see the module docstring).

    Parameters
    ----------
    settings : Settings
    sessions : sessionmaker
    freshness_interval, freshness_overlap, data_refresh_interval : float
        Seconds; see the module docstring.
    background : bool
        Run due checks in a background thread (serving) or inline in the calling thread (tests, CLI).
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        freshness_interval: float = 1.0,
        freshness_overlap: float = 10.0,
        data_refresh_interval: float = 300.0,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._freshness_interval = freshness_interval
        self._overlap = freshness_overlap
        self._data_interval = data_refresh_interval
        self._background = background
        self._clock = clock
        self._data: ServingData | None = None
        self._load_lock = threading.Lock()
        self._work_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._next_model_check = self._next_data_check = self._next_tail = float("inf")
        self._fresh = Freshness(settings.interactions, freshness_overlap, clock)
        #: Versions that failed to load, tried again after ``model.load_retry_seconds`` (on ``clock``).
        self._failures = LoadFailures(settings.model.load_retry_seconds, clock)
        self._extra_customers: dict[str, int] = {}
        #: Shop ids erased since the data was built: never resolved again (this process at once, others
        #: within ``freshness_interval`` through :meth:`_tail`).
        self._erased: set[str] = set()
        self._erasures_since: dt.datetime | None = None
        self.error: str | None = None
        self.note: str | None = None
        self._precomputing: PrecomputedRankings | None = None
        self._precompute_thread: threading.Thread | None = None
        #: A new model's data being made ready beside the old one (see :meth:`_swap`).
        self._pending: LoadedModel | None = None
        self._pending_rankings: PrecomputedRankings | None = None
        self._swap_thread: threading.Thread | None = None
        #: The first load's rankings being made, and until when (on ``clock``) the store is not ready
        #: meanwhile (``api.warm_up_seconds``; see :meth:`status`).
        self._warm_up: tuple[threading.Thread, PrecomputedRankings, float] | None = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The database sessions the store reads with (for a request's own small read)."""
        return self._sessions

    # ------------------------------------------------------------------------------------------ reading
    def current(self) -> ServingData:
        """The serving data; loaded synchronously on the first call, then refreshed in the background."""
        data = self._data
        if data is None:
            return self._first_load()
        now = self._clock()
        if now >= min(self._next_tail, self._next_model_check, self._next_data_check):
            self._start_checks()
        return data

    def customer(self, data: ServingData, customer_id: int) -> CustomerRows:
        """The rows of one customer (reloaded now if this process just recorded activity for them)."""
        if self._fresh.take(customer_id) and not self._fresh.add_written(data, customer_id):
            with self._sessions() as session:
                # One statement, one snapshot: no transaction around it (on PostgreSQL a BEGIN and a
                # ROLLBACK less, two round trips of the three this read made after each write).
                session.connection(execution_options=_ONE_STATEMENT)
                self._fresh.reload(session, data, [customer_id])
        found = data.fresh.get(customer_id)
        if found is None:
            found = data.rows.get(customer_id)
        if found is None:
            found = data.rows[customer_id] = rows_as_read(data, customer_id)
        return found

    def find_customer(self, data: ServingData, external_id: str) -> int | None:
        """Database id of a customer by the shop's id: from memory, or one query for a newcomer."""
        if external_id in self._erased:
            return None
        found = data.customers.get(external_id)
        if found is None:
            found = self._extra_customers.get(external_id)
        if found is None:
            with self._sessions() as session:
                found = session.scalar(
                    select(Customer.id).where(
                        Customer.external_id == external_id, Customer.erased_at.is_(None)
                    )
                )
            if found is not None:
                self._extra_customers[external_id] = int(found)
        return None if found is None else int(found)

    def customer_changed(
        self,
        customer_id: int,
        *,
        order_ids: Iterable[int] = (),
        event_ids: Iterable[int] = (),
        rows: WrittenRows | None = None,
    ) -> None:
        """This process committed an order, return or event of the customer: reload their rows on next use
        (:meth:`Freshness.changed <domain.serving.freshness.Freshness.changed>`; with ``rows``, the rows
        written, a customer whose rows are kept has them added without a read)."""
        self._fresh.changed(customer_id, order_ids=order_ids, event_ids=event_ids, rows=rows)

    def customer_erased(self, external_id: str) -> None:
        """This process committed the customer's erasure: the id no longer resolves, from now on."""
        self._erased.add(external_id)
        found = self._extra_customers.pop(external_id, None)
        data = self._data
        if data is not None:
            found = data.customers.get(external_id, found)
        if found is not None:
            self._fresh.forget(found)
            if data is not None:
                data.kept.forget(found)

    def loaded_model(self) -> LoadedModel | None:
        """The model in memory now, if any (loads and checks nothing: for metrics)."""
        data = self._data
        return None if data is None else data.model

    def status(self) -> dict[str, Any]:
        """For /health/ready: the loaded version, or why nothing is loaded. ``ok`` is False only when a
        model exists but none could be loaded (or the database cannot be read at all)."""
        try:
            data = self.current()
        except Exception as exc:  # noqa: BLE001 - readiness reports it
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out: dict[str, Any] = {"ok": True}
        if data.model is not None:
            out.update(
                version=data.model.version,
                algorithm=data.model.algorithm,
                loaded_at=data.model.loaded_at.isoformat(timespec="seconds"),
            )
        elif self.error is not None:
            out["ok"] = False
        warming = self._warming()
        if warming is not None:
            out["ok"] = False
            out["warming"] = warming
        if self.error is not None:
            out["error"] = self.error
        if self.note is not None:
            out["note"] = self.note
        ahead = data.precomputed
        if ahead is not None:
            out["precomputed"] = {"customers": len(ahead), "ranked": ahead.ranked_count}
        return out

    def _warming(self) -> dict[str, Any] | None:
        """While a serving process makes its first load's rankings (at most ``api.warm_up_seconds``): how
        far it is. It is not ready meanwhile, so a load balancer sends it no requests yet: they would each
        rank their customer beside that work (the first second of a new process had a p99 two to three
        times the rest's, docs/performance.md)."""
        warm_up = self._warm_up
        if warm_up is None:
            return None
        thread, ahead, until = warm_up
        now = self._clock()
        if not thread.is_alive() or ahead.cancelled or now >= until:
            self._warm_up = None
            return None
        return {"ranked": ahead.ranked_count, "customers": len(ahead), "seconds_left": round(until - now, 1)}

    # ------------------------------------------------------------------------------------------ refresh
    def refresh(self) -> ServingData:
        """Run every check now, in this thread (tests, CLI, after training in the same process); a new
        model found serves when this returns."""
        with self._work_lock:
            self._run_checks(force=True)
        swap = self._swap_thread  # a new model is served once its customers are ranked
        if swap is not None:
            swap.join()
        data = self._data
        assert data is not None
        return data

    def start(self) -> None:
        """Begin the first load in a background thread; requests arriving meanwhile wait for it.

        A serving process calls this once it is up (the CLI, which builds the app too, does not)."""
        if self._data is not None:
            return

        def load() -> None:
            try:
                self._first_load()
            except Exception:  # noqa: BLE001 - reported by status() and retried by the next request
                log.exception("first model load failed")

        self._worker = threading.Thread(target=load, name="giftrec-model-store-start", daemon=True)
        self._worker.start()

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for a running background check, and the precomputation it started, to finish (tests,
        benchmarks)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        for thread in (self._swap_thread, self._precompute_thread):  # started by that check
            if thread is not None:
                thread.join(timeout)

    def _first_load(self) -> ServingData:
        with self._load_lock:
            if self._data is None:
                with self._work_lock:
                    self._run_checks(force=True)
            data = self._data
            assert data is not None
            return data

    def _start_checks(self) -> None:
        if not self._work_lock.acquire(blocking=False):
            return  # a check is running
        if not self._background:
            try:
                self._run_checks(force=False)
            finally:
                self._work_lock.release()
            return

        def work() -> None:
            try:
                self._run_checks(force=False)
            finally:
                self._work_lock.release()

        self._worker = threading.Thread(target=work, name="giftrec-model-store", daemon=True)
        self._worker.start()

    def _run_checks(self, *, force: bool) -> None:
        """Model, data and customer checks that are due (all with ``force``); errors are logged, kept."""
        now = self._clock()
        try:
            with self._sessions() as session:
                rebuilt = False
                if force or now >= self._next_model_check:
                    self._next_model_check = now + self.settings.model.reload_interval
                    rebuilt = self._check_model(session)
                data_due = force or now >= self._next_data_check
                if rebuilt or data_due:
                    # Scheduled after a model's build too (it read the data): without this, a store whose
                    # first check loaded a model never looked at the data again.
                    self._next_data_check = now + self._data_interval
                if data_due and not rebuilt:
                    data = self._data
                    if data is None:
                        self._install(*self._build(session, None))
                    else:
                        version = data_version(session)
                        if version != data.version:
                            self._data = self._advance(session, data, version)
                if force or now >= self._next_tail:
                    self._next_tail = now + self._freshness_interval
                    self._tail(session, now)
        except Exception as exc:
            self._next_model_check = min(self._next_model_check, now + self.settings.model.reload_interval)
            self._next_data_check = min(self._next_data_check, now + self._data_interval)
            self._next_tail = min(self._next_tail, now + self._freshness_interval)
            if self._data is None:
                raise
            log.exception("model store refresh failed; serving what is loaded")
            self.error = f"refresh failed: {type(exc).__name__}: {exc}"

    def _check_model(self, session: Session) -> bool:
        """Load the newest usable run if it is not the one in memory; True if the data was rebuilt.

        The rule (newest usable run that loads, else the previous one) is :func:`load_newest_usable`'s,
        shared with planning; a version that failed is tried again after ``model.load_retry_seconds``.
        """
        data = self._data
        loaded = self._pending or (None if data is None else data.model)
        picked = load_newest_usable(
            session,
            self.settings,
            lambda run: self._load_run(session, run),
            failures=self._failures,
            keep_run_id=None if loaded is None else loaded.run_id,
        )
        if not picked.any_usable:
            # No usable run (a fresh install): serve the fallbacks. A model already in memory keeps serving.
            if loaded is None:
                self.note = "no trained model yet: serving bestsellers and new arrivals (run `giftrec train`)"
            if data is not None:
                return False
            self._install(*self._build(session, None))
            return True
        self.note = None
        self.error = "; ".join(picked.errors) or None
        if picked.loaded is not None:
            model = picked.loaded
            if data is None:
                self._install(*self._build(session, model))
                log.info("serving model %s (%s)", model.version, model.algorithm)
            else:
                self._swap(session, model)
            return True
        if data is None:
            self._install(*self._build(session, None))
            return True
        return False

    def _load_run(self, session: Session, run: ModelRun) -> LoadedModel:
        return load_model(session, self.settings, run)

    def _build(
        self,
        session: Session,
        model: LoadedModel | None,
        previous: ServingData | None = None,
        pause: Callable[[], None] | None = None,
    ) -> tuple[ServingData, dt.datetime]:
        """The data of ``model`` read in bulk (:func:`~domain.serving.rebuild.build_data`), with where the
        next look for erasures starts (for :meth:`_install`)."""
        erasures_since = self._erasure_clock()
        data = build_data(session, self.settings, model, previous, erasures_since, pause=pause)
        return data, erasures_since

    def _install(
        self, data: ServingData, erasures_since: dt.datetime, erased: set[str] | None = None
    ) -> None:
        """Serve ``data`` from now on, and rank its most active customers then (in a thread when serving):
        the first load, and a full re-read for the same model (:meth:`_advance`). A new model replacing
        one goes through :meth:`_swap` instead.

        ``erased``: the ids erased before its read began (those since stay unresolvable)."""
        self._extra_customers.clear()
        if erased is not None:
            self._erased.difference_update(erased)
        elif self._pending is None:  # a swap waiting to install read its data before some of them
            self._erased.clear()
        self._erasures_since = erasures_since
        first = self._data is None
        self._data = data
        if self._precomputing is not None:
            self._precomputing.cancel()  # the replaced data's
        ahead = self._precomputing = self._rankings(data)
        if ahead is None:
            return
        if self._background:
            self._precompute_thread = threading.Thread(
                target=self._fill, args=(data, ahead), name="giftrec-precompute", daemon=True
            )
            self._precompute_thread.start()
            warm_up = self.settings.api.warm_up_seconds
            if first and warm_up > 0:
                self._warm_up = (self._precompute_thread, ahead, self._clock() + warm_up)
        else:
            self._fill(data, ahead)

    def _swap(self, session: Session, model: LoadedModel) -> None:
        """Replace the model in memory by ``model`` once its data is read and its customers ranked: the
        old one serves until then, so no request waits for the new one, ranks a customer a precomputed
        ranking would cover, or mixes the two (only :meth:`_install_ready` changes what requests read).

        Serving, the ranking runs in a thread paced between customers (:class:`~domain.serving.rebuild.Pacer`:
        it yields to requests and keeps to ``model.swap_cpu_share`` of a core) and installs the data when
        done; freshness checks keep updating the old data meanwhile. Customers whose rows were reloaded
        there since the new data's read began are reloaded again on their next request."""
        for replaced in (self._pending_rankings, self._precomputing):
            if replaced is not None:
                replaced.cancel()  # an older swap's, or the old data's: both are superseded
        self._pending_rankings = self._precomputing = None
        # Customers reloaded on the old data from now on are reloaded again once the new data serves.
        self._fresh.record_reloads()
        erased = set(self._erased)
        # Serving, the bulk read yields the GIL between batches and keeps to the swap's share of a core, as
        # the ranking below does (a whole read held it for tens of milliseconds, docs/performance.md).
        pause = Pacer(self.settings.model.swap_cpu_share) if self._background else None
        try:
            data, erasures_since = self._build(session, model, self._data, pause)
        except Exception:
            # Nothing waits to take over (an older swap's ranking was cancelled above): stop recording
            # reloads, and let the next check load again.
            self._pending = self._pending_rankings = None
            self._fresh.recorded()
            raise
        ahead = self._rankings(data)
        if ahead is None or not self._background:
            if ahead is not None:
                self._fill(data, ahead)
            self._install_ready(data, erasures_since, erased)
            return
        self._pending, self._pending_rankings = model, ahead

        def ready() -> None:
            self._fill(data, ahead, pause=Pacer(self.settings.model.swap_cpu_share))
            with self._work_lock:  # no check replaces the old data while this one takes over
                if self._pending is model and not ahead.cancelled:
                    self._install_ready(data, erasures_since, erased)

        self._swap_thread = threading.Thread(target=ready, name="giftrec-swap", daemon=True)
        self._swap_thread.start()

    def _install_ready(self, data: ServingData, erasures_since: dt.datetime, erased: set[str]) -> None:
        """Serve the data :meth:`_swap` made ready (its rankings made)."""
        self._pending = self._pending_rankings = None
        self._fresh.mark_changed(self._fresh.recorded())
        self._extra_customers.clear()
        self._erased.difference_update(erased)
        self._erasures_since = erasures_since
        if self._precomputing is not None:
            self._precomputing.cancel()
        self._precomputing = data.precomputed
        self._data = data
        assert data.model is not None
        log.info("serving model %s (%s)", data.model.version, data.model.algorithm)

    def _rankings(self, data: ServingData) -> PrecomputedRankings | None:
        return rankings_for(data, self.settings.api.precomputed_customers)

    def _fill(
        self, data: ServingData, ahead: PrecomputedRankings, pause: Callable[[], None] | None = None
    ) -> None:
        """Rank the customers ``ahead`` chose (:func:`~domain.serving.rebuild.fill_rankings`)."""

        def rows_of(customer_id: int) -> CustomerRows | None:
            # A customer reloaded since (fresh rows) ranks on their next request, folded in.
            return None if customer_id in data.fresh else rows_as_read(data, customer_id)

        fill_rankings(data, ahead, rows_of, pause=pause)

    def _advance(
        self, session: Session, data: ServingData, version: tuple[int, int, int, int]
    ) -> ServingData:
        """The data with the orders and events added since it was read, without reading the rest again.

        The customers with new rows get them (as :meth:`_tail` does every second; they are folded in on
        their next request), the new sale lines join the bestsellers' rows, and everything else is kept:
        the matrix, the customer directory and each customer's kept ranking. Only when rows disappeared
        (an erasure deletes events; a late commit below the watermark looks the same) is everything read
        again, and even then a customer whose rows are unchanged keeps their ranking: it depends on the
        model and their rows alone.
        """
        since = Watermark(data.version[0], data.version[2])
        upto = Watermark(version[0], version[2])
        added = rows_between(session, since, upto)
        if (data.version[1] + added[0], data.version[3] + added[1]) != (version[1], version[3]):
            log.info("orders or events were removed: reading the interaction data again")
            rebuilt, erasures_since = self._build(session, data.model)
            rebuilt.ranked = data.ranked
            self._install(rebuilt, erasures_since)
            return rebuilt
        changed = changed_customers(session, since)
        if changed:
            self._fresh.reload(session, data, sorted(changed))
        sales = data.sales.extended(load_sales(session, order_ids=(since.order_id, upto.order_id)))
        # A new object, so a request holding the old one never mixes old sales with new cached counts.
        return dataclasses.replace(data, version=version, sales=sales, cache={})

    def _erasure_clock(self) -> dt.datetime:
        """Where the next look for erasures starts: now (``erased_at`` is written from the web processes'
        clocks), less the overlap, so an erasure committed a little late or on a host whose clock is a
        few seconds behind is still seen."""
        return utcnow() - dt.timedelta(seconds=self._overlap)

    def _forget_erased(self, session: Session) -> None:
        """Customers erased by any process since the last look: their ids stop resolving here too."""
        since = self._erasures_since
        if since is None:
            return
        next_since = self._erasure_clock()
        erased = session.scalars(
            select(Customer.external_id).where(Customer.erased_at.is_not(None), Customer.erased_at >= since)
        ).all()
        for external_id in erased:
            self.customer_erased(external_id)
        self._erasures_since = next_since

    def _tail(self, session: Session, now: float) -> None:
        """Erasures and other processes' writes since the last look (every ``freshness_interval``)."""
        data = self._data
        self._forget_erased(session)
        self._fresh.tail(session, data, now)
