"""The candidates' blend: the weighted sum and the winning part, as the stacked array gave them."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import CountVectorizer

from domain.serving.candidates import WEIGHTS, BlendedCandidates, CandidateRows, Catalog, _blend
from recommender.curation import SOURCES


def test_blend_gives_the_stacked_sum_and_argmax_to_the_bit():
    """`_blend` replaced a (parts, rows, items) array with a sum, argmax and max over it (three times the
    memory passes: 22 of the 28 s curation took for 37,000 selections); ties, absent and zero parts
    must come out the same."""
    rng = np.random.default_rng(7)
    rows, items = 5, 40
    cf = rng.random((rows, items)).astype(np.float32)
    cf[rng.random((rows, items)) < 0.6] = 0.0
    cf[0] = 0.0  # a customer the model does not know
    seasonal = np.round(rng.random((rows, items)), 1).astype(np.float32)  # many ties
    bestseller = np.round(rng.random(items), 1).astype(np.float32)[None, :]
    bestseller[0, :5] = 0.0
    for profile in (None, np.zeros((rows, items), dtype=np.float32)):
        parts = [cf, profile, seasonal, bestseller]
        stacked = np.zeros((len(SOURCES), rows, items), dtype=np.float32)
        for k, part in enumerate(parts):
            if part is not None:
                stacked[k] = part
        weighted = stacked * np.array([WEIGHTS[s] for s in SOURCES], dtype=np.float32)[:, None, None]
        want_sources = weighted.argmax(axis=0).astype(np.int8)
        want_sources[weighted.max(axis=0) <= 0] = SOURCES.index("bestseller")
        scores, sources = _blend(parts, (rows, items))
        assert np.array_equal(scores, weighted.sum(axis=0))
        assert np.array_equal(sources, want_sources)
        assert sources.dtype == np.int8


def test_scoring_a_few_items_gives_their_columns_of_the_whole_catalogue_to_the_bit():
    """A trigger offers a few items (new arrivals, one category): `CandidateRows.items` scores those only,
    each part still scaled by its best over the whole catalogue, so every score and source is the one
    the whole catalogue gives (here the collaborative best of each customer is left out)."""
    n = 12
    catalog = Catalog(
        product_ids=np.arange(101, 101 + n, dtype=np.int64),
        skus=[f"S{i}" for i in range(n)],
        prices=np.linspace(10, 120, n),
        categories=np.arange(n, dtype=np.int64) % 3,
        category_names=["bags", "scarves", "tea"],
        is_active=np.ones(n, dtype=bool),
        in_stock=np.ones(n, dtype=bool),
        delivery_days=np.full(n, 3, dtype=np.int64),
        texts=["leather bag"] + [["red bag", "silk scarf", "green tea"][i % 3] for i in range(1, n)],
    )

    def known(customer_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Three picks per known customer (the first the best), -1 / -inf for the unknown one."""
        pids = np.array([[101, 105, 110], [112, 104, -1], [-1, -1, -1]], dtype=np.int64)
        scores = np.array([[0.9, 0.45, -0.2], [2.0, 0.5, -np.inf], [-np.inf] * 3], dtype=np.float32)
        return pids[: customer_ids.size], scores[: customer_ids.size]

    vectorizer = CountVectorizer(binary=True)
    blended = BlendedCandidates(
        now=dt.datetime(2011, 12, 1),
        bestseller=np.round(np.linspace(0, 1, n), 1).astype(np.float32),
        vectorizer=vectorizer,
        item_terms=csr_matrix(vectorizer.fit_transform(catalog.texts), dtype=np.float32),
        collaborative=known,
        season_items=np.array([0, 4, 4, 9], dtype=np.int64),
        season_days=np.full(4, dt.date(2010, 11, 20).toordinal(), dtype=np.int64),
        season_units=np.array([1.0, 2.0, 3.0, 1.0]),
    )
    rows = CandidateRows(
        customer_ids=np.array([1, 2, 3], dtype=np.int64),
        recipient_ids=np.full(3, -1, dtype=np.int64),
        profiles=[["leather", "bag"], [], ["tea", "scarf"]],
        occasion_codes=["new_arrivals"] * 3,
        occasion_on=[dt.date(2011, 12, 1)] * 3,
    )
    whole = blended(catalog, rows)
    items = np.array([3, 4, 9], dtype=np.int64)  # not the best of each part (positions 0 and 11)
    few = blended(catalog, dataclasses.replace(rows, items=items))
    assert whole.items is None and few.items is items
    assert np.array_equal(few.scores, whole.scores[:, items])
    assert np.array_equal(few.sources, whole.sources[:, items])
    assert whole.scores[:, items].any() and len(set(whole.sources[:, items].ravel().tolist())) > 1
