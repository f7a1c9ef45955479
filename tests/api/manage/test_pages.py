"""The Today page, the selection review (replace, note, preview, approve) and the client page."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from domain.db import session_scope
from domain.lifecycle.trigger_runs import run_triggers
from domain.models import (
    GiftSelection,
    ImportantDate,
    OccasionOptIn,
    OutboundEmail,
    Product,
    Recipient,
    TriggerAssignment,
)
from domain.reminders.queueing import queue_reminders
from tests.api.manage.conftest import NOW, form_token
from tests.delivery_fixtures import add_cart, make_customer, make_product
from tests.domain.lifecycle.test_triggers import only


def test_today_lists_my_reviews_by_deadline_then_overdue_then_upcoming_dates(app, anna, people):
    with session_scope(app.extensions["giftrec"].sessions) as s:
        s.get(GiftSelection, people.later_selection).review_cutoff_at = dt.datetime(2011, 12, 1, 8, 0)
    page = anna.get("/manage/").text
    assert "Peter Brown" not in page  # Bruno's client
    awaiting, overdue, upcoming = (
        page.split('id="awaiting"')[1].split('id="overdue"')[0],
        page.split('id="overdue"')[1].split('id="upcoming"')[0],
        page.split('id="upcoming"')[1],
    )
    assert f"/manage/selections/{people.anna_selection}" in awaiting and "3 d 15 h left" in awaiting
    assert "at the deadline (05 Dec 00:00 UTC) it is sent as planned" in awaiting
    assert f"/manage/selections/{people.later_selection}" in overdue
    assert "deadline passed: the next planning run has it sent as planned" in overdue
    assert "08 Dec" in upcoming and "10 Dec" in upcoming and "awaiting review" in upcoming
    counts = re.findall(r"<li><b>(\d+)</b> ([a-z ]+)", page)
    assert counts[:3] == [("1", "awaiting review"), ("1", "overdue"), ("2", "dates in the next ")]


def test_replace_from_the_recommenders_alternatives_note_preview_and_approve(app, anna, people):
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as s:
        sel = s.get(GiftSelection, people.anna_selection)
        first = min(sel.picks, key=lambda p: (p.tier, p.position))
        first_id, old_title = first.id, s.get(Product, first.product_id).title
        make_product(s, "15.00", title="Hand-bound notebook")
        make_product(s, "500.00", title="Far too dear")
    path = f"/manage/selections/{people.anna_selection}"
    page = anna.get(f"{path}?replace={first_id}")
    assert "Proposed by the recommender for this slot" in page.text
    offered = page.text.split('id="replace"')[1]
    assert "Hand-bound notebook" in offered and "Far too dear" not in offered  # tier 1 is 10 to 25
    sku = re.search(
        r'name="sku" value="([^"]+)">\s*<button type="submit" aria-label="Use Hand-bound', offered
    )
    assert sku
    token = form_token(anna, path)
    resp = anna.post(
        f"{path}/picks/{first_id}/replace", data={"csrf_token": token, "version": 1, "sku": sku[1]}
    )
    assert resp.status_code == 302
    note = "Olga, the notebook is from the bindery you visited in Florence."
    assert (
        anna.post(f"{path}/note", data={"csrf_token": token, "version": 2, "note": note}).status_code == 302
    )
    preview = anna.get(f"{path}/preview")
    assert "rendered from the current version" in preview.text and "Hand-bound notebook" in preview.text
    html = anna.get(f"{path}/preview.html")
    assert "bindery you visited in Florence" in html.text and "Hand-bound notebook" in html.text
    assert "sandbox" in html.headers["Content-Security-Policy"]
    approved = anna.post(f"{path}/approve", data={"csrf_token": token, "version": 3}, follow_redirects=True)
    assert "Approved: the email is queued" in approved.text
    with session_scope(ctx.sessions) as s:
        (email,) = s.scalars(select(OutboundEmail))
        assert (email.status, email.dedupe_key) == ("queued", f"selection:{people.anna_selection}:v3")
        assert "Hand-bound notebook" in email.body_text and old_title not in email.body_text
        assert note in email.body_text and "(Anna Manager)" in email.body_text
        sel = s.get(GiftSelection, people.anna_selection)
        assert (sel.status, sel.approved_version, sel.reviewed_by_id) == ("approved", 3, people.anna)
    # The preview now shows the stored email: exactly what goes out.
    after = anna.get(f"{path}/preview")
    assert "the email in the outbox (queued)" in after.text
    assert anna.get(f"{path}/preview.html").text == email.body_html
    log = anna.get(path).text.split('id="audit-title"')[1]
    assert (
        log.index("selection.pick_swapped")
        < log.index("selection.note_set")
        < log.index("selection.approved")
    )


def test_an_edit_after_approval_cancels_the_queued_email_from_the_page(app, anna, people):
    ctx = app.extensions["giftrec"]
    path = f"/manage/selections/{people.anna_selection}"
    token = form_token(anna, path)
    anna.post(f"{path}/approve", data={"csrf_token": token, "version": 1})
    with session_scope(ctx.sessions) as s:
        pick = s.get(GiftSelection, people.anna_selection).picks[0].id
    anna.post(f"{path}/picks/{pick}/remove", data={"csrf_token": token, "version": 1})
    page = anna.get(path).text
    assert "awaiting review" in page and "(approved: version 1)" in page
    with session_scope(ctx.sessions) as s:
        assert [e.status for e in s.scalars(select(OutboundEmail))] == ["cancelled"]
        assert queue_reminders(s, ctx.settings, dt.datetime(2011, 12, 1, 9)).queued == []


def test_skip_with_a_reason(app, anna, people):
    path = f"/manage/selections/{people.anna_selection}"
    resp = anna.post(
        f"{path}/skip",
        data={"csrf_token": form_token(anna, path), "version": 1, "reason": "she is travelling"},
        follow_redirects=True,
    )
    assert "Skipped" in resp.text and "skipped by Anna Manager: she is travelling" in resp.text


def test_the_client_page_and_one_click_stop_for_a_recipient(app, anna, people):
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as s:
        sel = s.get(GiftSelection, people.anna_selection)
        sel.status = "approved"
        queue_reminders(s, ctx.settings, dt.datetime(2011, 12, 1, 9))
        recipient = s.get(Recipient, sel.recipient_id)
        s.add(ImportantDate(recipient_id=recipient.id, kind="name_day", month=3, day=3))
        s.add(
            OccasionOptIn(
                customer_id=recipient.customer_id, occasion_code="march_8", recipient_id=recipient.id
            )
        )
        recipient_id = recipient.id
    path = f"/manage/clients/{people.anna_client}"
    page = anna.get(path)
    assert page.status_code == 200
    assert "Olga Ivanova" in page.text and "Segment" in page.text and "No RFM snapshot yet" in page.text
    assert 'for="reason-' in page.text and "Stop every reminder for Anna" in page.text
    resp = anna.post(
        f"{path}/recipients/{recipient_id}/stop",
        data={"csrf_token": page.text and form_token(anna, path), "reason": "recipient deceased"},
        follow_redirects=True,
    )
    assert "Every reminder for Anna is stopped." in resp.text
    with session_scope(ctx.sessions) as s:
        dates = s.scalars(select(ImportantDate).where(ImportantDate.recipient_id == recipient_id)).all()
        assert len(dates) == 2 and all(d.is_stopped and d.stop_reason == "recipient deceased" for d in dates)
        assert s.scalars(select(OccasionOptIn).where(OccasionOptIn.recipient_id == recipient_id)).all() == []
        assert s.get(GiftSelection, people.anna_selection).status == "skipped"
        assert [e.status for e in s.scalars(select(OutboundEmail))] == ["cancelled"]


def test_the_preview_of_a_vip_trigger_email_renders_the_triggers_own_template(app, anna, people):
    """Regression (issue 14): the preview of a trigger's selection showed the reminder's layout ("... is on
    ...: gift ideas") until the email was queued."""
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as s:
        vase = make_product(s, "30.00", title="Blue glass vase")
        # a client of Anna's without a reminder open (a reminder on its way keeps triggers away)
        client = make_customer(s, name="Irene Adler", is_vip=True, account_manager_id=people.anna)
        add_cart(s, client, vase, NOW - dt.timedelta(hours=30))
        run_triggers(s, only(ctx.settings, "abandoned_cart"), NOW)
        [assignment] = s.scalars(select(TriggerAssignment))
        sid = assignment.selection_id
        assert s.get(GiftSelection, sid).status == "awaiting_review"
    path = f"/manage/selections/{sid}"
    preview = anna.get(f"{path}/preview").text
    assert "rendered from the current version" in preview
    assert "You left something in your basket" in preview  # the abandoned cart's subject
    assert "You left a few things in your basket" in preview and "Blue glass vase" in preview
    assert "gift ideas" not in preview  # not the reminder's
    html = anna.get(f"{path}/preview.html").text
    assert "Blue glass vase" in html and "Irene Adler" in html
