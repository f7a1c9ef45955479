"""Fixtures of the /v1 API tests: keys of every scope, a few catalog rows, two customers, a trained model."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.access import api_keys
from domain.catalog import products
from domain.customers.imports import import_orders
from domain.db import session_scope
from domain.models import Customer
from domain.serving.training import train_model
from tests.api.helpers import SHOP, most_active
from tests.conftest import SAMPLE
from tests.redis_server import redis_server  # noqa: F401  (a fixture of these tests)


@pytest.fixture
def keys(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One secret per scope; the widget key is bound to https://shop.example."""
    out = {}
    with session_scope(app.extensions["giftrec"].sessions) as session:
        for scope in ("server", "email", "admin"):
            out[scope] = api_keys.create_key(session, scope, name=f"test {scope}")[1]
        out["widget"] = api_keys.create_key(session, "widget", origins=[SHOP])[1]
    return out


@pytest.fixture
def shop(app) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Three products and two customers, written through the domain like the API would."""
    with session_scope(app.extensions["giftrec"].sessions) as session:
        for sku, title, price in (
            ("MUG-1", "Tea mug", "8.50"),
            ("VASE-2", "Glass vase", "32.00"),
            ("SCARF-3", "Silk scarf", "120.00"),
        ):
            products.upsert_product(
                session, sku, products.ProductInput(title=title, price=Decimal(price)), actor="test"
            )
        session.add_all(
            [
                Customer(external_id="C1", name="Ann", email="ann@example.com"),
                Customer(external_id="C2", name="Bob", email="bob@example.com"),
            ]
        )
    return {"skus": ["MUG-1", "VASE-2", "SCARF-3"], "customers": ["C1", "C2"]}


@pytest.fixture
def trained(app):  # type: ignore[no-untyped-def]
    """The bundled UCI sample imported and a model trained on it, as `make run` does."""
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as session:
        import_orders(session, SAMPLE, "online-retail", instance_dir=ctx.settings.server.instance_dir)
    with session_scope(ctx.sessions) as session:
        run = train_model(session, ctx.settings)
        assert run.status == "succeeded", run.error
    return most_active(ctx.sessions, 1)[0]
