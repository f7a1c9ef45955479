"""The outbox against a real SMTP server: sent once, retried with backoff, failed, unknown, never twice."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import select, update

from api.cli import cli
from domain.db import session_scope
from domain.messaging.mail import SmtpMailer
from domain.messaging.outbox import enqueue, enqueue_many, resolve
from domain.messaging.sending import _claim_next, send_outbox
from domain.models import Customer, GiftSelection, OutboundEmail
from tests.delivery_fixtures import HANG, NOW, SLOW, CuttingProxy, make_customer, make_selection, with_mail


def _queue(sessions, n=1, *, selection=False, body_text="text", **customer):
    ids = []
    with session_scope(sessions) as s:
        for i in range(n):
            c = make_customer(s, **customer)
            sel = make_selection(s, c, status="approved") if selection else None
            row = enqueue(
                s,
                dedupe_key=f"test:{c.id}:{i}",
                kind="reminder",
                to_address=c.email,
                subject=f"Hello {i}",
                body_text=body_text,
                body_html="<p>html</p>",
                customer_id=c.id,
                selection_id=sel.id if sel else None,
                not_before=NOW,
            )
            s.flush()
            ids.append(row.id)
    return ids


def _row(sessions, email_id):
    with session_scope(sessions) as s:
        return s.get(OutboundEmail, email_id)


def test_sent_once_and_marked_only_after_acceptance(sessions, mail_settings, smtp_server):
    [email_id] = _queue(sessions, selection=True)
    mailer = SmtpMailer(mail_settings.mail)
    report = send_outbox(sessions, mail_settings, mailer, NOW, "w1")
    assert report.sent == [email_id]
    row = _row(sessions, email_id)
    assert (row.status, row.attempts, row.sent_at is not None) == ("sent", 1, True)
    assert row.message_id == str(smtp_server.messages[0]["Message-ID"])
    assert (
        smtp_server.messages[0]["List-Unsubscribe"].strip().startswith("<http://127.0.0.1:5000/unsubscribe/")
    )
    with session_scope(sessions) as s:
        assert s.get(GiftSelection, row.selection_id).status == "sent"
    assert send_outbox(sessions, mail_settings, mailer, NOW + dt.timedelta(days=1), "w1").sent == []
    assert len(smtp_server.messages) == 1


def test_temporary_failure_is_retried_with_backoff_then_sent(sessions, mail_settings, smtp_server):
    [email_id] = _queue(sessions)
    smtp_server.handler.data_replies.append("451 4.3.0 Greylisted, try later")
    mailer = SmtpMailer(mail_settings.mail)
    assert send_outbox(sessions, mail_settings, mailer, NOW, "w1").retried == [email_id]
    row = _row(sessions, email_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "451" in row.last_error
    assert NOW + dt.timedelta(seconds=60) <= row.next_attempt_at < NOW + dt.timedelta(seconds=65)
    # not due yet: nothing happens
    assert send_outbox(sessions, mail_settings, mailer, NOW + dt.timedelta(seconds=30), "w1").sent == []
    assert send_outbox(sessions, mail_settings, mailer, NOW + dt.timedelta(seconds=61), "w1").sent == [
        email_id
    ]
    assert len(smtp_server.messages) == 1
    row = _row(sessions, email_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


def test_temporary_failures_give_up_after_max_attempts(sessions, mail_settings, smtp_server):
    settings = with_mail(mail_settings, max_attempts=2, backoff_seconds=10)
    [email_id] = _queue(sessions, selection=True)
    smtp_server.handler.data_replies.extend(["451 busy", "452 still busy"])
    mailer = SmtpMailer(settings.mail)
    send_outbox(sessions, settings, mailer, NOW, "w1")
    assert _row(sessions, email_id).next_attempt_at < NOW + dt.timedelta(seconds=11)
    report = send_outbox(sessions, settings, mailer, NOW + dt.timedelta(seconds=11), "w1")
    assert report.failed == [email_id]
    row = _row(sessions, email_id)
    assert row.status == "failed" and "gave up after 2 attempts" in row.last_error and "452" in row.last_error
    with session_scope(sessions) as s:
        assert s.get(GiftSelection, row.selection_id).status == "failed"
    assert smtp_server.messages == []


def test_permanent_failure_is_recorded_and_not_retried(sessions, mail_settings, smtp_server):
    [email_id] = _queue(sessions)
    smtp_server.handler.data_replies.append("550 5.7.1 Rejected")
    mailer = SmtpMailer(mail_settings.mail)
    assert send_outbox(sessions, mail_settings, mailer, NOW, "w1").failed == [email_id]
    row = _row(sessions, email_id)
    assert (row.status, row.attempts) == ("failed", 1) and "550" in row.last_error
    assert send_outbox(sessions, mail_settings, mailer, NOW + dt.timedelta(days=2), "w1").failed == []
    assert smtp_server.messages == []


def test_a_hung_server_is_retried_later(sessions, settings, silent_server):
    host, port = silent_server
    hung = with_mail(settings, smtp_host=host, smtp_port=port, smtp_timeout=0.3)
    [email_id] = _queue(sessions)
    assert send_outbox(sessions, hung, SmtpMailer(hung.mail), NOW, "w1").retried == [email_id]
    assert _row(sessions, email_id).status == "queued"


def test_no_reply_after_data_is_unknown_and_not_resent(sessions, mail_settings, smtp_server):
    settings = with_mail(mail_settings, smtp_timeout=0.3)
    [email_id] = _queue(sessions)
    smtp_server.handler.data_replies.append(HANG)
    mailer = SmtpMailer(settings.mail)
    assert send_outbox(sessions, settings, mailer, NOW, "w1").unknown == [email_id]
    assert send_outbox(sessions, settings, mailer, NOW + dt.timedelta(days=1), "w1").sent == []
    assert _row(sessions, email_id).status == "unknown"
    assert smtp_server.messages == []


def test_sender_killed_between_claim_and_send_does_not_resend(sessions, mail_settings, smtp_server, app):
    [email_id, other_id] = _queue(sessions, 2)
    with session_scope(sessions) as s:  # a sender claims a row and dies before sending it
        claimed = _claim_next(s, NOW, NOW, "dead-worker", mail_settings)
    assert claimed.id == email_id
    mailer = SmtpMailer(mail_settings.mail)
    # soon after, another sender leaves the claimed row alone
    soon, later = NOW + dt.timedelta(seconds=5), NOW + dt.timedelta(hours=1)
    report = send_outbox(sessions, mail_settings, mailer, soon, "w2", clock=lambda: soon)
    assert report.sent == [other_id] and report.abandoned == []
    assert _row(sessions, email_id).status == "sending"
    # much later (by the wall clock): the claim is declared abandoned, the outcome unknown, nothing is sent
    report = send_outbox(sessions, mail_settings, mailer, later, "w2", clock=lambda: later)
    assert report.abandoned == [email_id] and report.sent == []
    row = _row(sessions, email_id)
    assert (row.status, row.claimed_by) == ("unknown", "dead-worker")
    assert len(smtp_server.messages) == 1
    runner = app.test_cli_runner()
    listed = runner.invoke(cli, args=["outbox", "list", "--unknown"])
    assert listed.exit_code == 0, listed.output
    assert f"{email_id:>6} unknown" in listed.output and f"{other_id:>6} sent" not in listed.output
    # the operator decides to resend: it goes out once
    assert runner.invoke(cli, args=["outbox", "resolve", str(email_id), "--resend"]).exit_code == 0
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
    assert send_outbox(sessions, mail_settings, mailer, now, "w2").sent == [email_id]
    assert len(smtp_server.messages) == 2
    assert "no emails" in runner.invoke(cli, args=["outbox", "list", "--unknown"]).output


def test_operator_marks_an_unknown_email_as_sent(sessions, mail_settings):
    [email_id] = _queue(sessions, selection=True)
    with session_scope(sessions) as s:
        s.execute(update(OutboundEmail).values(status="unknown", claimed_at=NOW))
    with session_scope(sessions) as s:
        row = resolve(s, email_id, outcome="sent", now=NOW, actor="test")
        assert (row.status, row.sent_at) == ("sent", NOW)
        assert s.get(GiftSelection, row.selection_id).status == "sent"


def test_two_concurrent_senders_never_double_send(sessions, mail_settings, smtp_server):
    ids = _queue(sessions, 24)
    mailer = SmtpMailer(mail_settings.mail)
    barrier = threading.Barrier(2)
    reports = {}
    errors = []

    def sender(name):
        try:
            barrier.wait()
            reports[name] = send_outbox(sessions, mail_settings, mailer, NOW, name)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(reports["w0"].sent + reports["w1"].sent) == ids
    received = smtp_server.message_ids()
    assert len(received) == len(set(received)) == len(ids)
    with session_scope(sessions) as s:
        assert set(s.scalars(select(OutboundEmail.status))) == {"sent"}


def test_unsubscribed_after_queueing_is_cancelled_not_sent(sessions, mail_settings, smtp_server):
    [email_id] = _queue(sessions)
    with session_scope(sessions) as s:
        customer_id = s.get(OutboundEmail, email_id).customer_id
        s.execute(update(Customer).where(Customer.id == customer_id).values(unsubscribed_at=NOW))
    report = send_outbox(sessions, mail_settings, SmtpMailer(mail_settings.mail), NOW, "w1")
    assert report.cancelled == [email_id] and report.sent == []
    row = _row(sessions, email_id)
    assert (row.status, row.last_error) == ("cancelled", "customer unsubscribed")
    assert smtp_server.messages == []


def test_a_slow_server_that_answers_within_the_timeout_gets_the_message_once(
    sessions, mail_settings, smtp_server
):
    settings = with_mail(mail_settings, smtp_timeout=3.0)
    smtp_server.handler.slow_seconds = 1.0
    [email_id] = _queue(sessions)
    smtp_server.handler.data_replies.append(SLOW)
    report = send_outbox(sessions, settings, SmtpMailer(settings.mail), NOW, "w1")
    assert report.sent == [email_id]
    row = _row(sessions, email_id)
    assert (row.status, row.attempts) == ("sent", 1)
    assert smtp_server.message_ids() == [row.message_id]


def test_a_connection_dropped_mid_data_is_retried_and_sent_once(sessions, mail_settings, smtp_server):
    """Regression: a connection cut while the message was still being written (its end never reached the
    server, which cannot have accepted it) was filed 'unknown' for the operator instead of retried."""
    proxy = CuttingProxy(smtp_server, cut="payload")
    settings = with_mail(mail_settings, smtp_host=proxy.host, smtp_port=proxy.port, smtp_timeout=20.0)
    # 8 MB: the proxy resets the connection after 4 KB of it, long before the writer can be done
    [email_id] = _queue(sessions, body_text="x" * (8 * 1024 * 1024))
    mailer = SmtpMailer(settings.mail)
    try:
        report = send_outbox(sessions, settings, mailer, NOW, "w1")
        assert proxy.cuts == 1 and report.sent == [] and report.unknown == []
        row = _row(sessions, email_id)
        assert (row.status, row.attempts) == ("queued", 1), row.last_error
        assert smtp_server.messages == []  # the server dropped the incomplete message
        report = send_outbox(sessions, settings, mailer, NOW + dt.timedelta(minutes=2), "w1")
    finally:
        proxy.close()
    assert report.sent == [email_id]
    assert smtp_server.message_ids() == [_row(sessions, email_id).message_id]


def test_a_connection_dropped_before_the_servers_reply_is_unknown_and_not_resent(
    sessions, mail_settings, smtp_server
):
    proxy = CuttingProxy(smtp_server, cut="reply")
    settings = with_mail(mail_settings, smtp_host=proxy.host, smtp_port=proxy.port)
    [email_id] = _queue(sessions)
    mailer = SmtpMailer(settings.mail)
    try:
        report = send_outbox(sessions, settings, mailer, NOW, "w1")
        assert proxy.cuts == 1 and report.unknown == [email_id]
        assert send_outbox(sessions, settings, mailer, NOW + dt.timedelta(days=1), "w1").sent == []
    finally:
        proxy.close()
    assert _row(sessions, email_id).status == "unknown"
    assert len(smtp_server.messages) == 1  # the server had accepted it: resending would send it twice


def test_enqueue_many_never_queues_a_key_twice(sessions):
    """The bulk form leaves out keys already in the outbox (an earlier or concurrent run's) and keeps
    the rest."""

    def message(key: str, customer_id: int) -> dict:
        return {
            "dedupe_key": key,
            "kind": "winback",
            "to_address": "a@example.com",
            "subject": "s",
            "body_text": "b",
            "body_html": None,
            "customer_id": customer_id,
            "selection_id": None,
            "not_before": NOW,
        }

    with session_scope(sessions) as session:
        customer = make_customer(session)
        enqueue_many(session, [message("k1", customer.id)])
    with session_scope(sessions) as session:
        enqueue_many(session, [message("k1", customer.id), message("k2", customer.id)])
        rows = session.execute(select(OutboundEmail.dedupe_key, OutboundEmail.status)).all()
    assert sorted(rows) == [("k1", "queued"), ("k2", "queued")]
