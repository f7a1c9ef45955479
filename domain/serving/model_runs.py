"""Which model run to use: the one fall-back rule of serving and planning, and the retry of failed loads.

A run is *usable* when it succeeded, is not rolled back and still has its artifact. A usable run an
operator *pinned* (``giftrec model rollback`` or ``promote``) comes first: runs newer than it (the nightly
training's) wait until ``giftrec model unpin``; older ones remain its fall-backs. The same rule, on the
same two flags, holds for the next-purchase ranker's runs (``kind=NextPurchaseRun``, loaded by
:mod:`domain.serving.next_purchase_runs`). Both the serving
process (:class:`~domain.serving.model_store.ModelStore`) and selection planning
(:func:`~domain.serving.candidates.latest_model_scorer`) call :func:`load_newest_usable`: the newest
usable run whose artifact loads wins; a missing or corrupt artifact is reported and the previous usable
run is tried, and so on. A database error is not a bad artifact: it is raised, never skipped over.

A version that failed to load is not tried again until ``model.load_retry_seconds`` have passed
(:class:`LoadFailures`, on the caller's monotonic clock): a transient failure heals on its own, and a
corrupt artifact costs one attempt per back-off instead of one per check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from config import Settings
from domain.models import ModelRun, NextPurchaseRun
from domain.serving.artifact_store import IN_DATABASE, load_stored_artifact
from recommender.artifacts import Artifact, load_artifact

__all__ = [
    "RUN_KINDS",
    "MODELS",
    "LoadFailures",
    "Run",
    "Picked",
    "artifact_location",
    "load_newest_usable",
    "load_run_artifact",
    "pinned_run",
    "usable_runs",
    "walk_newest",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A recorded training of something served: a model (``ModelRun``) or the next-purchase ranker.
Run = TypeVar("Run", ModelRun, NextPurchaseRun)
#: What each kind of run is called in messages, and its audit log entity type.
RUN_KINDS: dict[type, tuple[str, str]] = {
    ModelRun: ("model", "model_run"),
    NextPurchaseRun: ("next-purchase ranker", "next_purchase_run"),
}
#: The ``kind`` of the functions here and in :mod:`domain.serving.training` when none is given: the
#: models. Typed ``Any`` so that a ``type[Run]`` parameter may default to it (mypy then infers ModelRun).
MODELS: Any = ModelRun


def _usable(kind: type[Run]) -> tuple[Any, ...]:
    return (kind.status == "succeeded", kind.is_rolled_back.is_(False), kind.artifact_path.is_not(None))


def pinned_run(session: Session, kind: type[Run] = MODELS) -> Run | None:
    """The usable run an operator pinned, if any (a pinned run whose artifact is gone pins nothing)."""
    return session.scalars(
        select(kind).where(*_usable(kind), kind.is_pinned.is_(True)).order_by(kind.id.desc()).limit(1)
    ).first()


def usable_runs(
    session: Session,
    *,
    limit: int,
    kind: type[Run] = MODELS,
) -> list[Run]:
    """The newest ``limit`` usable runs, newest first (by id, as rollback and training see them),
    starting at the pinned run when there is one."""
    query = select(kind).where(*_usable(kind))
    pinned = pinned_run(session, kind)
    if pinned is not None:
        query = query.where(kind.id <= pinned.id)
    return list(session.scalars(query.order_by(kind.id.desc()).limit(limit)))


def artifact_location(settings: Settings, run: ModelRun) -> Path:
    """The folder of a run trained before artifacts moved into the database:
    ``<model.artifact_dir>/<version>`` on the host that trained it (pruning deletes it)."""
    return Path(settings.model.artifact_dir) / run.version


def load_run_artifact(session: Session, settings: Settings, run: ModelRun) -> Artifact:
    """Load and verify a run's artifact (raises ``ArtifactError`` when missing or corrupt).

    From the database (:mod:`domain.serving.artifact_store`), where training stores it; a run recorded
    before that keeps loading from its folder on the host that trained it.
    """
    if (run.artifact_path or "").startswith(IN_DATABASE):
        return load_stored_artifact(session, run.version)
    return load_artifact(artifact_location(settings, run))


class LoadFailures:
    """Versions that failed to load, each with its message and when it may be tried again."""

    def __init__(self, retry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._retry = retry_seconds
        self._clock = clock
        self._failed: dict[str, tuple[str, float]] = {}

    def waiting(self, version: str) -> str | None:
        """The message of a failure still inside its back-off; None when the version may be tried."""
        found = self._failed.get(version)
        if found is None or self._clock() >= found[1]:
            return None
        return found[0]

    def failed(self, version: str, message: str) -> None:
        self._failed[version] = (message, self._clock() + self._retry)

    def loaded(self, version: str) -> None:
        self._failed.pop(version, None)


@dataclass
class Picked(Generic[T]):
    """What :func:`load_newest_usable` found: the run and what ``load`` made of it (both None when no
    usable run loaded, or when the run in memory was reached first), the errors on the way, and whether
    any usable run exists at all."""

    #: The ModelRun (or, for the next-purchase ranker, NextPurchaseRun) that loaded.
    run: Any = None
    loaded: T | None = None
    errors: list[str] = field(default_factory=list)
    any_usable: bool = False
    #: True when the walk stopped at ``keep_run_id``: every newer run failed, the caller keeps its model.
    kept: bool = False


def load_newest_usable(
    session: Session,
    settings: Settings,
    load: Callable[[ModelRun], T],
    *,
    failures: LoadFailures | None = None,
    keep_run_id: int | None = None,
) -> Picked[T]:
    """Load the newest usable run with ``load``, falling back to older usable runs when it fails.

    ``keep_run_id`` is the run a caller already has in memory: the walk stops there (nothing newer
    loaded, keep it). ``failures`` skips versions inside their back-off and records new failures.
    """
    runs = usable_runs(session, limit=max(2, settings.model.keep_runs + 1))
    return walk_newest(runs, load, failures=failures, keep_run_id=keep_run_id)


def walk_newest(
    runs: Sequence[Any],
    load: Callable[[Any], T],
    *,
    failures: LoadFailures | None = None,
    keep_run_id: int | None = None,
) -> Picked[T]:
    """:func:`load_newest_usable`'s walk over usable ``runs`` (newest first, each with ``id`` and
    ``version``): the first that loads wins; also the next-purchase ranker's rule."""
    picked: Picked[T] = Picked(any_usable=bool(runs))
    for run in runs:
        if keep_run_id is not None and run.id == keep_run_id:
            picked.kept = True
            break
        waiting = failures.waiting(run.version) if failures is not None else None
        if waiting is not None:
            picked.errors.append(waiting)
            continue
        try:
            loaded = load(run)
        except SQLAlchemyError:
            raise  # the database, not the artifact
        except Exception as exc:  # noqa: BLE001 - a bad artifact must not stop serving or planning
            message = f"model {run.version} could not be loaded: {type(exc).__name__}: {exc}"
            log.error("%s; trying the previous usable run", message)
            if failures is not None:
                failures.failed(run.version, message)
            picked.errors.append(message)
            continue
        if failures is not None:
            failures.loaded(run.version)
        picked.run, picked.loaded = run, loaded
        break
    return picked
