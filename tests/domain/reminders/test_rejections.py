"""Issue 13, "edits feed back": a pick a manager removed or replaced is never offered again to that recipient.

Regression: planning, the review page's alternatives and catalog search, and a manual add offered a
product again to the recipient it had just been taken out for (only gifts given and orders were blocked).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from domain.customers.rejections import OWN, load_rejections
from domain.errors import InvalidInput
from domain.models import Product
from domain.reminders.selections import add_pick, remove_pick, swap_pick
from domain.review.selection import alternatives, search_catalog
from tests.domain.reminders import test_selections as base
from tests.domain.reminders.test_selections import (
    NOW,
    customer,
    date,
    manager,
    plan_selections,
    recipient,
    selections,
)

sample_db, db = base.sample_db, base.db  # the sample imported once for the module, rolled back per test

WORDS = {"interests": ["heart", "candle", "christmas"]}


@pytest.fixture
def edited(db, settings):
    """A recipient's selection in which a manager removed one pick and replaced another."""
    c = customer(db)
    wife, sister = recipient(db, c, **WORDS), recipient(db, c, name="Olga", **WORDS)
    date(db, wife, 12, 8)
    plan_selections(db, settings, now=NOW)
    (first,) = selections(db)
    am = manager(db)
    tier1 = sorted((p for p in first.picks if p.tier == 1), key=lambda p: p.position)
    removed, replaced = tier1[0].product_id, tier1[1].product_id
    remove_pick(db, first.id, tier1[0].id, am)
    taken = {p.product_id for p in first.picks}
    free = next(
        p.sku
        for p in db.query(Product).filter(Product.is_active, Product.in_stock).order_by(Product.id)
        if p.id not in taken and p.id != removed
    )
    swap_pick(db, first.id, tier1[1].id, free, am)
    return c, wife, sister, {removed, replaced}, am


def test_rejections_are_read_back_per_recipient(db, edited):
    c, wife, sister, rejected, _ = edited
    found = load_rejections(db)
    assert set(found.products_for(c.id, wife.id)) == rejected
    assert found.products_for(c.id, sister.id) == []
    assert found.products_for(c.id, None) == []
    assert set(found.by_key()[(c.id, wife.id)]) == rejected
    assert len(load_rejections(db, customer_ids=[c.id + 10**6])) == 0
    assert OWN == -1


def _next_dates(db, settings, wife, sister):
    """The wife's next date and her sister's, planned: (the wife's selection, the sister's)."""
    date(db, wife, 12, 9, kind="name_day")
    date(db, sister, 12, 9)
    plan_selections(db, settings, now=NOW + dt.timedelta(days=1))
    (again,) = selections(db, recipient_id=wife.id, occasion_on=dt.date(2011, 12, 9))
    (other,) = selections(db, recipient_id=sister.id)
    return again, other


def test_planning_never_offers_a_rejected_pick_to_that_recipient_again(db, settings, edited):
    c, wife, sister, rejected, _ = edited
    again, other = _next_dates(db, settings, wife, sister)
    assert again.picks and not rejected & {p.product_id for p in again.picks}
    # the same customer and words without the edits still get them: the test can fail
    assert rejected & {p.product_id for p in other.picks}


def test_review_alternatives_search_and_manual_add_refuse_a_rejected_pick(db, settings, edited):
    c, wife, sister, rejected, am = edited
    again, other = _next_dates(db, settings, wife, sister)
    offered = {card.product_id for tier in (1, 2, 3) for card in alternatives(db, settings, again, tier, NOW)}
    offered_other = {
        card.product_id for tier in (1, 2, 3) for card in alternatives(db, settings, other, tier, NOW)
    }
    assert not rejected & offered
    products = {p.id: p for p in db.query(Product).filter(Product.id.in_(rejected))}
    for pid, product in products.items():
        assert pid not in {card.product_id for card in search_catalog(db, again, product.sku)}
        assert pid in {card.product_id for card in search_catalog(db, other, product.sku)} or pid in {
            p.product_id for p in other.picks
        }
        with pytest.raises(InvalidInput) as err:
            add_pick(db, again.id, product.sku, am)
        assert err.value.field == "product_sku" and "removed" in err.value.message
    assert offered_other or other.picks  # the sister's slots are offered as before


def test_trigger_emails_never_offer_what_was_taken_out_of_the_customers_own_selection(db, settings):
    from domain.lifecycle.trigger_drafting import _picks
    from domain.lifecycle.triggers import Firing
    from domain.serving.candidates import Candidates, Catalog

    catalog = Catalog.load(db)
    new = [int(p) for p in catalog.product_ids[catalog.available][:5]]
    scores = np.zeros((1, catalog.n_items), dtype=np.float32)
    scores[0, catalog.index_of(new)] = np.arange(5, 0, -1)  # the first new product ranks first
    cands = Candidates(scores=scores, sources=np.zeros((1, catalog.n_items), dtype=np.int8))
    firing = Firing(1, "new_arrivals", "on:2011-12-01", tuple(new))
    before, _ = _picks(settings, catalog, cands, 0, firing)
    after, _ = _picks(settings, catalog, cands, 0, firing, rejected=[new[0]])
    assert before[0]["product_id"] == new[0]
    assert new[0] not in {p["product_id"] for p in after} and after
