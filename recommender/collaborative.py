"""Collaborative filtering on implicit: ALS (the default), BPR and item-item neighbourhoods (BM25, cosine)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs
from scipy.sparse import csr_matrix

from recommender.base import NotFittedError, Recommender, RecommenderError, check_user_items
from recommender.threads import pin_blas_threads

__all__ = ["ALSRecommender", "BPRRecommender", "ItemItemRecommender"]

# Fold-ins of up to this many users at once run single-threaded (see ALSRecommender._adopt).
_SOLO_ROWS = 16


@dataclass(frozen=True)
class _UserSystem:
    """One user's ALS normal equations, A x = b (Hu et al. section 5, implicit's ``user_linear_equation``),
    factorised: what a fold-in and an explanation of the same row both solve with."""

    #: The model's YtY + reg I it was made with (a weak reference: a thread's last system does not keep a
    #: model alive; a model that adopts new factors makes a new one).
    gram: weakref.ReferenceType[np.ndarray]
    #: The row it was made from (copies).
    indices: np.ndarray
    data: np.ndarray
    #: Upper Cholesky factor of A = YtY + reg I + Y_S^T (|C_S| - I) Y_S, float64.
    factor: np.ndarray
    #: b = Y_S^T C_S p_S: the positive confidences' items.
    b: np.ndarray
    #: Y_S (float64) and the confidence of each past item in an explanation (0 where not positive).
    past: np.ndarray
    confidence: np.ndarray

    def made_from(self, gram: np.ndarray, row: csr_matrix) -> bool:
        return (
            self.gram() is gram
            and np.array_equal(self.indices, row.indices)
            and np.array_equal(self.data, row.data)
        )


#: Each thread's last user system (a request folds a customer in, then explains their picks: one
#: factorisation serves both).
_LAST = threading.local()


def _cosine_to(factors: np.ndarray, norms: np.ndarray, item_idx: int) -> np.ndarray:
    """Cosine similarity of every row of `factors` to row `item_idx`."""
    denom = norms * norms[item_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = factors @ factors[item_idx] / denom
    return np.where(denom > 0, sims, 0.0).astype(np.float32)


class _FactorModel(Recommender):
    """Shared scoring for models with user and item factor matrices."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    _item_norms: np.ndarray | None = None

    def _user_vectors(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        known = self._known_users(user_idxs, recalculate)
        vectors = np.empty((user_idxs.size, self.item_factors.shape[1]), dtype=np.float32)
        if known.any():
            vectors[known] = self.user_factors[user_idxs[known]]
        if (~known).any():
            # One row (a request's customer) is folded in as it is: scipy's row selection of a one-row
            # matrix costs about what the fold-in's solve does.
            rows = user_items if known.size == 1 else user_items[np.flatnonzero(~known)]
            vectors[~known] = self._fold_in(rows)
        return vectors

    def _score_users(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        return self._user_vectors(user_idxs, user_items, recalculate) @ self.item_factors.T

    def _similar_scores(self, item_idx: int) -> np.ndarray:
        if self._item_norms is None:
            self._item_norms = np.linalg.norm(self.item_factors, axis=1)
        return _cosine_to(self.item_factors, self._item_norms, item_idx)

    def recalculate_user(self, user_items_row: csr_matrix) -> np.ndarray:
        """Fold a user in from their row, shape (1, n_items) -> factors, shape (n_factors,)."""
        self._require_fitted()
        pin_blas_threads()
        row = check_user_items(user_items_row, n_items=self.n_items, what="user_items_row")
        if row.shape[0] != 1:
            raise ValueError(f"user_items_row must have exactly one row, got {row.shape[0]}")
        return np.asarray(self._fold_in(row)[0], dtype=np.float32)

    def _fold_in(self, rows: csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}


class ALSRecommender(_FactorModel):
    """Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren, Volinsky 2008).

    Always implicit's CPU implementation unless ``use_gpu=True``; seeded by `random_state`.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    regularization : float
    alpha : float
        Confidence scaling: implicit uses ``C = alpha * user_items``.
    iterations : int
    random_state : int
    num_threads : int
        implicit's own threads (0 = all cores). BLAS is pinned to one thread separately.
    use_gpu : bool
        Train with implicit's CUDA build (the fitted factors are copied back to the CPU for serving).

    Notes
    -----
    Negative feedback: a cell of ``-x`` (x > 0) in the matrix given to `fit` means "not wanted" with
    confidence ``1 + alpha * x``, i.e. preference 0 held more firmly than an empty cell's confidence of 1
    (implicit reads a negative value ``v`` as preference 0 with confidence ``alpha * |v|``; `fit` passes
    ``-(1 / alpha + x)``). ``x`` is in the units of the matrix: 1 weighs as much as one purchase.
    """

    name = "als"
    accepts_negative = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int = 42,
        num_threads: int = 0,
        use_gpu: bool = False,
    ) -> None:
        super().__init__(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
            use_gpu=use_gpu,
        )
        self._model: Any = None
        self._solo: Any = None

    def _new_model(self) -> Any:
        p = self._params
        kwargs = {
            "factors": p["factors"],
            "regularization": p["regularization"],
            "alpha": p["alpha"],
            "iterations": p["iterations"],
            "random_state": p["random_state"],
            "num_threads": p["num_threads"],
        }
        if p["use_gpu"]:
            import implicit.gpu

            if not implicit.gpu.HAS_CUDA:
                raise RecommenderError("use_gpu=True but implicit was built without CUDA or finds no GPU")
            import implicit.gpu.als

            return implicit.gpu.als.AlternatingLeastSquares(**kwargs)
        import implicit.cpu.als

        return implicit.cpu.als.AlternatingLeastSquares(**kwargs)

    def _fit(self, user_items: csr_matrix) -> None:
        model = self._new_model()
        negative = user_items.data < 0
        if negative.any():  # "not wanted" more firmly than an empty cell: see the class notes
            user_items = user_items.copy()
            user_items.data[negative] -= np.float32(1.0 / self._params["alpha"])
        model.fit(user_items, show_progress=False)
        if self._params["use_gpu"]:
            model = model.to_cpu()
        self._adopt(model)

    def _cpu_model(self, num_threads: int) -> Any:
        import implicit.cpu.als

        p = self._params
        model = implicit.cpu.als.AlternatingLeastSquares(
            factors=p["factors"],
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=p["iterations"],
            random_state=p["random_state"],
            num_threads=num_threads,
        )
        model.user_factors = self.user_factors
        model.item_factors = self.item_factors
        return model

    def _adopt(self, model: Any) -> None:
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._item_norms = None
        self._gram64: np.ndarray | None = None
        self._model = self._cpu_model(self._params["num_threads"])
        # Serving folds in one or a few users per call: implicit's thread pool only adds wake-up latency
        # there (p99 4-16 ms instead of ~1 ms measured with 2 threads), so a single-threaded twin sharing
        # the same factor arrays answers those calls.
        self._solo = self._cpu_model(1)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        user_factors, item_factors = state["user_factors"], state["item_factors"]
        if user_factors.shape[1] != self._params["factors"] or item_factors.shape[1] != user_factors.shape[1]:
            raise ValueError("factor shapes do not match the parameters")
        self._adopt(SimpleNamespace(user_factors=user_factors, item_factors=item_factors))

    def _fold_in(self, rows: csr_matrix) -> np.ndarray:
        if self._model is None:
            raise NotFittedError("ALSRecommender is not fitted")
        if rows.shape[0] == 1 and rows.nnz:
            # One row (a request's customer): solved from the system its explanation reuses.
            system = self._system(rows)
            x, info = _potrs(system.factor, system.b, lower=False)
            if info != 0:
                raise ValueError(f"fold-in: illegal value in argument {-info} of potrs")
            return np.asarray(x, dtype=np.float32).reshape(1, -1)
        solver = self._solo if rows.shape[0] <= _SOLO_ROWS else self._model
        factors = solver.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.asarray(factors, dtype=np.float32).reshape(rows.shape[0], -1)

    def explain(
        self, user_idx: int, user_items: csr_matrix, item_idx: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Past items driving the ALS score, from implicit's ``explain`` (section 5 of Hu et al.).

        Parameters
        ----------
        user_idx : int
            Unused: the explanation is computed from `user_items` (shape (1, n_items)).
        user_items : csr_matrix, shape (1, n_items)
        item_idx : int
        n : int

        Returns
        -------
        list of (past item_idx, contribution), largest first, positive only.
        """
        self._require_fitted()
        self._check_item(item_idx)
        pin_blas_threads()
        row = check_user_items(user_items, n_items=self.n_items)
        if row.nnz == 0 or n <= 0:
            return []
        _, contributions, _ = self._solo.explain(0, _first_row(row), int(item_idx), N=max(n, row.nnz))
        return [(int(i), float(s)) for i, s in contributions if s > 0][:n]

    def explain_many(
        self, user_idx: int, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray, n: int = 3
    ) -> list[list[tuple[int, float]]]:
        """Vectorised `explain` for several items: the same decomposition as implicit's ``explain``
        (one Cholesky factorisation of the user's weighted item Gram matrix, shared by all items, and
        with the fold-in of the same row just before it in this thread: `_system`).

        Parameters
        ----------
        user_idx : int
            Unused (see `explain`).
        user_items : csr_matrix, shape (1, n_items)
        item_idxs : array of int, shape (k,)
        n : int

        Returns
        -------
        list of k lists of (past item_idx, contribution), largest first, positive only.
        """
        items, row = self._explaining(user_items, item_idxs)
        if row.nnz == 0 or n <= 0 or items.size == 0:
            return [[] for _ in items]
        return _top_contributions_many(row.indices, self._contributions(row, items), n)

    def explain_ids(
        self, user_idx: int, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray, n: int = 3
    ) -> np.ndarray:
        """`explain_many`'s past items as one array (`Recommender.explain_ids`), without a list per item."""
        items, row = self._explaining(user_items, item_idxs)
        out = np.full((items.size, max(n, 0)), -1, dtype=np.int64)
        if row.nnz == 0 or n <= 0 or items.size == 0:
            return out
        ids, values = _top_contributions_arrays(row.indices, self._contributions(row, items), n)
        ids[values <= 0] = -1  # each row is sorted largest first: the positive ones lead
        out[:, : ids.shape[1]] = ids
        return out

    def _explaining(
        self, user_items: csr_matrix, item_idxs: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, csr_matrix]:
        """The checked items and the user's one row, for an explanation (BLAS pinned)."""
        self._require_fitted()
        items = self._check_items(item_idxs)
        pin_blas_threads()
        return items, _first_row(check_user_items(user_items, n_items=self.n_items))

    def _contributions(self, row: csr_matrix, items: np.ndarray) -> np.ndarray:
        """Each past item's contribution (rows, in the row's order) to each item's score (columns)."""
        system = self._system(row)
        targets = self.item_factors[items].astype(np.float64).T
        weighted, info = _potrs(system.factor, targets, lower=False)
        if info != 0:
            raise ValueError(f"explain: illegal value in argument {-info} of potrs")
        return (system.past @ weighted) * system.confidence[:, None]

    def _system(self, row: csr_matrix) -> _UserSystem:
        """The factorised normal equations of one row (shape (1, n_items)), as implicit's least squares and
        ``explain`` build them: confidence C = alpha * row; a negative one counts by its size in A and not
        in b, and explains nothing. The calling thread's last system is reused when the row is the same
        (a fold-in, then the explanations of its picks)."""
        gram = self._gram_reg()
        last = getattr(_LAST, "system", None)
        if last is not None and last.made_from(gram, row):
            return last
        past = self.item_factors[row.indices].astype(np.float64)
        confidence = self._params["alpha"] * row.data.astype(np.float64)
        positive = np.where(confidence > 0, confidence, 0.0)
        # A = Y^T C_u Y + reg I = YtY + reg I + Y_S^T (|C_S| - I) Y_S (Hu et al. section 5; implicit)
        A = gram + (past * (np.abs(confidence) - 1)[:, None]).T @ past
        # LAPACK's potrf/potrs directly: what scipy.linalg.cho_factor/cho_solve call, without their
        # per-call input checks (a third of a serving request's explanation time).
        factor, info = _potrf(A, lower=False, clean=False, overwrite_a=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"the user's Gram matrix is not positive definite ({info})")
        system = _UserSystem(
            weakref.ref(gram), row.indices.copy(), row.data.copy(), factor, past.T @ positive, past, positive
        )
        _LAST.system = system
        return system

    def _gram_reg(self) -> np.ndarray:
        """YtY + regularization * I in float64, computed once per fitted model (read-only)."""
        gram = self._gram64
        if gram is None:
            YtY = np.asarray(self._solo.YtY, dtype=np.float64)
            gram = YtY + self._params["regularization"] * np.eye(YtY.shape[0])
            gram.setflags(write=False)
            self._gram64 = gram
        return gram


class BPRRecommender(_FactorModel):
    """Bayesian personalised ranking (Rendle et al. 2009) on implicit's CPU implementation.

    implicit's BPR runs Hogwild SGD: with ``num_threads != 1`` results vary slightly between runs even
    with a fixed `random_state`. Users unseen at training time are folded in by regularised least squares
    on the fixed item factors (implicit's BPR has no fold-in), which `explain` decomposes exactly.

    Parameters
    ----------
    factors : int
    learning_rate : float
    regularization : float
    iterations : int
    random_state : int
    num_threads : int
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
        num_threads: int = 0,
        fold_in_regularization: float = 0.1,
    ) -> None:
        super().__init__(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
            fold_in_regularization=fold_in_regularization,
        )
        self._YtY: np.ndarray | None = None

    def _fit(self, user_items: csr_matrix) -> None:
        import implicit.cpu.bpr

        p = self._params
        model = implicit.cpu.bpr.BayesianPersonalizedRanking(
            factors=p["factors"],
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=p["iterations"],
            random_state=p["random_state"],
            num_threads=p["num_threads"],
        )
        model.fit(user_items, show_progress=False)
        self._set_state({"user_factors": model.user_factors, "item_factors": model.item_factors})

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        user_factors, item_factors = state["user_factors"], state["item_factors"]
        if user_factors.ndim != 2 or item_factors.ndim != 2 or user_factors.shape[1] != item_factors.shape[1]:
            raise ValueError("factor shapes do not match")
        self.user_factors = np.asarray(user_factors, dtype=np.float32)
        self.item_factors = np.asarray(item_factors, dtype=np.float32)
        self._YtY = None
        self._item_norms = None

    def _system(self, row: csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Normal equations of the fold-in: A x = b with A = Y_S^T C Y_S + reg I, b = Y_S^T C 1."""
        Y = self.item_factors[row.indices].astype(np.float64)
        c = row.data.astype(np.float64)
        k = self.item_factors.shape[1]
        A = (Y * c[:, None]).T @ Y + self._params["fold_in_regularization"] * np.eye(k)
        b = Y.T @ c
        return A, b

    def _fold_in(self, rows: csr_matrix) -> np.ndarray:
        out = np.zeros((rows.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        for r in range(rows.shape[0]):
            row = rows[r]
            if row.nnz:
                A, b = self._system(row)
                out[r] = scipy.linalg.solve(A, b, assume_a="pos")
        return out

    def explain(
        self, user_idx: int, user_items: csr_matrix, item_idx: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Past items driving the folded-in score: score_i = sum_j c_j y_i^T A^-1 y_j.

        Parameters
        ----------
        user_idx : int
            Unused: the explanation is computed from `user_items` (shape (1, n_items)).
        user_items : csr_matrix, shape (1, n_items)
        item_idx : int
        n : int

        Returns
        -------
        list of (past item_idx, contribution), largest first, positive only.
        """
        self._require_fitted()
        self._check_item(item_idx)
        pin_blas_threads()
        row = _first_row(check_user_items(user_items, n_items=self.n_items))
        if row.nnz == 0 or n <= 0:
            return []
        A, _ = self._system(row)
        weighted = scipy.linalg.solve(A, self.item_factors[item_idx].astype(np.float64), assume_a="pos")
        contrib = (self.item_factors[row.indices] @ weighted) * row.data
        return _top_contributions(row.indices, contrib, n)


def _first_row(m: csr_matrix) -> csr_matrix:
    return m if m.shape[0] == 1 else m[:1]


def _top_contributions(items: np.ndarray, contrib: np.ndarray, n: int) -> list[tuple[int, float]]:
    order = np.lexsort((items, -contrib))
    return [(int(items[o]), float(contrib[o])) for o in order[:n] if contrib[o] > 0]


def _top_contributions_arrays(
    items: np.ndarray, contrib: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `n` largest contributions of each column of `contrib` (shape (len(items), k)), `items`
    increasing: their items and values, shape (k, min(n, len(items))), largest first.

    A stable sort on the negated contributions breaks ties by position, that is by lower item id when
    `items` is sorted (a canonical CSR row), as `_top_contributions`' lexsort does.
    """
    top = min(n, items.size)
    if items.size > 256:
        # Only rows that can reach a column's top `n` need a stable sort: values >= the n-th largest.
        kth = -np.partition(-contrib, top - 1, axis=0)[top - 1]
        keep = np.flatnonzero((contrib >= kth).any(axis=1))
        items, contrib = items[keep], contrib[keep]
    order = np.argsort(-contrib, axis=0, kind="stable")[:top]
    return items[order].T, contrib[order, np.arange(contrib.shape[1])].T


def _top_contributions_many(items: np.ndarray, contrib: np.ndarray, n: int) -> list[list[tuple[int, float]]]:
    """`_top_contributions` for each column of `contrib` (shape (len(items), k)), `items` increasing."""
    if not items.size:
        return [[] for _ in range(contrib.shape[1])]
    ids, values = _top_contributions_arrays(items, contrib, n)
    return [
        [(i, v) for i, v in zip(col_ids, col_values, strict=True) if v > 0]
        for col_ids, col_values in zip(ids.tolist(), values.tolist(), strict=True)
    ]


class ItemItemRecommender(Recommender):
    """Item-item nearest neighbours from implicit: a user's score for item i is sum_j r_j S[j, i].

    Parameters
    ----------
    kind : {"bm25", "cosine"}
        Similarity: BM25-weighted or plain cosine co-occurrence.
    K : int
        Neighbours kept per item.
    K1, B : float
        BM25 parameters (ignored for cosine).
    num_threads : int
    """

    name = "item_item"

    def __init__(
        self,
        kind: Literal["bm25", "cosine"] = "bm25",
        K: int = 100,
        K1: float = 1.2,
        B: float = 0.75,
        num_threads: int = 0,
    ) -> None:
        if kind not in ("bm25", "cosine"):
            raise ValueError(f"kind must be 'bm25' or 'cosine', got {kind!r}")
        super().__init__(kind=kind, K=K, K1=K1, B=B, num_threads=num_threads)
        self.similarity: csr_matrix | None = None

    def _fit(self, user_items: csr_matrix) -> None:
        from implicit.nearest_neighbours import ItemItemRecommender as _Base
        from implicit.nearest_neighbours import bm25_weight, normalize

        p = self._params
        # Same weighting as implicit's BM25Recommender / CosineRecommender, but handed over as CSR: those
        # classes pass a COO matrix on, which makes implicit warn (ParameterWarning) on every fit.
        if p["kind"] == "bm25":
            weighted = bm25_weight(user_items.T, K1=p["K1"], B=p["B"]).T
        else:
            weighted = normalize(user_items.T).T
        model = _Base(K=p["K"], num_threads=p["num_threads"])
        model.fit(csr_matrix(weighted, dtype=np.float64), show_progress=False)
        sim = csr_matrix(model.similarity, dtype=np.float32)
        # implicit leaves trailing empty items out of the similarity matrix's shape.
        n = user_items.shape[1]
        sim.resize((n, n))
        self.similarity = sim

    def _sim(self) -> csr_matrix:
        if self.similarity is None:
            raise NotFittedError("ItemItemRecommender is not fitted")
        return self.similarity

    def _score_users(self, user_idxs: np.ndarray, user_items: csr_matrix, recalculate: bool) -> np.ndarray:
        return np.asarray((user_items @ self._sim()).toarray(), dtype=np.float32)

    def _similar_scores(self, item_idx: int) -> np.ndarray:
        return np.asarray(self._sim()[item_idx].toarray()).ravel()

    def recalculate_user(self, user_items_row: csr_matrix) -> np.ndarray:
        """The user's dense interaction weights, shape (n_items,): item-item models score from the row."""
        self._require_fitted()
        row = check_user_items(user_items_row, n_items=self.n_items, what="user_items_row")
        if row.shape[0] != 1:
            raise ValueError(f"user_items_row must have exactly one row, got {row.shape[0]}")
        return np.asarray(row.toarray()).ravel()

    def explain(
        self, user_idx: int, user_items: csr_matrix, item_idx: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Past items j with the largest r_j S[j, item_idx] (shape of `user_items`: (1, n_items))."""
        self._require_fitted()
        self._check_item(item_idx)
        row = _first_row(check_user_items(user_items, n_items=self.n_items))
        if row.nnz == 0 or n <= 0:
            return []
        column = np.asarray(self._sim()[:, [int(item_idx)]].toarray()).ravel()
        contrib = row.data * column[row.indices]
        return _top_contributions(row.indices, contrib, n)

    def _get_state(self) -> dict[str, np.ndarray]:
        sim = self._sim()
        return {
            "data": sim.data,
            "indices": sim.indices,
            "indptr": sim.indptr,
            "shape": np.asarray(sim.shape, np.int64),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        shape = tuple(int(x) for x in state["shape"])
        self.similarity = csr_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
