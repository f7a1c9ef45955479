"""Signed links through the web app: click, stop a date, unsubscribe; forged tokens are rejected."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select

from domain.db import session_scope
from domain.messaging.signing import InvalidLink, LinkSigner
from domain.models import Customer, Event, GiftSelection, ImportantDate, OutboundEmail
from domain.reminders.queueing import queue_reminders
from tests.delivery_fixtures import NOW, make_selection

BASE = "http://127.0.0.1:5000"


@pytest.fixture
def queued(app, sessions):
    """A sent selection and a queued reminder for another date of the same customer."""
    settings = app.extensions["giftrec"].settings
    with session_scope(sessions) as s:
        sent = make_selection(s, status="sent")
        other = make_selection(s, s.get(Customer, sent.customer_id), recipient_name="Mum")
        queue_reminders(s, settings, NOW)
        return {
            "signer": LinkSigner.from_settings(settings),
            "customer_id": sent.customer_id,
            "sent": sent.id,
            "other": other.id,
            "product_id": sent.picks[0].product_id,
            "date_id": other.important_date_id,
            "occasion_key": other.occasion_key,
        }


def _count(sessions, model):
    with session_scope(sessions) as s:
        return s.scalar(select(func.count()).select_from(model))


def _click_path(q):
    signer = q["signer"]
    url = signer.click_url(customer_id=q["customer_id"], selection_id=q["sent"], product_id=q["product_id"])
    return url.removeprefix(BASE)


def test_click_records_an_event_and_redirects_to_the_product(client, sessions, queued):
    resp = client.get(_click_path(queued))
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("https://shop.example.com/p/")
    with session_scope(sessions) as s:
        [event] = s.scalars(select(Event))
        assert (event.kind, event.source, event.customer_id, event.product_id) == (
            "click",
            "email",
            queued["customer_id"],
            queued["product_id"],
        )
        assert event.recommendation_id == f"selection:{queued['sent']}"
        assert s.get(GiftSelection, queued["sent"]).status == "clicked"


def _tamper(token: str) -> str:
    payload, _, signature = token.rpartition(".")
    return payload.replace("e", "f", 1) + "." + signature


def test_forged_and_altered_tokens_are_rejected_and_record_nothing(client, sessions, queued, settings):
    good = _click_path(queued).removeprefix("/r/")
    forged = URLSafeSerializer("not-our-secret", salt="giftrec.link.click").dumps(
        {"c": queued["customer_id"], "s": queued["sent"], "p": queued["product_id"]}
    )
    stop_url = queued["signer"].stop_url(customer_id=queued["customer_id"], occasion_key="x")
    stop_token = stop_url.rsplit("/", 1)[1]
    for token in (forged, _tamper(good), good[:-2], stop_token, "garbage"):
        assert client.get(f"/r/{token}").status_code == 404, token
    assert _count(sessions, Event) == 0
    with pytest.raises(InvalidLink):
        queued["signer"].load("unsubscribe", good)


def test_stop_link_asks_then_stops_that_date_for_good(client, sessions, queued):
    path = queued["signer"].stop_url(customer_id=queued["customer_id"], occasion_key=queued["occasion_key"])
    path = path.removeprefix(BASE)
    page = client.get(path)
    assert page.status_code == 200 and b"Stop this reminder" in page.data and b"Mum" in page.data
    with session_scope(sessions) as s:
        assert not s.get(ImportantDate, queued["date_id"]).is_stopped  # a GET (link scanner) does nothing
    done = client.post(path, data={"reason": "recipient passed away"})
    assert done.status_code == 200 and b"will not remind you" in done.data
    with session_scope(sessions) as s:
        date = s.get(ImportantDate, queued["date_id"])
        assert (date.is_stopped, date.stop_reason) == (True, "recipient passed away")
        assert date.stopped_at is not None
        email = s.scalar(select(OutboundEmail).where(OutboundEmail.selection_id == queued["other"]))
        assert (email.status, email.last_error) == ("cancelled", "reminder stopped")
        assert s.get(GiftSelection, queued["other"]).status == "skipped"
    assert client.post(_tamper_path(path)).status_code == 404


def _tamper_path(path: str) -> str:
    head, token = path.rsplit("/", 1)
    return f"{head}/{_tamper(token)}"


def test_unsubscribe_stops_all_marketing(client, sessions, queued, app):
    path = queued["signer"].unsubscribe_url(customer_id=queued["customer_id"]).removeprefix(BASE)
    assert client.post(_tamper_path(path)).status_code == 404
    with session_scope(sessions) as s:
        assert s.get(Customer, queued["customer_id"]).unsubscribed_at is None
    assert b"Unsubscribe" in client.get(path).data
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with session_scope(sessions) as s:
        assert s.get(Customer, queued["customer_id"]).unsubscribed_at is not None
        assert set(s.scalars(select(OutboundEmail.status))) == {"cancelled"}
        new = make_selection(s, s.get(Customer, queued["customer_id"]), recipient_name="Bob")
        report = queue_reminders(s, app.extensions["giftrec"].settings, NOW)
        assert report.skipped == {new.id: "customer unsubscribed"}


def test_links_in_an_erased_customers_old_emails_record_nothing(client, sessions, queued):
    """Regression: click links in emails sent before an erasure still wrote events for the customer."""
    from domain.customers.erasure import erase_customer

    with session_scope(sessions) as s:
        external_id = s.get(Customer, queued["customer_id"]).external_id
        erase_customer(s, external_id, actor="test")
    resp = client.get(_click_path(queued))
    assert resp.status_code == 302, "the product page still opens: nothing personal in that"
    assert resp.headers["Location"].startswith("https://shop.example.com/p/")
    assert _count(sessions, Event) == 0
    signer = queued["signer"]
    for url in (
        signer.unsubscribe_url(customer_id=queued["customer_id"]),
        signer.stop_url(customer_id=queued["customer_id"], occasion_key=queued["occasion_key"]),
    ):
        assert client.get(url.removeprefix(BASE)).status_code == 404


def test_a_click_never_redirects_to_a_non_web_url(client, sessions, queued):
    """A catalog row written before URLs were checked (an import, an old version) may hold any scheme:
    the click link shows the product page's message instead of redirecting to it."""
    from domain.models import Product

    with session_scope(sessions) as s:
        s.get(Product, queued["product_id"]).url = "javascript:alert(document.cookie)"
    resp = client.get(_click_path(queued))
    assert resp.status_code == 404 and "Location" not in resp.headers
