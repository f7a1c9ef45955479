"""Model lifecycle: train from the database, save a versioned artifact, record the ModelRun, list, roll back.

What is fitted (model, matrix, prior) is built by :func:`domain.serving.served.fit_served`, which
`giftrec evaluate` calls too.

Serving picks the newest run that ``succeeded`` and is not ``is_rolled_back``, unless an operator pinned
one (see :mod:`domain.serving.model_runs`): a rollback pins its target, so the next nightly training
records a new run without serving it, until ``unpin`` (or ``promote``). The next-purchase ranker's runs
(:class:`~domain.models.NextPurchaseRun`) are listed, rolled back, pinned, promoted and pruned by the
same functions, given ``kind=NextPurchaseRun``. Nothing here commits: the caller's transaction records
the run.

Training reads first and writes last: the ModelRun row is added only when the fit is over, so a long
training never holds SQLite's write lock while the web process records orders and events.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.customers.interactions import (
    InteractionRows,
    SalesRows,
    Watermark,
    activity_watermark,
    load_interactions,
    load_sales,
)
from domain.customers.rejections import load_rejections
from domain.errors import Conflict, InvalidInput, NotFound
from domain.leftovers import held_temp_folder
from domain.models import AuditLog, Customer, ModelRun, NextPurchaseRun
from domain.models._types import utcnow
from domain.serving.artifact_store import delete_artifact, store_artifact
from domain.serving.model_runs import MODELS, RUN_KINDS, Run, pinned_run
from domain.serving.served import HYBRID_POPULARITY_DAYS, decay_anchor, fit_served
from domain.serving.tuning import tune_blends
from recommender.artifacts import save_artifact

__all__ = [
    "find_run",
    "finish_run",
    "is_stale",
    "last_erasure",
    "list_runs",
    "newest_run",
    "promote",
    "prune_artifacts",
    "rollback",
    "serving_run",
    "train_model",
    "unpin",
]

log = logging.getLogger(__name__)


def _new_version(algorithm: str) -> str:
    """Sortable, unique, at most 40 characters: wall-clock time, algorithm, random suffix."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{algorithm}-{secrets.token_hex(2)}"


def train_model(
    session: Session, settings: Settings, *, now: dt.datetime | None = None, tune: bool = False
) -> ModelRun:
    """Fit ``settings.model.algorithm`` on every interaction up to ``now`` and record a ModelRun.

    With `tune` the hybrid's blends are first chosen on a validation window (:mod:`domain.serving.tuning`)
    and the choice and its validation figures are recorded (``params["served"]``, ``metrics["tuning"]``);
    without it, the blends the serving run was tuned to are re-fitted (a plain nightly training keeps
    the weekly choice), else the configured ones.

    The artifact is stored in the database (:mod:`domain.serving.artifact_store`) by the caller's
    transaction, with the run, so every serving host can load it. On success the run is
    ``succeeded``; on any failure the run is recorded as ``failed`` with the error and returned (no
    exception), so the caller can commit the record. Old artifacts are not touched here: the caller runs
    :func:`prune_artifacts` only after the commit that records this run, so a failed commit never leaves
    the database pointing at deleted artifacts.

    ``now`` (naive UTC; default the current time) bounds the data and anchors the time decay.
    """
    algorithm = settings.model.algorithm
    if tune and algorithm != "hybrid":
        raise InvalidInput("model.algorithm", f"--tune chooses the hybrid's blends; {algorithm!r} has none")
    started = utcnow()
    cut = now or started
    run = ModelRun(
        version=_new_version(algorithm),
        algorithm=algorithm,
        status="running",
        params={},
        metrics={},
        started_at=started,
    )
    try:
        t0 = time.perf_counter()
        rows = load_interactions(session, until=cut)
        watermark = activity_watermark(session, until=cut)
        if not len(rows):
            raise InvalidInput("data", "no interactions to train on: import orders first")
        load_seconds = time.perf_counter() - t0
        anchor = decay_anchor(rows, cut)
        rejections = load_rejections(session, until=cut)
        chosen, tuning = _served_blends(
            session, settings, rows, _sales_reader(session, anchor), anchor, tune, run.version
        )
        served = fit_served(
            rows,
            settings,
            anchor=anchor,
            sales=_sales_reader(session, anchor, _longest_window(chosen["blends"])),
            rejections=rejections,
            blends=chosen["blends"],
        )
        model, user_items = served.model, served.user_items
        steps = served.seconds
        run.params = {
            "model": model.params,
            "interactions": {
                "weights": {
                    "purchase": settings.interactions.weight_purchase,
                    "cart": settings.interactions.weight_cart,
                    "click": settings.interactions.weight_click,
                    "view": settings.interactions.weight_view,
                    "rejected": settings.interactions.weight_rejected,
                },
                "rejections": len(rejections),
                "quantity_damping": settings.interactions.quantity_damping,
                "half_life_days": settings.interactions.half_life_days,
            },
            "now": cut.isoformat(),
            "anchor": anchor.isoformat(),
            "watermark": {"order_id": watermark.order_id, "event_id": watermark.event_id},
            "served": chosen,
        }
        run.n_users, run.n_items = int(user_items.shape[0]), int(user_items.shape[1])
        run.n_interactions = int(user_items.nnz)
        run.data_until = rows.latest
        t2 = time.perf_counter()
        metrics: dict[str, Any] = {
            "rows": len(rows),
            "density": round(user_items.nnz / max(1, user_items.shape[0] * user_items.shape[1]), 6),
            # load: reading the interactions and building the matrix; fit: the prior (sales read
            # included, also given alone as popularity) and the model fit.
            "load_seconds": round(load_seconds + steps["build"], 3),
            "popularity_seconds": round(steps["popularity"], 3),
            "fit_seconds": round(steps["popularity"] + steps["fit"], 3),
        }
        if tuning is not None:
            metrics["tuning"] = tuning
        if tune and tuning is not None:
            metrics["tune_seconds"] = tuning.get("seconds", 0.0)
        # Held while in use: a training killed here leaves the folder, and the next one removes it.
        with held_temp_folder(prefix="giftrec-training-") as tmp:
            path = save_artifact(tmp, run.version, model, served.users, served.items, run.params, metrics)
            run.artifact_path = store_artifact(session, run.version, path)
        metrics["save_seconds"] = round(time.perf_counter() - t2, 3)
        run.metrics = metrics
        run.status = "succeeded"
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the run, then reported
        log.exception("training %s failed", run.version)
        finish_run(session, run, exc)
        return run
    finish_run(session, run)
    return run


def finish_run(session: Session, run: Any, error: Exception | None = None) -> None:
    """Record the end of a training (a ModelRun, or the next-purchase ranker's NextPurchaseRun): after
    an ``error``, as failed with it, and without the pieces of its artifact stored before the failure."""
    if error is not None:
        run.artifact_path = None
        delete_artifact(session, run.version)
        run.status = "failed"
        run.error = f"{type(error).__name__}: {error}"
    run.finished_at = utcnow()
    session.add(run)
    session.flush()


def _sales_reader(
    session: Session, anchor: dt.datetime, days: float | None = None
) -> Callable[[], SalesRows]:
    """Reads the sales up to `anchor` when called, at most once; only the last `days` when given (the
    priors count nothing older: reading less is most of a plain training's prior)."""
    kept: list[SalesRows] = []
    since = None if days is None else anchor - dt.timedelta(days=days)

    def get() -> SalesRows:
        if not kept:
            kept.append(load_sales(session, since=since, until=anchor))
        return kept[0]

    return get


def _longest_window(blends: dict[str, Any] | None) -> float:
    """The longest popularity prior the served blends use (days)."""
    if not blends:
        return HYBRID_POPULARITY_DAYS
    return max(float(b.get("popularity_days", HYBRID_POPULARITY_DAYS)) for b in blends.values())


def _served_blends(
    session: Session,
    settings: Settings,
    rows: InteractionRows,
    sales: Callable[[], SalesRows],
    anchor: dt.datetime,
    tune: bool,
    version: str,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What the run serves (``params["served"]``: source, blends, the run that tuned them) and the
    tuning record for its metrics (None: nothing tuned, nothing carried over)."""
    if tune:
        tuning = tune_blends(rows, sales(), settings, anchor=anchor)
        record = tuning.record()
        if tuning.status == "tuned":
            chosen = {"source": "tuned", "blends": tuning.blends, "tuned_in": version}
            # the next-purchase endpoint's ranking, chosen on the same window (`fit_next_purchase` reads it)
            return {**chosen, "next_purchase_ranking": tuning.next_purchase_ranking}, record
        return {"source": "default", "blends": None, "tuned_in": version}, record
    current = serving_run(session)
    served = (current.params.get("served") or {}) if current is not None else {}
    reusable = settings.model.algorithm == "hybrid" and served.get("source") in ("tuned", "default")
    if current is not None and reusable and current.algorithm == "hybrid":
        # The weekly choice (or its safe default) stays until the next tuning.
        record = dict(current.metrics.get("tuning") or {})
        return dict(served), {**record, "refit_of": served.get("tuned_in")}
    return {"source": "settings", "blends": None, "tuned_in": None}, None


def newest_run(session: Session, kind: type[Run] = MODELS) -> Run | None:
    """The newest succeeded, not rolled-back run (what training last produced)."""
    return session.scalars(
        select(kind)
        .where(kind.status == "succeeded", kind.is_rolled_back.is_(False))
        .order_by(kind.id.desc())
        .limit(1)
    ).first()


def serving_run(session: Session, kind: type[Run] = MODELS) -> Run | None:
    """The run serving processes load: the pinned run, else the newest succeeded, not rolled-back run."""
    return pinned_run(session, kind) or newest_run(session, kind)


def is_stale(session: Session, settings: Settings, *, now: dt.datetime | None = None) -> tuple[bool, str]:
    """Whether training would see anything new: (stale, reason).

    Fresh means the newest trained run used the configured algorithm and its watermark covers the newest
    order and event (dated up to ``now``). A pinned older run does not make the data stale: training
    would only record one more run that waits behind the pin.
    """
    run = newest_run(session)
    if run is None:
        return True, "no trained model yet"
    if run.algorithm != settings.model.algorithm:
        return True, f"serving {run.algorithm}, configured {settings.model.algorithm}"
    erased = last_erasure(session)
    if erased is not None and run.started_at is not None and erased >= run.started_at:
        return True, f"customers erased since model {run.version} was trained: its factors still hold them"
    seen = run.params.get("watermark") or {}
    trained = Watermark(int(seen.get("order_id", 0)), int(seen.get("event_id", 0)))
    newest = activity_watermark(session, until=now)
    if trained.covers(newest):
        return False, f"model {run.version} already covers order {newest.order_id}, event {newest.event_id}"
    return True, (
        f"new data since model {run.version}: order {trained.order_id} -> {newest.order_id}, "
        f"event {trained.event_id} -> {newest.event_id}"
    )


def find_run(session: Session, version: str) -> ModelRun:
    """The run of `version`; raises NotFound."""
    run = session.scalars(select(ModelRun).where(ModelRun.version == version)).first()
    if run is None:
        raise NotFound("model version", version)
    return run


def list_runs(session: Session, *, limit: int = 20) -> list[ModelRun]:
    """The newest ``limit`` runs, newest first."""
    return list(session.scalars(select(ModelRun).order_by(ModelRun.id.desc()).limit(limit)))


def rollback(
    session: Session,
    version: str | None = None,
    *,
    actor: str = "cli",
    kind: type[Run] = MODELS,
) -> Run:
    """Stop serving the current run (a model's, or with ``kind=NextPurchaseRun`` the ranker's); returns
    the run that serves from now on, pinned.

    Without ``version`` the current serving run is marked rolled back and the previous successful one
    takes over. With ``version`` every successful run newer than it, up to the current one, is marked
    rolled back, so that one serves. The target is pinned: runs trained later wait behind it until
    :func:`unpin` or :func:`promote`. Raises NotFound for an unknown version, Conflict when there is
    nothing to go back to.
    """
    name = RUN_KINDS[kind][0]
    current = serving_run(session, kind)
    if current is None:
        raise Conflict(f"no {name} is serving: nothing to roll back")
    candidates = list(
        session.scalars(
            select(kind)
            .where(
                kind.status == "succeeded",
                kind.is_rolled_back.is_(False),
                kind.id < current.id,
                kind.artifact_path.is_not(None),
            )
            .order_by(kind.id.desc())
        )
    )
    if version is None:
        if not candidates:
            raise Conflict(f"{name} {current.version} is the only usable {name}: nothing to roll back to")
        target = candidates[0]
    else:
        found = session.scalars(select(kind).where(kind.version == version)).first()
        if found is None:
            raise NotFound(f"{name} version", version)
        if found.id == current.id:
            raise Conflict(f"{name} {version} is already serving")
        if found not in candidates:
            why = (
                "was rolled back"
                if found.is_rolled_back
                else "did not succeed"
                if found.status != "succeeded"
                else "has no artifact any more"
                if found.artifact_path is None
                else f"is newer than the serving {name}"
            )
            raise Conflict(f"cannot roll back to {name} {version}: it {why}")
        target = found
    newer = session.scalars(
        select(kind).where(
            kind.status == "succeeded",
            kind.is_rolled_back.is_(False),
            kind.id > target.id,
            kind.id <= current.id,
        )
    ).all()
    for run in newer:
        run.is_rolled_back = True
    _pin(session, kind, target)
    _audit(session, actor, "model.rollback", target, {"rolled_back": [r.version for r in newer]})
    return target


def _audit(
    session: Session, actor: str, action: str, run: ModelRun | NextPurchaseRun, details: dict[str, Any]
) -> None:
    entity_type = RUN_KINDS[type(run)][1]
    session.add(
        AuditLog(actor=actor, action=action, entity_type=entity_type, entity_id=run.version, details=details)
    )
    session.flush()


def _pin(session: Session, kind: type[Run], run: Run | None) -> None:
    """Pin ``run`` (None: release every pin of its kind); at most one run of a kind is pinned."""
    for other in session.scalars(select(kind).where(kind.is_pinned.is_(True))):
        other.is_pinned = False
    if run is not None:
        run.is_pinned = True
    session.flush()


def unpin(session: Session, *, actor: str = "cli", kind: type[Run] = MODELS) -> Run | None:
    """Release the pin a rollback set: the newest usable run serves again (None: none left).

    Runs rolled back stay rolled back; runs trained while the pin held are served from now on. Raises
    Conflict when nothing is pinned.
    """
    name = RUN_KINDS[kind][0]
    pinned = session.scalars(select(kind).where(kind.is_pinned.is_(True))).first()
    if pinned is None:
        raise Conflict(f"no {name} is pinned: the newest usable {name} already serves")
    _pin(session, kind, None)
    serving = serving_run(session, kind)
    _audit(session, actor, "model.unpin", pinned, {"serving": None if serving is None else serving.version})
    return serving


def promote(session: Session, version: str, *, actor: str = "cli", kind: type[Run] = MODELS) -> Run:
    """Serve ``version`` again: clear its rollback and release the pin; if newer usable runs exist, it is
    pinned ahead of them instead (an operator named it). Raises NotFound, or Conflict for a run that did
    not succeed or whose artifact is gone."""
    name = RUN_KINDS[kind][0]
    run = session.scalars(select(kind).where(kind.version == version)).first()
    if run is None:
        raise NotFound(f"{name} version", version)
    if run.status != "succeeded" or run.artifact_path is None:
        why = "did not succeed" if run.status != "succeeded" else "has no artifact any more"
        raise Conflict(f"cannot promote {name} {version}: it {why}")
    run.is_rolled_back = False
    _pin(session, kind, None)
    newest = newest_run(session, kind)
    if newest is not None and newest.id != run.id:
        _pin(session, kind, run)
    _audit(session, actor, "model.promote", run, {"pinned": run.is_pinned})
    return run


def last_erasure(session: Session) -> dt.datetime | None:
    """When the most recent customer erasure happened (None: never)."""
    value = session.scalar(select(func.max(Customer.erased_at)))
    return value if isinstance(value, dt.datetime) else None


def prune_artifacts(session: Session, settings: Settings, *, kind: type[Run] = MODELS) -> list[str]:
    """Delete artifacts beyond the newest ``keep_runs`` usable runs (of models, or of ``kind``); returns
    the versions pruned.

    Rolled-back runs are never served again, so their artifacts go first. Artifacts of runs started
    before the latest customer erasure go too (they hold the erased customers' factors), except the
    newest usable run while nothing newer exists: the next training replaces it (``is_stale`` says so)
    and prunes it then. A pruned run keeps its row (history) with ``artifact_path`` cleared.
    """
    keep = max(1, settings.model.keep_runs)
    runs = session.scalars(
        select(kind)
        .where(kind.status == "succeeded", kind.artifact_path.is_not(None))
        .order_by(kind.id.desc())
    ).all()
    usable = [r for r in runs if not r.is_rolled_back]
    # A pinned run serves ahead of the runs trained after it: kept however many there are (not past an
    # erasure: the customers' right to be forgotten wins over the pin, and the newest usable run serves).
    doomed = [r for r in usable[keep:] if not r.is_pinned] + [r for r in runs if r.is_rolled_back]
    erased = last_erasure(session)
    if erased is not None:
        older = [r for r in usable[1:] if r in usable[1:keep] or r.is_pinned]
        doomed += [r for r in older if r.started_at is not None and r.started_at <= erased]
    root = Path(settings.model.artifact_dir)
    pruned: list[str] = []
    for run in doomed:
        delete_artifact(session, run.version)
        folder = root / run.version  # a run trained before artifacts moved into the database
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete artifact %s: %s", folder, exc)
            continue
        run.artifact_path = None
        pruned.append(run.version)
    session.flush()
    return pruned
