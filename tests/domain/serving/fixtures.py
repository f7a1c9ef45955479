"""Fixtures of the training, model-store and recommendation tests: a real-data slice, small models."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import domain.customers.confidence as confidence
import domain.serving.data as serving_data
from config import Settings, load_settings
from domain.catalog.snapshot import CatalogSnapshot
from domain.customers.imports import import_orders
from domain.customers.interactions import InteractionRows, load_interactions
from domain.db import Base
from domain.models import Customer, Event, ModelArtifactChunk, ModelRun, Order, OrderLine, Product
from domain.serving.model_runs import load_run_artifact
from domain.serving.model_store import ModelStore
from domain.serving.recommendations import Serving
from domain.serving.training import train_model
from recommender.artifacts import Artifact
from tests.conftest import SAMPLE

#: Every CUSTOMER_STRIDE-th customer of the bundled sample (sorted ids), with all their rows, plus guests.
CUSTOMER_STRIDE = 5


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def sample_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real rows of the bundled sample: a fifth of its customers and the guest invoices, as a gzip CSV."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    col = header.index("CustomerID")
    customers = sorted({r[col] for r in rows if r[col]})
    keep = set(customers[::CUSTOMER_STRIDE])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(r for r in rows if not r[col] or r[col] in keep)
    path = tmp_path_factory.mktemp("sample") / "online_retail_slice.csv.gz"
    path.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), mtime=0))
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Small, single-threaded, seeded models: quick to train and deterministic."""
    return load_settings(
        environ={},
        database={"url": database_url},
        server={"instance_dir": str(tmp_path / "instance"), "secret_key": "test-secret"},
        model={
            "artifact_dir": str(tmp_path / "models"),
            "num_threads": 1,
            "factors": 8,
            "iterations": 4,
            "reload_interval": 30.0,
            "keep_runs": 3,
        },
    )


#: Tables the import fills, in dependency order.
IMPORTED_TABLES = ("import_runs", "customers", "products", "orders", "order_lines")


@pytest.fixture(scope="session")
def imported_rows(
    engine: Engine, sample_slice: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list]:
    """The slice imported once through domain.customers.imports; the resulting rows, for each test
    to restore."""
    factory = sessionmaker(bind=engine)
    with factory.begin() as session:
        import_orders(session, sample_slice, "online-retail", instance_dir=tmp_path_factory.mktemp("rejects"))
    rows: dict[str, list] = {}
    with engine.begin() as conn:
        for name in IMPORTED_TABLES:
            rows[name] = [dict(r) for r in conn.execute(select(Base.metadata.tables[name])).mappings()]
        for name in reversed(IMPORTED_TABLES):
            conn.execute(delete(Base.metadata.tables[name]))
    return rows


@pytest.fixture
def imported(sessions: sessionmaker[Session], engine: Engine, imported_rows: dict[str, list]) -> None:
    """The imported slice, restored row for row (much faster than importing the file in every test)."""
    with engine.begin() as conn:
        for name in IMPORTED_TABLES:
            conn.execute(insert(Base.metadata.tables[name]), imported_rows[name])
        if conn.dialect.name == "postgresql":  # explicit ids leave the sequences behind
            for name in IMPORTED_TABLES:
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"
                )
                # Statistics now, not whenever autovacuum gets to it: planned on empty-table estimates, one
                # join over these rows once ran for over 20 minutes in CI.
                conn.exec_driver_sql(f"ANALYZE {name}")


@pytest.fixture
def trained(sessions: sessionmaker[Session], settings: Settings, imported: None) -> None:
    """The default model trained on the imported sample."""
    with sessions.begin() as session:
        run = train_model(session, settings)
    assert run.status == "succeeded", run.error


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def serving(settings: Settings, sessions: sessionmaker[Session], clock: FakeClock) -> Iterator[Serving]:
    """A model store and catalog that check inline (no thread), on the fake clock."""
    store = ModelStore(settings, sessions, background=False, clock=clock)
    yield Serving(settings, store, CatalogSnapshot(sessions, clock=clock))
    store.wait()


def add_order(
    session: Session,
    customer_external_id: str,
    skus: list[str],
    *,
    order_id: str,
    at: dt.datetime = dt.datetime(2011, 12, 10, 12, 0),
    kind: str = "sale",
    source: str = "api",
) -> Order:
    """A one-off order (builder): the customer is created when missing."""
    customer = session.scalars(select(Customer).where(Customer.external_id == customer_external_id)).first()
    if customer is None:
        customer = Customer(external_id=customer_external_id)
        session.add(customer)
        session.flush()
    order = Order(external_id=order_id, customer_id=customer.id, kind=kind, ordered_at=at, source=source)
    for i, sku in enumerate(skus):
        product = session.scalars(select(Product).where(Product.sku == sku)).one()
        order.lines.append(OrderLine(line_no=i + 1, product_id=product.id, quantity=1, unit_price=Decimal(1)))
    session.add(order)
    session.flush()
    return order


def bought_skus(session: Session, customer_external_id: str) -> set[str]:
    """The SKUs the customer bought (sale orders)."""
    return set(
        session.scalars(
            select(Product.sku)
            .join(OrderLine, OrderLine.product_id == Product.id)
            .join(Order, Order.id == OrderLine.order_id)
            .join(Customer, Customer.id == Order.customer_id)
            .where(Customer.external_id == customer_external_id, Order.kind == "sale")
        )
    )


def stored_artifact(sessions: sessionmaker[Session], settings: Settings, run: ModelRun) -> Artifact:
    """The run's artifact as serving loads it (from the database)."""
    with sessions() as session:
        return load_run_artifact(session, settings, run)


def damage_stored_file(
    sessions: sessionmaker[Session], run: ModelRun, path: str, *, truncate: bool = False, rename: str = ""
) -> None:
    """Damage one stored file of a run's artifact: cut its first piece to 100 bytes, rename or delete it."""
    where = (ModelArtifactChunk.version == run.version, ModelArtifactChunk.path == path)
    with sessions.begin() as session:
        chunks = session.scalars(select(ModelArtifactChunk).where(*where)).all()
        assert chunks, f"{path} is not stored for {run.version}"
        if truncate:
            chunks[0].data = chunks[0].data[:100]
        elif rename:
            session.execute(update(ModelArtifactChunk).where(*where).values(path=rename))
        else:
            session.execute(delete(ModelArtifactChunk).where(*where))


def add_events(sessions: sessionmaker[Session], every: int = 2) -> None:
    """Storefront events for every ``every``-th customer with orders: views, carts, clicks and purchase
    events on a few products they bought (so that a cell sums up to four kinds, in an order the paths must
    share) and on others, over the year before their last order. Real customers, so each row mixes kinds,
    returns and decay."""
    rng = np.random.default_rng(7)
    kinds = ["view", "cart", "click", "purchase"]
    with sessions.begin() as session:
        lines = session.execute(select(OrderLine.product_id)).scalars().all()
        products = np.unique(np.asarray(lines, dtype=np.int64))
        rows = load_interactions(session)
        for customer_id in np.unique(rows.customer_ids)[::every]:
            mine = rows.customer_ids == customer_id
            last = rows.timestamps[mine].max().astype(dt.datetime)
            chosen = [*rng.choice(rows.product_ids[mine], size=3), *rng.choice(products, size=2)]
            for product_id in chosen:
                for kind in kinds:
                    for _ in range(int(rng.integers(0, 3))):
                        session.add(
                            Event(
                                customer_id=int(customer_id),
                                product_id=int(product_id),
                                kind=kind,
                                quantity=int(rng.integers(1, 4)),
                                occurred_at=last - dt.timedelta(days=float(rng.uniform(0, 365))),
                                source="api",
                            )
                        )


def take_path(monkeypatch: pytest.MonkeyPatch, few: bool) -> None:
    """Every matrix on the few-rows path (numpy), or every one on the general path (scipy), whatever its
    size: the reference."""
    limit = 10**9 if few else -1
    monkeypatch.setattr(confidence, "FEW_ROWS", limit)
    monkeypatch.setattr(serving_data, "FEW_ROWS", limit)


def assert_same(few: csr_matrix, general: csr_matrix) -> None:
    """The same matrix to the bit: shape, index and value types, every index and every float's bits."""
    assert few.shape == general.shape
    assert (few.dtype, few.indices.dtype, few.indptr.dtype) == (
        general.dtype,
        general.indices.dtype,
        general.indptr.dtype,
    )
    np.testing.assert_array_equal(few.indptr, general.indptr)
    np.testing.assert_array_equal(few.indices, general.indices)
    np.testing.assert_array_equal(few.data.view(np.uint32), general.data.view(np.uint32))


def sorted_rows(rows: InteractionRows) -> list[tuple[object, ...]]:
    """The rows as tuples, sorted: equal for the same rows read in any order."""
    return sorted(
        zip(
            rows.customer_ids.tolist(),
            rows.product_ids.tolist(),
            rows.kinds.tolist(),
            rows.quantities.tolist(),
            rows.timestamps.tolist(),
            strict=True,
        )
    )
