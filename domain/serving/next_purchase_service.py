"""A web process's next-purchase ranker: the trained artifact, loaded and hot-swapped, never fitted here.

:class:`NextPurchaseService` holds the newest usable ranker that ``giftrec train --next-purchase`` (the
nightly ``train-next-purchase`` job) stored in the database (:mod:`domain.serving.next_purchase_runs`).
The first request loads it (a read and a checksum, no fit); afterwards, every ``model.reload_interval``
seconds, a background thread looks for a newer run and swaps it in when it has loaded, so requests never
wait for a load and every process on every host serves the new version within that interval. A missing
or corrupt artifact is logged and the previous one keeps answering (the model runs' fall-back rule).

Until any artifact exists (a fresh install, before the first training), answers come from the timing
model alone, fitted once in this process (about a second on the full UCI file), with
:data:`~domain.serving.next_purchase.PREPARING` as the note.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from domain.serving.model_runs import LoadFailures
from domain.serving.next_purchase import (
    DEFAULT_HORIZON_DAYS,
    PREPARING,
    FittedNextPurchase,
    fit_next_purchase,
)
from domain.serving.next_purchase_runs import load_newest_next_purchase
from domain.serving.recommendations import Serving

__all__ = ["NextPurchaseService"]

log = logging.getLogger(__name__)


class NextPurchaseService:
    """The process's next-purchase ranker (see the module docstring).

    Parameters
    ----------
    serving : Serving
        The model store (and its settings) and the catalog (product cards).
    sessions : sessionmaker
    horizon_days : float
        The answers' horizon; a ranker trained for another horizon is not loaded.
    background : bool
        Look for a new artifact in a background thread (serving) or inline (tests).
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        serving: Serving,
        sessions: sessionmaker[Session],
        *,
        horizon_days: float = DEFAULT_HORIZON_DAYS,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.serving = serving
        self.settings = serving.store.settings
        self.horizon_days = horizon_days
        self._sessions = sessions
        self._background = background
        self._clock = clock
        self._failures = LoadFailures(self.settings.model.load_retry_seconds, clock)
        self._first_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._cheap_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._next_check = float("-inf")
        self._checked = False  # set when the first look is over (the first request waits for it)
        # the loaded ranker and its run's id, swapped as one
        self._loaded: tuple[FittedNextPurchase, int] | None = None
        self._cheap: FittedNextPurchase | None = None  # the timing model, while no artifact is loaded
        self.error: str | None = None

    def current(self) -> FittedNextPurchase:
        """The loaded ranker (the first call loads it, if one was trained); later calls never wait: a
        due look for a newer one runs in the background. Without any, the timing model."""
        if not self._checked:
            with self._first_lock:
                if not self._checked:
                    self.refresh()
        elif self._clock() >= self._next_check:
            self._start()
        loaded = self._loaded
        return loaded[0] if loaded is not None else self._timing_only()

    @property
    def version(self) -> str | None:
        """The loaded artifact's version (None: none loaded)."""
        loaded = self._loaded
        return None if loaded is None else loaded[0].version

    def status(self) -> dict[str, Any]:
        """For /health/ready: the loaded version, or why none is (never fails readiness: the timing model
        answers meanwhile). Starts a due look in the background, so a process warms up before its first
        next-purchase request."""
        if self._clock() >= self._next_check:
            self._start()
        out: dict[str, Any] = {"ok": True, "version": self.version}
        if self.version is None:
            out["note"] = "no trained ranker loaded: answers from the timing model"
        if self.error is not None:
            out["error"] = self.error
        return out

    def refresh(self) -> None:
        """Look for a newer trained ranker now, in this thread, and load it (tests, the first call)."""
        with self._check_lock:
            self._check()

    def _start(self) -> None:
        if not self._check_lock.acquire(blocking=False):
            return  # a look is running
        if not self._background:
            try:
                self._check()
            finally:
                self._check_lock.release()
            return

        def work() -> None:
            try:
                self._check()
            finally:
                self._check_lock.release()

        self._worker = threading.Thread(target=work, name="giftrec-next-purchase", daemon=True)
        self._worker.start()

    def _check(self) -> None:
        try:
            self._look()
        finally:
            self._checked = True

    def _look(self) -> None:
        self._next_check = self._clock() + self.settings.model.reload_interval
        loaded = self._loaded
        try:
            with self._sessions() as session:
                picked = load_newest_next_purchase(
                    session,
                    self.settings,
                    failures=self._failures,
                    keep_run_id=None if loaded is None else loaded[1],
                )
        except Exception as exc:  # noqa: BLE001 - a request must not fail for it: logged, kept, retried
            log.exception("next-purchase: looking for a trained ranker failed")
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.error = "; ".join(picked.errors) or None
        if picked.loaded is None:
            return
        fitted = picked.loaded
        if fitted.ranker is not None and fitted.ranker.horizon != float(self.horizon_days):
            self.error = f"ranker {fitted.version} was trained for {fitted.ranker.horizon:g} days"
            return
        self._loaded = (fitted, int(picked.run.id))
        self._cheap = None
        log.info("next-purchase: serving ranker %s", fitted.version)

    def _timing_only(self) -> FittedNextPurchase:
        with self._cheap_lock:
            if self._cheap is None:
                with self._sessions() as session:
                    fitted = fit_next_purchase(session, horizon_days=self.horizon_days, rank=False)
                self._cheap = fitted if fitted.model is None else replace(fitted, note=PREPARING)
            return self._cheap

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for a running background look to finish (tests, the app's close)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
