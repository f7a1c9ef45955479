"""Reminder emails: rendering in English and Russian, consent, stopped dates, the frequency cap, once only."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from domain.db import session_scope
from domain.messaging.mail import SmtpMailer
from domain.messaging.outbox import enqueue
from domain.messaging.sending import send_outbox
from domain.messaging.signing import LinkSigner
from domain.models import Customer, ImportantDate, OutboundEmail
from domain.reminders.queueing import choose_locale, queue_reminders, render_reminder
from tests.delivery_fixtures import NOW, make_customer, make_product, make_selection


def _signer(settings):
    return LinkSigner.from_settings(settings)


def test_english_email_has_three_tiers_signed_links_and_footer_links(session, settings):
    selection = make_selection(session)
    customer = session.get(Customer, selection.customer_id)
    email = render_reminder(session, selection, customer, _signer(settings))
    assert email.locale == "en"
    assert email.subject == "Anna's birthday is on 8 December 2011: gift ideas"
    assert "Dear Alice Smith," in email.body_text
    for name in ("A small token", "A thoughtful gift", "Something special"):
        assert name in email.body_text and name in email.body_html
    assert "£12.50" in email.body_text and "£220.00" in email.body_html
    assert "Close to what you have chosen before" in email.body_text
    products = [pick.product_id for pick in selection.picks]
    clicks = re.findall(r"http://127\.0\.0\.1:5000/r/([\w.\-]+)", email.body_html)
    assert len(set(clicks)) == 6
    assert sorted(_signer(settings).load("click", t)["p"] for t in set(clicks)) == sorted(products)
    assert email.body_html.count('<img src="https://shop.example.com/img/') == 6
    assert "/stop/" in email.body_text and "/unsubscribe/" in email.body_text
    assert "Stop this reminder" in email.body_html


def test_russian_email_and_english_fallback(session, settings):
    selection = make_selection(
        session, make_customer(session, locale="ru-RU", name="Иван"), recipient_name="Анна"
    )
    customer = session.get(Customer, selection.customer_id)
    email = render_reminder(session, selection, customer, _signer(settings))
    assert email.locale == "ru"
    assert email.subject == "Анна: день рождения 8 декабря 2011. Идеи подарков"
    assert "Здравствуйте, Иван!" in email.body_text
    assert "12,50\u00a0£" in email.body_text
    assert "Отключить это напоминание" in email.body_html and "Отписаться" in email.body_html
    assert choose_locale("de-AT") == "en" and choose_locale(None) == "en" and choose_locale("ru_RU") == "ru"


def test_html_is_escaped_and_text_is_not(session, settings):
    product = make_product(session, "30.00", title='Tea & "Biscuits" <b>set</b>')
    selection = make_selection(session, products=[product])
    customer = session.get(Customer, selection.customer_id)
    email = render_reminder(session, selection, customer, _signer(settings))
    assert "Tea &amp; &#34;Biscuits&#34; &lt;b&gt;set&lt;/b&gt;" in email.body_html
    assert 'Tea & "Biscuits" <b>set</b>' in email.body_text


def test_ready_and_approved_selections_are_queued_once(session, settings):
    ready = make_selection(session, status="ready")
    approved = make_selection(session, status="approved")
    waiting = make_selection(session, status="awaiting_review")
    report = queue_reminders(session, settings, NOW)
    assert sorted(report.queued) == sorted([ready.id, approved.id])
    keys = set(session.scalars(select(OutboundEmail.dedupe_key)))
    assert keys == {f"selection:{ready.id}", f"selection:{approved.id}"}
    assert queue_reminders(session, settings, NOW).queued == []
    assert (
        session.scalar(select(OutboundEmail.status).where(OutboundEmail.selection_id == waiting.id)) is None
    )


def test_consent_is_honoured(session, settings):
    no_consent = make_selection(session, make_customer(session, email_consent=False))
    unsubscribed = make_selection(session, make_customer(session, unsubscribed_at=NOW))
    no_address = make_selection(session, make_customer(session, email=None))
    report = queue_reminders(session, settings, NOW)
    assert report.queued == []
    assert report.skipped == {
        no_consent.id: "no email consent",
        unsubscribed.id: "customer unsubscribed",
        no_address.id: "no email address",
    }
    assert (no_consent.status, no_consent.status_reason) == ("skipped", "no email consent")


def test_a_stopped_date_is_not_mailed_and_missing_stock_is_left_out(session, settings):
    stopped = make_selection(session)

    session.get(ImportantDate, stopped.important_date_id).is_stopped = True
    gone = make_product(session, "40.00", in_stock=False)
    kept = make_product(session, "50.00", title="Still here")
    partly = make_selection(session, products=[gone, kept])
    all_gone = make_selection(session, products=[make_product(session, "9.00", is_active=False)])
    report = queue_reminders(session, settings, NOW)
    assert report.skipped == {
        stopped.id: "reminder stopped",
        all_gone.id: "no pick is still active and in stock",
    }
    body = session.scalar(select(OutboundEmail.body_text).where(OutboundEmail.selection_id == partly.id))
    assert "Still here" in body and gone.title not in body


def test_frequency_cap_defers_then_sends(sessions, mail_settings, smtp_server):
    with session_scope(sessions) as s:
        customer = make_customer(s)
        winback = enqueue(
            s,
            dedupe_key="winback:1",
            kind="winback",
            to_address=customer.email,
            subject="We miss you",
            body_text="x",
            body_html=None,
            customer_id=customer.id,
            not_before=NOW - dt.timedelta(days=1),
        )
        s.flush()
        winback_id = winback.id
        selection_id = make_selection(s, customer, occasion_on=dt.date(2011, 12, 10)).id
    mailer = SmtpMailer(mail_settings.mail)
    assert send_outbox(sessions, mail_settings, mailer, NOW - dt.timedelta(days=1), "w").sent == [winback_id]
    with session_scope(sessions) as s:
        report = queue_reminders(s, mail_settings, NOW)
    assert report.queued == [selection_id]
    slot = report.deferred[selection_id]
    assert dt.timedelta(days=1, hours=23) < slot - NOW < dt.timedelta(days=2, seconds=5)  # 3-day cap, 1 used
    assert send_outbox(sessions, mail_settings, mailer, NOW, "w").sent == []
    assert len(smtp_server.messages) == 1
    assert len(send_outbox(sessions, mail_settings, mailer, slot, "w").sent) == 1
    assert [m["Subject"] for m in smtp_server.messages][
        1
    ] == "Anna's birthday is on 10 December 2011: gift ideas"


def test_frequency_cap_past_the_occasion_skips_with_the_reason(session, settings):
    customer = make_customer(session)
    first = make_selection(session, customer, occasion_on=dt.date(2011, 12, 3))
    second = make_selection(session, customer, occasion_on=dt.date(2011, 12, 4), recipient_name="Mum")
    report = queue_reminders(session, settings, NOW)
    assert report.queued == [first.id]
    assert report.skipped[second.id].startswith("frequency cap: no marketing email allowed before 2011-12-04")


def test_one_failing_selection_does_not_stop_the_batch(session, settings):
    broken = make_selection(session, make_customer(session, time_zone="Mars/Olympus_Mons"))
    good = make_selection(session)
    report = queue_reminders(session, settings, NOW)
    assert report.queued == [good.id]
    assert list(report.failed) == [broken.id]
