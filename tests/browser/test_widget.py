"""widget.js in a real headless Chromium against the running app: carousel, view and click events, failure."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from domain.access import api_keys
from domain.customers.imports import import_orders
from domain.db import session_scope
from domain.models import Event
from domain.serving.training import train_model
from tests.api.helpers import signed
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import SAMPLE

pytestmark = pytest.mark.browser


def _events(app, kind: str) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.extensions["giftrec"].sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def _wait_for(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_the_widget_shows_picks_and_records_views_and_clicks(app, live_server, page):
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as session:
        import_orders(session, SAMPLE, "online-retail", instance_dir=ctx.settings.server.instance_dir)
    with session_scope(ctx.sessions) as session:
        assert train_model(session, ctx.settings).status == "succeeded"
    with session_scope(ctx.sessions) as session:
        _, key = api_keys.create_key(session, "widget", origins=[live_server], name="browser test")
    customer = "12748"  # a regular of the sample

    expected = app.test_client().get(
        f"/v1/customers/{customer}/recommendations?n=6",
        headers={"X-Api-Key": key, "Origin": live_server, **signed(app, key, customer)},
    )
    assert expected.status_code == 200, expected.json
    expected_skus = [item["sku"] for item in expected.json["items"]]

    page.goto(f"{live_server}/demo?key={key}&customer={customer}&count=6")
    page.wait_for_selector("#picks[data-giftrec-state=ready] .giftrec-card")
    cards = page.locator("#picks .giftrec-card")
    assert [cards.nth(i).get_attribute("data-sku") for i in range(cards.count())] == expected_skus
    first = expected.json["items"][0]
    assert page.locator("#picks .giftrec-card .giftrec-name").first.inner_text() == first["title"]
    assert page.locator("#picks .giftrec-card .giftrec-price").first.inner_text().startswith("£")
    page.wait_for_selector("#picks[data-giftrec-viewed=sent]")
    page.wait_for_selector("#bestsellers[data-giftrec-state=ready]")
    page.screenshot(path=str(SCREENSHOTS / "widget_demo.png"), full_page=True)

    views = _wait_for(lambda: [e for e in _events(app, "view") if e.customer_id is not None])
    assert len(views) == 6 and all(e.source == "widget" and e.recommendation_id for e in views)

    clicked = cards.nth(1)
    clicked_sku = clicked.get_attribute("data-sku")
    clicked.click()
    clicks = _wait_for(lambda: _events(app, "click"))
    assert len(clicks) == 1
    click = clicks[0]
    with ctx.sessions() as session:
        from domain.models import Product

        assert session.get(Product, click.product_id).sku == clicked_sku
    assert (
        click.recommendation_id
        and click.recommendation_id.split(".")[0] == (views[0].recommendation_id.split(".")[0])
    )


def test_a_customer_the_api_does_not_know_yet_sees_bestsellers(app, live_server, page):
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as session:
        import_orders(session, SAMPLE, "online-retail", instance_dir=ctx.settings.server.instance_dir)
    with session_scope(ctx.sessions) as session:
        _, key = api_keys.create_key(session, "widget", origins=[live_server], name="browser test")
    headers = {"X-Api-Key": key, "Origin": live_server}
    client = app.test_client()
    unknown = client.get(
        "/v1/customers/SIGNED-UP-A-MINUTE-AGO/recommendations?n=4",
        headers={**headers, **signed(app, key, "SIGNED-UP-A-MINUTE-AGO")},
    )
    assert unknown.status_code == 404
    expected = [item["sku"] for item in client.get("/v1/bestsellers?n=4", headers=headers).json["items"]]

    page.goto(f"{live_server}/demo?key={key}&customer=SIGNED-UP-A-MINUTE-AGO&count=4")
    page.wait_for_selector("#picks[data-giftrec-state=ready] .giftrec-card")
    cards = page.locator("#picks .giftrec-card")
    assert [cards.nth(i).get_attribute("data-sku") for i in range(cards.count())] == expected
    assert "Bestsellers" in page.locator("#picks").inner_text()
    page.wait_for_selector("#picks[data-giftrec-viewed=sent]")
    views = _wait_for(lambda: [e for e in _events(app, "view") if e.product_id is not None])
    assert views and all(e.customer_id is None and e.anonymous_id for e in views)


def test_the_widget_renders_nothing_on_error(app, live_server, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/demo?key=gr_00000000.not-a-real-key-at-all&customer=nobody")
    page.wait_for_selector("#picks[data-giftrec-state=error]", state="attached")
    page.wait_for_selector("#bestsellers[data-giftrec-state=error]", state="attached")
    assert page.locator(".giftrec").count() == 0
    assert page.locator("#picks").is_hidden()
    assert errors == []
