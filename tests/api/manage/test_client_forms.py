"""The client page's forms: add and edit recipients and dates (errors by field, nothing half-applied), log
a contact; Today's lapsing clients by days since the last purchase and the last contact; the segment
history beside the client's value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from domain.customers.erasure import erase_customer
from domain.db import session_scope
from domain.models import (
    AuditLog,
    ClientContact,
    Customer,
    ImportantDate,
    Order,
    OrderLine,
    Recipient,
)
from domain.origin import SIMULATED
from tests.api.manage.conftest import NOW, form_token
from tests.delivery_fixtures import make_product, make_snapshot

DATE = {"kind": "birthday", "title": "", "day": "14", "month": "2", "year": "", "recurrence": "yearly"}


def _rows(app):  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as s:
        recipients = sorted(
            (r.id, r.name, r.relationship_, tuple(r.interests)) for r in s.scalars(select(Recipient))
        )
        dates = sorted(
            (d.id, d.kind, d.month, d.day, d.year, d.title) for d in s.scalars(select(ImportantDate))
        )
        contacts = s.scalar(select(func.count()).select_from(ClientContact))
        return recipients, dates, contacts


def _recipient_of(app, customer_id: int) -> int:  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as s:
        return s.scalar(select(Recipient.id).where(Recipient.customer_id == customer_id))


def _prefixed(prefix: str, data: dict) -> dict:
    return {f"{prefix}-{k}": v for k, v in data.items()}


def test_add_a_recipient_and_a_date_then_edit_both(app, anna, people):
    path = f"/manage/clients/{people.anna_client}"
    token = form_token(anna, path)
    resp = anna.post(
        f"{path}/recipients",
        data={
            "csrf_token": token,
            **_prefixed(
                "recipient", {"name": "Ivan", "relationship": "Business partner", "interests": "wine, golf"}
            ),
        },
        follow_redirects=True,
    )
    assert "Ivan added" in resp.text
    with session_scope(app.extensions["giftrec"].sessions) as s:
        ivan = s.scalar(select(Recipient).where(Recipient.name == "Ivan"))
        assert (ivan.customer_id, ivan.relationship_, ivan.interests) == (
            people.anna_client,
            "business_partner",
            ["wine", "golf"],
        )
        rid = ivan.id
    resp = anna.post(
        f"{path}/recipients/{rid}/dates",
        data={
            "csrf_token": token,
            **_prefixed(f"r{rid}-date", {**DATE, "kind": "custom", "title": "Name day of the firm"}),
        },
        follow_redirects=True,
    )
    assert "Date added." in resp.text and "Name day of the firm" in resp.text
    with session_scope(app.extensions["giftrec"].sessions) as s:
        date = s.scalar(select(ImportantDate).where(ImportantDate.recipient_id == rid))
        assert (date.kind, date.month, date.day, date.title) == ("custom", 2, 14, "Name day of the firm")
        did = date.id
    anna.post(
        f"{path}/recipients/{rid}",
        data={
            "csrf_token": token,
            **_prefixed(f"r{rid}", {"name": "Ivan Petrov", "relationship": "partner", "interests": ""}),
        },
    )
    anna.post(
        f"{path}/recipients/{rid}/dates/{did}",
        data={"csrf_token": token, **_prefixed(f"d{did}", {**DATE, "day": "29", "month": "2"})},
    )
    with session_scope(app.extensions["giftrec"].sessions) as s:
        ivan = s.get(Recipient, rid)
        assert (ivan.name, ivan.relationship_, ivan.interests) == ("Ivan Petrov", "partner", [])
        date = s.get(ImportantDate, did)
        assert (date.kind, date.month, date.day, date.title) == ("birthday", 2, 29, None)
        actions = s.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
        assert actions == [
            "recipient.created",
            "important_date.created",
            "recipient.edited",
            "important_date.edited",
        ]
        edited = s.scalar(select(AuditLog).where(AuditLog.action == "important_date.edited"))
        assert (edited.details["before"]["day"], edited.details["after"]["day"]) == (14, 29)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"day": "31", "month": "4"}, "day", "April has days 1 to 30"),
        ({"day": "30", "month": "2"}, "day", "February has days 1 to 29"),
        ({"day": "", "month": "2"}, "day", "Enter the day."),
        ({"month": "0"}, "month", "choose a month"),
        ({"kind": "custom", "title": ""}, "title", "name the occasion of a custom date"),
        ({"recurrence": "once", "year": ""}, "year", "a one-off date needs its year"),
        ({"recurrence": "once", "year": "2023", "day": "29"}, "day", "February has days 1 to 28"),
        ({"kind": "funeral"}, "kind", "Not a valid choice"),
    ],
)
def test_a_bad_date_is_refused_with_the_error_next_to_its_field(app, anna, people, change, field, message):
    path = f"/manage/clients/{people.anna_client}"
    rid = _recipient_of(app, people.anna_client)
    token = form_token(anna, path)
    before = _rows(app)
    resp = anna.post(
        f"{path}/recipients/{rid}/dates",
        data={"csrf_token": token, **_prefixed(f"r{rid}-date", DATE | change)},
    )
    assert resp.status_code == 422
    assert f'id="r{rid}-date-{field}-error"' in resp.text and message in resp.text
    assert f'aria-describedby="r{rid}-date-{field}-error"' in resp.text
    assert _rows(app) == before


def test_a_recipient_without_a_name_is_refused_by_its_field(app, anna, people):
    path = f"/manage/clients/{people.anna_client}"
    token = form_token(anna, path)
    before = _rows(app)
    resp = anna.post(
        f"{path}/recipients",
        data={"csrf_token": token, **_prefixed("recipient", {"name": " ", "relationship": "wife"})},
    )
    assert resp.status_code == 422 and 'id="recipient-name-error"' in resp.text
    assert _rows(app) == before


def _first_date(app, customer_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    rid = _recipient_of(app, customer_id)
    with session_scope(app.extensions["giftrec"].sessions) as s:
        return rid, s.scalar(select(ImportantDate.id).where(ImportantDate.recipient_id == rid))


def _client_posts(app, customer_id: int) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    """Every form post of a client's page (valid data) but the one-click stop, tested in test_security."""
    path = f"/manage/clients/{customer_id}"
    rid, did = _first_date(app, customer_id)
    return [
        (f"{path}/recipients", _prefixed("recipient", {"name": "X", "relationship": "wife"})),
        (f"{path}/recipients/{rid}", _prefixed(f"r{rid}", {"name": "X", "relationship": "wife"})),
        (f"{path}/recipients/{rid}/dates", _prefixed(f"r{rid}-date", DATE)),
        (f"{path}/recipients/{rid}/dates/{did}", _prefixed(f"d{did}", DATE)),
        (f"{path}/contacts", _prefixed("contact", {"kind": "call", "note": "x"})),
    ]


def test_each_client_form_refuses_a_post_without_a_csrf_token(app, anna, people):
    before = _rows(app)
    for url, data in _client_posts(app, people.anna_client):
        assert anna.post(url, data=data).status_code == 400, url
        assert anna.post(url, data={"csrf_token": "forged", **data}).status_code == 400, url
    assert _rows(app) == before


def test_manager_a_gets_404_for_posts_on_manager_bs_recipients_dates_and_contacts(app, anna, people):
    token = form_token(anna, f"/manage/clients/{people.anna_client}")
    theirs = _client_posts(app, people.bruno_client)
    rid, did = _first_date(app, people.bruno_client)
    mine_rid = _recipient_of(app, people.anna_client)
    before = _rows(app)
    for url, data in (
        *theirs,
        # Bruno's recipient under my client's URL is not found either.
        (
            f"/manage/clients/{people.anna_client}/recipients/{rid}",
            _prefixed(f"r{rid}", {"name": "X", "relationship": "w"}),
        ),
        (
            f"/manage/clients/{people.anna_client}/recipients/{mine_rid}/dates/{did}",
            _prefixed(f"d{did}", DATE),
        ),
    ):
        resp = anna.post(url, data={"csrf_token": token, **data})
        assert resp.status_code == 404, url
        assert "Peter Brown" not in resp.text
    assert _rows(app) == before


def test_log_a_contact_and_todays_lapsing_clients_count_purchases_and_contacts(app, anna, people):
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as s:
        s.add(
            Order(
                external_id="O-old", customer_id=people.anna_client, ordered_at=NOW - dt.timedelta(days=200)
            )
        )
    page = anna.get("/manage/").text
    lapsing = page.split('id="lapsing"')[1]
    assert "Olga Ivanova" in lapsing and "200" in lapsing and "never contacted" in lapsing
    assert "Peter Brown" not in lapsing
    assert "<li><b>1</b> lapsing: no purchase in 90+ days</li>" in page
    assert "<li><b>1</b> lapsing: no contact in 30+ days</li>" in page

    path = f"/manage/clients/{people.anna_client}"
    resp = anna.post(
        f"{path}/contacts",
        data={
            "csrf_token": form_token(anna, path),
            "contact-kind": "call",
            "contact-note": "Asked about the spring show",
        },
        follow_redirects=True,
    )
    assert "Contact logged (call)." in resp.text and "Asked about the spring show" in resp.text
    page = anna.get("/manage/").text
    assert "<li><b>1</b> lapsing: no purchase in 90+ days</li>" in page
    assert "<li><b>0</b> lapsing: no contact in 30+ days</li>" in page
    lapsing = page.split('id="lapsing"')[1]
    assert "never contacted" not in lapsing and "<td>0</td>" in lapsing
    with session_scope(ctx.sessions) as s:
        contact = s.scalar(select(ClientContact))
        assert (contact.customer_id, contact.user_id, contact.kind) == (
            people.anna_client,
            people.anna,
            "call",
        )
        assert s.scalar(select(AuditLog.action).where(AuditLog.entity_id == str(people.anna_client)))


def test_a_simulated_order_is_not_the_client_s_last_purchase_on_any_page(app, anna, people):
    """Regression: an order `giftrec demo simulate-uplift` generated showed as the client's last purchase
    (Today's upcoming dates and lapsing clients) and in the client page's purchases and net spend."""
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as s:
        product = make_product(s, "40.00")
        for external_id, days_ago, source in (("O-real", 200, "import"), ("SIM-7", 3, SIMULATED)):
            order = Order(
                external_id=external_id,
                customer_id=people.anna_client,
                ordered_at=NOW - dt.timedelta(days=days_ago),
                source=source,
            )
            order.lines.append(
                OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=product.price)
            )
            s.add(order)
    page = anna.get("/manage/").text
    upcoming = page.split('id="upcoming"')[1].split('id="lapsing"')[0]
    assert "200 days ago" in upcoming and "3 days ago" not in upcoming
    lapsing = page.split('id="lapsing"')[1]
    assert "Olga Ivanova" in lapsing and "200" in lapsing
    assert "<li><b>1</b> lapsing: no purchase in 90+ days</li>" in page
    client = anna.get(f"/manage/clients/{people.anna_client}").text
    assert "O-real" in client and "SIM-7" not in client
    assert "£40.00" in client and "£80.00" not in client


def test_a_contact_with_a_bad_kind_or_too_long_a_note_is_refused_by_its_field(app, anna, people):
    path = f"/manage/clients/{people.anna_client}"
    token = form_token(anna, path)
    kind = anna.post(f"{path}/contacts", data={"csrf_token": token, "contact-kind": "telepathy"})
    assert kind.status_code == 422 and 'id="contact-kind-error"' in kind.text
    note = anna.post(
        f"{path}/contacts", data={"csrf_token": token, "contact-kind": "call", "contact-note": "x" * 1001}
    )
    assert note.status_code == 422 and 'id="contact-note-error"' in note.text
    assert _rows(app)[2] == 0


def test_erasing_a_client_deletes_the_contacts_logged_for_them(app, anna, people):
    """Privacy: a manager's notes on a client are personal data; erasure must not leave them behind."""
    path = f"/manage/clients/{people.anna_client}"
    anna.post(
        f"{path}/contacts",
        data={"csrf_token": form_token(anna, path), "contact-kind": "meeting", "contact-note": "lunch"},
    )
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.scalar(select(func.count()).select_from(ClientContact)) == 1
        erase_customer(s, s.get(Customer, people.anna_client).external_id, actor="cli")
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.scalar(select(func.count()).select_from(ClientContact)) == 0


def test_the_client_page_shows_the_segment_history_beside_the_value(app, anna, people):
    with session_scope(app.extensions["giftrec"].sessions) as s:
        for day, segment in (
            (dt.date(2011, 9, 1), "new"),
            (dt.date(2011, 10, 1), "new"),
            (dt.date(2011, 10, 15), "loyal"),
            (dt.date(2011, 11, 30), "at_risk"),
        ):
            make_snapshot(s, people.anna_client, day, segment, expected_purchases=1.5, clv=Decimal("812.40"))
    page = anna.get(f"/manage/clients/{people.anna_client}").text
    segment = page.split('id="segment-title"')[1].split('id="people-title"')[0]
    assert "at risk</strong> since 30 Nov 2011" in segment
    assert "£812.40" in segment and "1.5 purchases expected" in segment
    history = segment.split('id="history-title"')[1]
    rows = [r.split("</td><td>") for r in history.split("<tr><td>")[1:]]
    assert [(r[0], r[1]) for r in rows] == [("30 Nov 2011", "at risk"), ("15 Oct 2011", "loyal")]
    assert rows[0][2].startswith("loyal") and rows[1][2].startswith("new")
