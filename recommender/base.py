"""The Recommender interface every giftrec model implements, and the package's errors."""

from __future__ import annotations

import json
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from scipy.sparse import csr_matrix, issparse

__all__ = [
    "ArtifactError",
    "NotFittedError",
    "Recommender",
    "RecommenderError",
    "check_user_items",
    "top_k",
    "top_k_rows",
]

MODEL_STATE_FILE = "model.npz"
MODEL_META_FILE = "model.json"
MODEL_FORMAT = 1

# Scores are computed for at most this many cells at once in `recommend_batch` (64 MiB of float32).
_BATCH_CELLS = 1 << 24


class RecommenderError(Exception):
    """Base class of every error raised by the recommender package."""


class NotFittedError(RecommenderError):
    """The model was used before `fit` (or `load`)."""


class ArtifactError(RecommenderError):
    """A saved model or artifact is missing, corrupt or of an unknown format."""


_REGISTRY: dict[str, type[Recommender]] = {}


def check_user_items(
    user_items: Any,
    *,
    n_items: int | None = None,
    what: str = "user_items",
    copy: bool = False,
    allow_negative: bool = False,
) -> csr_matrix:
    """Validate and normalise an interaction matrix.

    Parameters
    ----------
    user_items : sparse matrix, shape (n_users, n_items)
        Users are rows, items are columns, values are confidences (> 0).
    n_items : int, optional
        Required number of columns (the fitted model's item count).
    what : str
        Name used in error messages.
    copy : bool
        Always return a new matrix. Otherwise a float32 CSR input that needs no repair is returned
        as is (the serving fast path); the input is never modified either way.
    allow_negative : bool
        Keep negative values (negative feedback, for models whose ``accepts_negative`` is True).

    Returns
    -------
    csr_matrix, float32, canonical (sorted indices, no duplicates, no explicit zeros)

    Warns
    -----
    UserWarning
        On repairable input: duplicate entries (summed) and negative values (clipped to 0).
    """
    if not issparse(user_items):
        raise TypeError(
            f"{what} must be a scipy sparse matrix (users x items), got {type(user_items).__name__}"
        )
    if type(user_items) is csr_matrix and user_items.dtype == np.float32 and not copy:
        m = user_items
    else:
        m = csr_matrix(user_items, dtype=np.float32, copy=True)
    if n_items is not None and m.shape[1] != n_items:
        raise ValueError(f"{what} has {m.shape[1]} item columns, the model has {n_items}")
    data = m.data
    if data.size and not np.isfinite(data).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    canonical = m.has_canonical_format
    negative = int((data < 0).sum()) if data.size and not allow_negative else 0
    zeros = bool(data.size) and not data.all()
    if canonical and not negative and not zeros:
        return m
    if m is user_items:
        m = m.copy()
    if not canonical:
        before = m.nnz
        m.sum_duplicates()
        if m.nnz != before:
            warnings.warn(
                f"{what}: {before - m.nnz} duplicate entries were summed", UserWarning, stacklevel=3
            )
    if m.nnz and not allow_negative and (m.data < 0).any():
        warnings.warn(
            f"{what}: {int((m.data < 0).sum())} negative values were clipped to 0", UserWarning, stacklevel=3
        )
        np.maximum(m.data, 0, out=m.data)
    m.eliminate_zeros()
    return m


def top_k(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best `n` entries of a score vector, ignoring -inf, ties broken by lower index.

    Parameters
    ----------
    scores : ndarray, shape (n_items,)
    n : int

    Returns
    -------
    (ids int32, scores float32), each of length <= n, best first.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if n <= 0 or scores.size == 0:
        return np.empty(0, np.int32), np.empty(0, np.float32)
    if scores.size > n:
        # Values equal to the n-th best may be cut arbitrarily by argpartition: take them all, then sort.
        threshold = scores[np.argpartition(scores, scores.size - n)[scores.size - n]]
        ok = np.flatnonzero(scores >= threshold) if threshold > -np.inf else np.empty(0, np.intp)
        if ok.size < n:  # fewer than n finite scores (or NaNs, which argpartition sorts last)
            ok = np.flatnonzero(scores > -np.inf)
    else:
        ok = np.flatnonzero(scores > -np.inf)
    vals = scores[ok]
    order = np.lexsort((ok, -vals))[:n]
    return ok[order].astype(np.int32), vals[order]


def top_k_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise `top_k` of a 2-D score matrix, padded with -1 / -inf.

    Parameters
    ----------
    scores : ndarray, shape (n_rows, n_items)
    n : int

    Returns
    -------
    ids : ndarray int32, shape (n_rows, n)
    scores : ndarray float32, shape (n_rows, n)
    """
    rows = scores.shape[0]
    ids = np.full((rows, n), -1, dtype=np.int32)
    out = np.full((rows, n), -np.inf, dtype=np.float32)
    for r in range(rows):
        i, s = top_k(scores[r], n)
        ids[r, : i.size] = i
        out[r, : s.size] = s
    return ids, out


class Recommender(ABC):
    """A model that ranks items for users from an implicit-feedback matrix.

    Orientation follows implicit: ``user_items`` has users as rows and items as columns; ``user_idx`` and
    ``item_idx`` are matrix positions (``IdIndex`` maps database ids to them). Every method that returns
    recommendations returns ``(item_ids int32, scores float32)``, best first, and never returns an item
    whose ``allowed`` entry is False or, with ``exclude_seen``, one the user's row already holds.

    Subclasses implement `_fit`, `_score_users`, `_similar_scores`, `explain`, `recalculate_user`,
    `_get_state` and `_set_state`; this class implements filtering, top-k and persistence.
    """

    name: ClassVar[str]
    #: Whether `fit` takes negative cells as negative feedback ("not wanted"); other models get them
    #: clipped to 0 (with a warning).
    accepts_negative: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self._params: dict[str, Any] = dict(params)
        self.n_users: int = 0
        self.n_items: int = 0
        self._fitted = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, str):
            _REGISTRY[name] = cls

    # ----------------------------------------------------------------------------------------- public API
    @property
    def params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable); ``type(self)(**params)`` rebuilds an unfitted model."""
        return dict(self._params)

    @property
    def is_fitted(self) -> bool:
        """True after `fit` or `load`."""
        return self._fitted

    def fit(self, user_items: csr_matrix) -> Self:
        """Train on an interaction matrix.

        Parameters
        ----------
        user_items : csr_matrix, shape (n_users, n_items)
            Users are rows; values are positive confidences. Duplicates are summed and negative values
            clipped, each with a warning, unless the model ``accepts_negative`` (then a negative value is
            negative feedback: see that model).

        Returns
        -------
        self
        """
        from recommender.threads import pin_blas_threads

        pin_blas_threads()
        m = check_user_items(user_items, copy=True, allow_negative=self.accepts_negative)
        if m.shape[0] == 0 or m.shape[1] == 0:
            raise ValueError(f"user_items is empty (shape {m.shape})")
        self._fit(m)
        self.n_users, self.n_items = m.shape
        self._fitted = True
        return self

    def recommend(
        self,
        user_idx: int,
        user_items: csr_matrix,
        n: int = 10,
        *,
        allowed: np.ndarray | None = None,
        exclude_seen: bool = True,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`n` items for one user.

        Parameters
        ----------
        user_idx : int
            Row of the user in the training matrix, or -1 for a user the model has not seen (then the
            factors are folded in from `user_items`).
        user_items : csr_matrix, shape (1, n_items)
            The user's current interaction row (may hold purchases made since training).
        n : int
            Maximum number of items returned.
        allowed : ndarray of bool, shape (n_items,), optional
            False marks items that must never be returned.
        exclude_seen : bool
            Drop items present in `user_items`.
        recalculate_user : bool
            Fold the user in from `user_items` even when `user_idx` is known (fresh purchases).

        Returns
        -------
        (item_ids int32, scores float32), length <= n, best first.
        """
        # What recommend_batch does for one row, without its batching (the serving hot path).
        self._require_fitted()
        row = check_user_items(user_items, n_items=self.n_items)
        if row.shape[0] != 1:
            raise ValueError(f"user_items has {row.shape[0]} rows for 1 users")
        mask = self._check_allowed(allowed)
        if n <= 0:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        scores = np.array(self._score_users(np.array([user_idx]), row, recalculate_user)[0], dtype=np.float32)
        if mask is not None:
            scores[~mask] = -np.inf
        if exclude_seen:
            scores[row.indices] = -np.inf
        return top_k(scores, n)

    def recommend_batch(
        self,
        user_idxs: Sequence[int] | np.ndarray,
        user_items: csr_matrix,
        n: int = 10,
        *,
        allowed: np.ndarray | None = None,
        exclude_seen: bool = True,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`n` items for many users.

        Parameters
        ----------
        user_idxs : array of int, shape (n_rows,)
            Training rows of the users (-1 for users the model has not seen).
        user_items : csr_matrix, shape (n_rows, n_items)
            The users' rows, in the same order as `user_idxs`.
        n, allowed, exclude_seen, recalculate_user
            As in `recommend`; `allowed` applies to every row.

        Returns
        -------
        ids : ndarray int32, shape (n_rows, n), padded with -1
        scores : ndarray float32, shape (n_rows, n), padded with -inf
        """
        self._require_fitted()
        idxs = np.asarray(user_idxs, dtype=np.int64).reshape(-1)
        rows = check_user_items(user_items, n_items=self.n_items)
        if rows.shape[0] != idxs.size:
            raise ValueError(f"user_items has {rows.shape[0]} rows for {idxs.size} users")
        mask = self._check_allowed(allowed)
        out_ids = np.full((idxs.size, max(n, 0)), -1, dtype=np.int32)
        out_scores = np.full((idxs.size, max(n, 0)), -np.inf, dtype=np.float32)
        if n <= 0 or idxs.size == 0:
            return out_ids, out_scores
        chunk = max(1, _BATCH_CELLS // max(self.n_items, 1))
        for start in range(0, idxs.size, chunk):
            stop = min(start + chunk, idxs.size)
            sub = rows if (start, stop) == (0, idxs.size) else rows[start:stop]
            scores = np.array(self._score_users(idxs[start:stop], sub, recalculate_user), dtype=np.float32)
            if mask is not None:
                scores[:, ~mask] = -np.inf
            if exclude_seen:
                r, c = sub.nonzero()
                scores[r, c] = -np.inf
            out_ids[start:stop], out_scores[start:stop] = top_k_rows(scores, n)
        return out_ids, out_scores

    def score_row(self, user_items_row: csr_matrix) -> np.ndarray:
        """Score every item for a (possibly new) user given only their interaction row.

        Parameters
        ----------
        user_items_row : csr_matrix, shape (1, n_items)

        Returns
        -------
        ndarray float32, shape (n_items,); no filtering applied.
        """
        self._require_fitted()
        row = check_user_items(user_items_row, n_items=self.n_items, what="user_items_row")
        if row.shape[0] != 1:
            raise ValueError(f"user_items_row must have exactly one row, got {row.shape[0]}")
        return np.asarray(self._score_users(np.array([-1]), row, True)[0], dtype=np.float32)

    def similar_items(
        self, item_idx: int, n: int = 10, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar to `item_idx`, never the item itself.

        Parameters
        ----------
        item_idx : int
            Column of the anchor item.
        n : int
        allowed : ndarray of bool, shape (n_items,), optional

        Returns
        -------
        (item_ids int32, scores float32), length <= n, best first.
        """
        self._require_fitted()
        self._check_item(item_idx)
        scores = np.array(self._similar_scores(int(item_idx)), dtype=np.float32)
        mask = self._check_allowed(allowed)
        if mask is not None:
            scores[~mask] = -np.inf
        scores[item_idx] = -np.inf
        return top_k(scores, n)

    @abstractmethod
    def explain(
        self, user_idx: int, user_items: csr_matrix, item_idx: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Past items that contributed most to the user's score for `item_idx`.

        Parameters
        ----------
        user_idx : int
            Training row of the user or -1.
        user_items : csr_matrix, shape (1, n_items)
            The user's interaction row.
        item_idx : int
            The recommended item.
        n : int
            Maximum number of contributions.

        Returns
        -------
        list of (past item_idx, contribution), largest first; only positive contributions.
        """

    def explain_many(
        self, user_idx: int, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray, n: int = 3
    ) -> list[list[tuple[int, float]]]:
        """`explain` for several recommended items of one user, in the order of `item_idxs`.

        Models override it when the user-side work can be shared (ALS factorises once).

        Returns
        -------
        list (one per item) of lists of (past item_idx, contribution).
        """
        return [self.explain(user_idx, user_items, int(i), n) for i in np.asarray(item_idxs).reshape(-1)]

    def explain_ids(
        self, user_idx: int, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray, n: int = 3
    ) -> np.ndarray:
        """The past items of `explain_many`, without their contributions, as one array: the form kept for
        rankings made ahead. Models with a vectorised explanation override it (no list per item).

        Returns
        -------
        ndarray of int64, shape (len(item_idxs), n): row k the past item_idx explaining ``item_idxs[k]``,
        largest contribution first, padded with -1.
        """
        items = np.asarray(item_idxs).reshape(-1)
        out = np.full((items.size, max(n, 0)), -1, dtype=np.int64)
        for k, reasons in enumerate(self.explain_many(user_idx, user_items, items, n)):
            ids = [i for i, _ in reasons][: max(n, 0)]
            out[k, : len(ids)] = ids
        return out

    @abstractmethod
    def recalculate_user(self, user_items_row: csr_matrix) -> np.ndarray:
        """The user representation computed from a fresh row (fold-in), without changing the model.

        Parameters
        ----------
        user_items_row : csr_matrix, shape (1, n_items)

        Returns
        -------
        ndarray, shape (n_factors,) for factor models; (n_items,) weights for neighbourhood models.
        """

    def save(self, directory: Path) -> None:
        """Write the fitted model to `directory` (``model.npz`` + ``model.json``); created if missing."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {k: np.ascontiguousarray(v) for k, v in self._get_state().items()}
        with open(directory / MODEL_STATE_FILE, "wb") as fh:
            np.savez(fh, **state)
        meta = {
            "format": MODEL_FORMAT,
            "name": self.name,
            "params": self.params,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        (directory / MODEL_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by `save`.

        Called on `Recommender` itself it returns whichever model class the files name; called on a
        subclass it insists on that class. Raises `ArtifactError` on missing or corrupt files.
        """
        from recommender.threads import pin_blas_threads

        # A process that only loads models (a job, a script) must not leave OpenBLAS with its own pool.
        pin_blas_threads()
        directory = Path(directory)
        try:
            meta = json.loads((directory / MODEL_META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ArtifactError(f"model metadata missing: {directory / MODEL_META_FILE}") from exc
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"model metadata unreadable: {directory / MODEL_META_FILE}: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
            raise ArtifactError(f"unknown model format in {directory / MODEL_META_FILE}")
        name = meta.get("name")
        target = _REGISTRY.get(str(name))
        if target is None:
            raise ArtifactError(f"unknown model name {name!r} in {directory}")
        if cls is not Recommender and not issubclass(target, cls):
            raise ArtifactError(f"{directory} holds a {name!r} model, not {cls.name!r}")
        try:
            with np.load(directory / MODEL_STATE_FILE, allow_pickle=False) as npz:
                state = {k: npz[k] for k in npz.files}
        except FileNotFoundError as exc:
            raise ArtifactError(f"model state missing: {directory / MODEL_STATE_FILE}") from exc
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(f"model state unreadable: {directory / MODEL_STATE_FILE}: {exc}") from exc
        model = target(**meta.get("params", {}))
        try:
            model._set_state(state)
        except (KeyError, ValueError, IndexError) as exc:
            raise ArtifactError(f"model state inconsistent in {directory}: {exc}") from exc
        model.n_users = int(meta["n_users"])
        model.n_items = int(meta["n_items"])
        model._fitted = True
        return model  # type: ignore[return-value]

    # ----------------------------------------------------------------------------------- for subclasses
    @abstractmethod
    def _fit(self, user_items: csr_matrix) -> None:
        """Train on a validated float32 canonical CSR matrix."""

    @abstractmethod
    def _score_users(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        """Raw scores, shape (len(user_idxs), n_items); rows of unknown users (-1) come from `user_items`."""

    @abstractmethod
    def _similar_scores(self, item_idx: int) -> np.ndarray:
        """Similarity of every item to `item_idx`, shape (n_items,)."""

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Arrays that, with `params`, fully describe the fitted model."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore from `_get_state` output."""

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _check_allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self.n_items,):
            raise ValueError(
                f"allowed must be a bool array of shape ({self.n_items},), got {mask.dtype} {mask.shape}"
            )
        return mask

    def _check_item(self, item_idx: int) -> None:
        if not 0 <= int(item_idx) < self.n_items:
            raise IndexError(f"item_idx {item_idx} out of range [0, {self.n_items})")

    def _check_items(self, item_idxs: Sequence[int] | np.ndarray) -> np.ndarray:
        """`item_idxs` as int64, shape (k,), each checked as `_check_item` does (at once)."""
        items = np.asarray(item_idxs, dtype=np.int64).reshape(-1)
        if items.size and not (0 <= int(items.min()) and int(items.max()) < self.n_items):
            bad = items[(items < 0) | (items >= self.n_items)][0]
            raise IndexError(f"item_idx {bad} out of range [0, {self.n_items})")
        return items

    def _known_users(self, user_idxs: np.ndarray, recalculate: bool) -> np.ndarray:
        """Bool mask of rows whose stored training factors may be used."""
        if recalculate:
            return np.zeros(user_idxs.shape, dtype=bool)
        return (user_idxs >= 0) & (user_idxs < self.n_users)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"
