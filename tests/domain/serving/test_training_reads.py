"""Training's faster reads give what the plain reads gave: the rows, the matrix and the bestsellers prior.

Guards the speed work of issue 17 (plain nightly training <= 5 s on the full UCI file): interaction rows
are read from the driver's cursor, and the prior reads only the sales of its window.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from domain.customers.confidence import build_matrix
from domain.customers.interactions import InteractionRows, load_interactions, load_sales
from domain.customers.sources import read_order_lines
from domain.models import Event, Order, OrderLine
from domain.serving.evaluation import history_from_lines, training_rows
from domain.serving.served import HYBRID_POPULARITY_DAYS, decay_anchor, recent_popularity
from domain.serving.training import train_model
from tests.domain.serving.fixtures import (  # noqa: F401
    add_order,
    imported,
    imported_rows,
    sample_slice,
    settings,
    sorted_rows,
    stored_artifact,
)


def _orm_rows(session: Session) -> InteractionRows:
    """The interaction rows as the ORM reads them (SQLAlchemy rows, Python datetimes): the reference."""
    lines = session.execute(
        select(Order.customer_id, OrderLine.product_id, Order.kind, OrderLine.quantity, Order.ordered_at)
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.customer_id.is_not(None))
    ).all()
    events = session.execute(
        select(Event.customer_id, Event.product_id, Event.kind, Event.quantity, Event.occurred_at).where(
            and_(Event.customer_id.is_not(None), Event.product_id.is_not(None))
        )
    ).all()
    records = [tuple(r) for r in [*lines, *events]]
    kinds = np.array(["purchase" if r[2] == "sale" else r[2] for r in records], dtype="U8")
    return InteractionRows(
        np.array([r[0] for r in records], dtype=np.int64),
        np.array([r[1] for r in records], dtype=np.int64),
        kinds,
        np.array([r[3] for r in records], dtype=np.float64),
        np.array([r[4] for r in records], dtype="datetime64[s]"),
    )


def test_interaction_rows_from_the_cursor_equal_the_orm_rows(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    with sessions.begin() as session:
        fast = load_interactions(session)
        reference = _orm_rows(session)
    assert len(fast) == len(reference) > 10_000
    assert sorted_rows(fast) == sorted_rows(reference)
    # ... and, in the same order, the same matrix, cell for cell.
    fast_matrix, fast_users, fast_items = build_matrix(fast, settings.interactions, now=fast.latest)
    ref_matrix, ref_users, ref_items = build_matrix(reference, settings.interactions, now=reference.latest)
    assert fast_users == ref_users and fast_items == ref_items
    assert (fast_matrix != ref_matrix).nnz == 0 and fast_matrix.nnz == ref_matrix.nnz


#: sha256 of the default matrix of the bundled sample (indptr, indices, data, then the user and item ids),
#: as the code before the speed work (commit 643df72) built it from these rows: 695 x 3,240, 43,325 cells.
#: (Re-pinned when evaluation's rows began numbering customers and dating lines as the import does: the
#: old build_matrix, given the new rows, gives this same digest.)
SAMPLE_MATRIX_SHA256 = "89b78968a3ceb4c48ebfb30c28525988df5728ed6b8b120c5c167b566a3a579b"


def test_the_sample_matrix_is_the_one_built_before_the_speed_work() -> None:
    sample = Path(__file__).resolve().parents[3] / "data" / "online_retail_sample.csv.gz"
    rows = training_rows(history_from_lines(read_order_lines(sample, "online-retail").lines))[0]
    matrix, users, items = build_matrix(rows, load_settings(environ={}).interactions, now=rows.latest)
    digest = hashlib.sha256()
    for array in (matrix.indptr, matrix.indices, matrix.data, users.ids, items.ids):
        digest.update(np.ascontiguousarray(array).tobytes())
    assert (matrix.shape, matrix.nnz) == ((695, 3240), 43_325)
    assert digest.hexdigest() == SAMPLE_MATRIX_SHA256


def test_prior_from_the_window_equals_the_prior_from_every_sale(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    with sessions.begin() as session:
        rows = load_interactions(session)
        anchor = decay_anchor(rows, dt.datetime(2030, 1, 1))
        start = anchor - dt.timedelta(days=HYBRID_POPULARITY_DAYS)
        # Sales on and around the window's start, where seconds are cut: inside, on the edge, outside.
        for i, offset in enumerate((-1.0, -0.4, 0.0, 0.4, 0.6, 1.0, 1.5)):
            add_order(
                session, f"edge-{i}", ["22423"], order_id=f"EDGE-{i}", at=start + dt.timedelta(seconds=offset)
            )
        rows = load_interactions(session)
        _, _, items = build_matrix(rows, settings.interactions, now=anchor)
        every_sale = load_sales(session, until=anchor)
        window = load_sales(session, since=start, until=anchor)
    assert len(window) < len(every_sale) / 2
    full_prior = recent_popularity(every_sale, items, anchor)
    assert full_prior.sum() > 0
    np.testing.assert_array_equal(recent_popularity(window, items, anchor), full_prior)


def test_trained_prior_equals_the_prior_from_every_sale(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    with sessions.begin() as session:
        run = train_model(session, settings)
        assert run.status == "succeeded", run.error
        rows = load_interactions(session)
        anchor = dt.datetime.fromisoformat(run.params["anchor"])
        _, _, items = build_matrix(rows, settings.interactions, now=anchor)
        full_prior = recent_popularity(load_sales(session, until=anchor), items, anchor)
    model = stored_artifact(sessions, settings, run).model
    np.testing.assert_array_equal(model.popularity, full_prior)  # type: ignore[attr-defined]
