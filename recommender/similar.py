"""Item-to-item neighbours for "similar items": cosine over co-occurrence or over a model's item factors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from scipy.sparse import csr_matrix

from recommender.base import ArtifactError, NotFittedError, Recommender, check_user_items, top_k
from recommender.threads import pin_blas_threads

__all__ = ["SimilarItems"]


class SimilarItems:
    """Nearest items to an anchor item, never the anchor itself.

    Build it with `fit` (cosine similarity of item columns of ``user_items``, keeping the `K` nearest
    per item, via implicit) or `from_factors` / `from_model` (cosine of latent item factors).

    Parameters
    ----------
    K : int
        Neighbours kept per item for the co-occurrence variant.
    num_threads : int
        implicit's threads for `fit` (0 = all cores).
    """

    def __init__(self, K: int = 50, num_threads: int = 0) -> None:
        self.K = K
        self.num_threads = num_threads
        self._similarity: csr_matrix | None = None
        self._unit: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        """Number of items."""
        if self._similarity is not None:
            return int(self._similarity.shape[0])
        if self._unit is not None:
            return int(self._unit.shape[0])
        raise NotFittedError("SimilarItems is not fitted")

    @property
    def kind(self) -> str:
        """``"cooccurrence"`` or ``"factors"``."""
        self.n_items  # noqa: B018 - raises when unfitted
        return "factors" if self._unit is not None else "cooccurrence"

    def fit(self, user_items: csr_matrix) -> Self:
        """Cosine co-occurrence from ``user_items``, shape (n_users, n_items), users as rows."""
        from implicit.nearest_neighbours import ItemItemRecommender, normalize

        pin_blas_threads()
        m = check_user_items(user_items)
        # implicit's CosineRecommender, with the normalised matrix passed as CSR (it warns on COO).
        model = ItemItemRecommender(K=self.K + 1, num_threads=self.num_threads)
        model.fit(csr_matrix(normalize(m.T).T, dtype=np.float64), show_progress=False)
        sim = csr_matrix(model.similarity, dtype=np.float32)
        sim.resize((m.shape[1], m.shape[1]))
        sim.setdiag(0)
        sim.eliminate_zeros()
        self._similarity, self._unit = sim, None
        return self

    @classmethod
    def from_factors(cls, item_factors: np.ndarray) -> Self:
        """Cosine over latent item factors, shape (n_items, n_factors)."""
        factors = np.asarray(item_factors, dtype=np.float32)
        if factors.ndim != 2:
            raise ValueError(f"item_factors must be 2-D (n_items, n_factors), got shape {factors.shape}")
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        out = cls()
        out._unit = np.divide(factors, norms, out=np.zeros_like(factors), where=norms > 0)
        return out

    @classmethod
    def from_model(cls, model: Recommender) -> Self:
        """Use a fitted model's item factors (ALS, BPR) or item-item similarity matrix."""
        factors = getattr(model, "item_factors", None)
        if factors is not None:
            return cls.from_factors(factors)
        similarity = getattr(model, "similarity", None)
        if similarity is not None:
            out = cls()
            sim = csr_matrix(similarity, dtype=np.float32)
            sim.setdiag(0)
            sim.eliminate_zeros()
            out._similarity = sim
            return out
        raise TypeError(f"{type(model).__name__} has neither item factors nor a similarity matrix")

    def scores(self, item_idx: int) -> np.ndarray:
        """Similarity of every item to `item_idx`, shape (n_items,) float32 (the anchor itself included)."""
        n = self.n_items
        if not 0 <= int(item_idx) < n:
            raise IndexError(f"item_idx {item_idx} out of range [0, {n})")
        if self._unit is not None:
            return self._unit @ self._unit[int(item_idx)]
        assert self._similarity is not None
        return np.asarray(self._similarity[int(item_idx)].toarray(), dtype=np.float32).ravel()

    def similar(
        self, item_idx: int, n: int = 10, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `n` items most similar to `item_idx`, excluding itself.

        Parameters
        ----------
        item_idx : int
        n : int
        allowed : ndarray bool, shape (n_items,), optional

        Returns
        -------
        (item_ids int32, scores float32), best first; only items with a positive similarity.
        """
        s = self.scores(item_idx).copy()
        s[s <= 0] = -np.inf
        s[int(item_idx)] = -np.inf
        if allowed is not None:
            s[~self._mask(allowed)] = -np.inf
        return top_k(s, n)

    def similar_to_many(
        self,
        item_idxs: Sequence[int] | np.ndarray,
        n: int = 10,
        *,
        allowed: np.ndarray | None = None,
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items most similar to a basket (weighted sum of similarities), excluding the basket items."""
        idxs = np.asarray(item_idxs, dtype=np.int64).reshape(-1)
        w = np.ones(idxs.size) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        total = np.zeros(self.n_items, dtype=np.float64)
        for i, wi in zip(idxs.tolist(), w.tolist(), strict=True):
            total += wi * self.scores(i)
        total[total <= 0] = -np.inf
        total[idxs] = -np.inf
        if allowed is not None:
            total[~self._mask(allowed)] = -np.inf
        return top_k(total, n)

    def _mask(self, allowed: np.ndarray) -> np.ndarray:
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self.n_items,):
            raise ValueError(f"allowed must be a bool array of shape ({self.n_items},)")
        return mask

    def save(self, path: Path) -> None:
        """Write to one ``.npz`` file."""
        arrays: dict[str, Any] = {"K": np.int64(self.K)}
        if self._unit is not None:
            arrays["unit"] = self._unit
        elif self._similarity is not None:
            sim = self._similarity
            arrays.update(data=sim.data, indices=sim.indices, indptr=sim.indptr, shape=np.asarray(sim.shape))
        else:
            raise NotFittedError("SimilarItems is not fitted")
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a file written by `save`; `ArtifactError` if it is missing or corrupt."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                out = cls(K=int(npz["K"]))
                if "unit" in npz.files:
                    out._unit = npz["unit"]
                else:
                    shape = tuple(int(x) for x in npz["shape"])
                    out._similarity = csr_matrix((npz["data"], npz["indices"], npz["indptr"]), shape=shape)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ArtifactError(f"similar-items file unreadable: {path}: {exc}") from exc
        return out
