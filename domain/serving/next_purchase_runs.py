"""The learned next-purchase ranker, trained once and stored as an artifact that every web process loads.

Fitting :class:`~recommender.next_basket.NextBasketRanker` costs tens of seconds of CPU on a large shop
(44 s on the full UCI file), too much for every web process on every host to repeat. So it is fitted by a
training step of its own (`giftrec train --next-purchase`, the nightly ``train-next-purchase`` job), which
records a :class:`~domain.models.NextPurchaseRun` and stores the fitted ranker in the database next to the
model artifacts (:mod:`domain.serving.artifact_store`: the same chunks, the same checksummed manifest,
:func:`recommender.artifacts.save_pickled_artifact`).

The artifact holds the fitted ranker as :func:`~domain.serving.next_purchase.fit_next_purchase` leaves it:
every customer's candidates already scored by the classifier as of the training day, the classifier
itself, the timing model (BG/NBD and repurchase intervals, for the answer's dates and chances) and the
customer and product id maps. A request therefore only reads: it filters the stored list by what is on
sale now and looks up the timing. Customers who first bought after the training are not in it: they get
"no purchases yet" until the next training, as before they did until the next refit.

Loading follows the model runs' rule (:func:`domain.serving.model_runs.walk_newest`): the newest usable
run whose artifact loads and verifies wins, else the one before it; a version that failed waits
``model.load_retry_seconds``. An operator rolls a ranker back, pins, promotes and unpins it as a model
(`giftrec model rollback --next-purchase`: :func:`domain.serving.training.rollback` and its siblings with
``kind=NextPurchaseRun``, on the same two columns), and old artifacts are pruned by the models' rule
(:func:`domain.serving.training.prune_artifacts`: ``model.keep_runs``, a pinned run kept, rolled-back
ones and those from before a customer erasure removed).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import InvalidInput
from domain.leftovers import held_temp_folder
from domain.models import NextPurchaseRun, Order
from domain.models._types import utcnow
from domain.origin import real_orders
from domain.serving.artifact_store import load_stored, store_artifact
from domain.serving.model_runs import LoadFailures, Picked, usable_runs, walk_newest
from domain.serving.next_purchase import DEFAULT_HORIZON_DAYS, FittedNextPurchase, fit_next_purchase
from domain.serving.training import finish_run, last_erasure, newest_run, prune_artifacts, serving_run
from recommender.artifacts import load_pickled_artifact, save_pickled_artifact
from recommender.base import ArtifactError
from recommender.next_basket import FEATURES, NextBasketRanker
from recommender.next_purchase_choice import BaselineRanker

__all__ = [
    "KIND",
    "find_next_purchase_run",
    "is_next_purchase_stale",
    "list_next_purchase_runs",
    "load_newest_next_purchase",
    "load_next_purchase_run",
    "prune_next_purchase_artifacts",
    "serving_next_purchase_run",
    "train_next_purchase",
]

log = logging.getLogger(__name__)

#: The artifact's kind (its manifest says so; a model artifact under this name does not load).
KIND = "next-purchase"


def _new_version() -> str:
    """Sortable, unique, at most 40 characters, never equal to a model run's (whose chunks share a table)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-next-purchase-{secrets.token_hex(2)}"


def train_next_purchase(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
) -> NextPurchaseRun:
    """Fit the ranker on every purchase up to ``now`` (default: the current time), store its artifact in
    the database and record the run (the caller's transaction; nothing is committed here).

    As :func:`domain.serving.training.train_model` does, a failure is recorded on the run (``failed``,
    with the error) and returned; the caller prunes old artifacts only after the commit.
    """
    started = utcnow()
    cut = now or started
    run = NextPurchaseRun(version=_new_version(), status="running", params={}, metrics={}, started_at=started)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        fitted = fit_next_purchase(session, cut, horizon_days=horizon_days)
        fit_cpu, fit_wall = time.process_time() - cpu, time.perf_counter() - wall
        ranker = fitted.ranker
        if fitted.model is None or ranker is None:
            raise InvalidInput("data", fitted.note or "no next-purchase estimates")
        run.params = {
            "now": cut.isoformat(),
            "as_of": fitted.as_of.isoformat(),
            "horizon_days": float(horizon_days),
            "ranker": dict(ranker.params),
            "features": list(FEATURES),
        }
        run.n_customers, run.n_items = len(fitted.customers), len(fitted.products)
        run.data_until = session.scalar(
            select(func.max(Order.ordered_at)).where(
                Order.kind == "sale", Order.ordered_at <= cut, real_orders()
            )
        )
        metrics: dict[str, Any] = {
            "fit_seconds": round(fit_wall, 3),
            "fit_cpu_seconds": round(fit_cpu, 3),
            "classifier": ranker.classifier is not None,
        }
        if ranker.note:
            metrics["note"] = ranker.note
        wall = time.perf_counter()
        # Held while in use, as the model training's: a killed training leaves it, the next removes it.
        with held_temp_folder(prefix="giftrec-training-") as tmp:
            path = save_pickled_artifact(
                tmp,
                run.version,
                KIND,
                ranker,
                fitted.customers,
                fitted.products,
                run.params,
                metrics,
            )
            metrics["artifact_bytes"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            run.artifact_path = store_artifact(session, run.version, path)
        metrics["save_seconds"] = round(time.perf_counter() - wall, 3)
        run.metrics = metrics
        run.status = "succeeded"
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the run, then reported
        log.exception("next-purchase training %s failed", run.version)
        finish_run(session, run, exc)
        return run
    finish_run(session, run)
    return run


def load_next_purchase_run(session: Session, run: NextPurchaseRun) -> FittedNextPurchase:
    """The run's fitted ranker, from its artifact in the database, verified (raises ArtifactError)."""
    artifact = load_stored(session, run.version, lambda folder: load_pickled_artifact(folder, KIND))
    ranker = artifact.obj
    if not isinstance(ranker, NextBasketRanker | BaselineRanker) or not ranker.is_fitted:
        raise ArtifactError(f"next-purchase artifact {run.version} holds no fitted ranker")
    params = artifact.manifest.get("params", {})
    return FittedNextPurchase(
        model=ranker.model,
        ranker=ranker,
        customers=artifact.user_index,
        products=artifact.item_index,
        as_of=dt.date.fromisoformat(params["as_of"]),
        fitted_at=run.finished_at or run.started_at,
        version=run.version,
    )


def serving_next_purchase_run(session: Session) -> NextPurchaseRun | None:
    """The run web processes load: the pinned one, else the newest usable one (they fall back to older
    ones if it fails to load)."""
    return serving_run(session, NextPurchaseRun)


def load_newest_next_purchase(
    session: Session,
    settings: Settings,
    *,
    failures: LoadFailures | None = None,
    keep_run_id: int | None = None,
) -> Picked[FittedNextPurchase]:
    """The newest usable run whose artifact loads (the model runs' rule, see the module docstring)."""
    runs = usable_runs(session, limit=max(2, settings.model.keep_runs + 1), kind=NextPurchaseRun)
    return walk_newest(
        runs, lambda run: load_next_purchase_run(session, run), failures=failures, keep_run_id=keep_run_id
    )


def list_next_purchase_runs(session: Session, *, limit: int = 20) -> list[NextPurchaseRun]:
    """The newest ``limit`` runs, newest first."""
    return list(session.scalars(select(NextPurchaseRun).order_by(NextPurchaseRun.id.desc()).limit(limit)))


def find_next_purchase_run(session: Session, version: str) -> NextPurchaseRun | None:
    """The run of ``version``, or None (a model run's version is looked up elsewhere)."""
    return session.scalars(select(NextPurchaseRun).where(NextPurchaseRun.version == version)).first()


def is_next_purchase_stale(session: Session, *, now: dt.datetime | None = None) -> tuple[bool, str]:
    """Whether a training would see anything new: (stale, reason). New sale orders or a customer
    erasure since the newest trained run make it stale (a pinned older run does not: training would only
    record one more run that waits behind the pin)."""
    run = newest_run(session, NextPurchaseRun)
    if run is None:
        return True, "no next-purchase ranker trained yet"
    erased = last_erasure(session)
    if erased is not None and erased >= run.started_at:
        return True, f"customers erased since ranker {run.version} was trained"
    newest = session.scalar(
        select(func.max(Order.ordered_at)).where(
            Order.kind == "sale", Order.ordered_at <= (now or utcnow()), real_orders()
        )
    )
    if newest is None or (run.data_until is not None and newest <= run.data_until):
        return False, f"ranker {run.version} already covers the newest order"
    return True, f"new orders since ranker {run.version} (data until {run.data_until})"


def prune_next_purchase_artifacts(session: Session, settings: Settings) -> list[str]:
    """The models' pruning (:func:`domain.serving.training.prune_artifacts`) of the ranker's runs."""
    return prune_artifacts(session, settings, kind=NextPurchaseRun)
