"""Sending under faults, against a real SMTP server: outages, refusals, a bad login, deadlines, the cap."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from api.cli import cli
from domain.db import session_scope
from domain.messaging.mail import SmtpMailer
from domain.messaging.outbox import enqueue, resolve, retry_failed
from domain.messaging.pause import current_pause
from domain.messaging.sending import send_outbox
from domain.models import AuditLog, GiftSelection, OutboundEmail
from domain.reminders.queueing import queue_reminders
from tests.delivery_fixtures import (
    NOW,
    RecordingHandler,
    authenticator,
    client_tls_context,
    free_port,
    make_customer,
    make_selection,
    server_tls_context,
    start_server,
    with_mail,
)

OCCASION = dt.date(2011, 12, 8)
DEADLINE = dt.datetime(2011, 12, 8)  # local midnight of the occasion (UTC customer), margin 0


def _queue_reminders(sessions, settings, n=1, customer=None):
    """n reminders queued the real way (with their deadline); returns the outbox ids."""
    with session_scope(sessions) as s:
        for _ in range(n):
            make_selection(s, customer or make_customer(s), occasion_on=OCCASION)
        report = queue_reminders(s, settings, NOW)
        assert len(report.queued) == n, report
        return list(s.scalars(select(OutboundEmail.id).order_by(OutboundEmail.id)))


def _row(sessions, email_id):
    with session_scope(sessions) as s:
        return s.get(OutboundEmail, email_id)


def _send(sessions, settings, at, tls=None, **kw):
    mailer = SmtpMailer(settings.mail, ssl_context=client_tls_context(tls) if tls else None)
    return send_outbox(sessions, settings, mailer, at, "w1", clock=lambda: at, **kw)


def test_a_relay_down_then_up_on_the_same_port_is_retried_past_max_attempts_and_sent_once(sessions, settings):
    handler = RecordingHandler()
    controller, port = start_server(handler)
    settings = with_mail(settings, smtp_port=port, smtp_timeout=1.0, max_attempts=2, backoff_seconds=60)
    [email_id] = _queue_reminders(sessions, settings)
    controller.stop()  # the relay goes down
    at = NOW
    for _ in range(4):  # twice max_attempts: a reminder is retried until its deadline instead
        assert _send(sessions, settings, at).retried == [email_id]
        at = _row(sessions, email_id).next_attempt_at
    row = _row(sessions, email_id)
    assert (row.status, row.attempts) == ("queued", 4) and "Connection refused" in row.last_error
    assert row.next_attempt_at - NOW >= dt.timedelta(minutes=15)  # 1 + 2 + 4 + 8 minutes of back-off
    controller, _ = start_server(handler, port=port)  # back on the same address
    try:
        assert _send(sessions, settings, at).sent == [email_id]
        assert _send(sessions, settings, at + dt.timedelta(hours=1)).sent == []
    finally:
        controller.stop()
    assert len(handler.messages) == 1
    assert _row(sessions, email_id).status == "sent"


def test_4xx_replies_then_250_send_it_once(sessions, mail_settings, smtp_server):
    settings = with_mail(mail_settings, max_attempts=1)
    [email_id] = _queue_reminders(sessions, settings)
    smtp_server.handler.data_replies.extend(["451 4.3.0 busy", "452 4.3.1 full", "421 4.4.2 bye"])
    at = NOW
    for _ in range(3):
        assert _send(sessions, settings, at).retried == [email_id]
        at = _row(sessions, email_id).next_attempt_at
    assert _send(sessions, settings, at).sent == [email_id]
    assert len(smtp_server.messages) == 1
    row = _row(sessions, email_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 4, None)


def test_a_deadline_passing_while_the_relay_is_down_cancels_it_and_it_is_never_sent_late(sessions, settings):
    handler = RecordingHandler()
    port = free_port()  # nothing listens: the relay is down
    settings = with_mail(settings, smtp_port=port, smtp_timeout=1.0, backoff_max_seconds=6 * 3600)
    [email_id] = _queue_reminders(sessions, settings)
    with session_scope(sessions) as s:
        assert s.get(OutboundEmail, email_id).deadline_at == DEADLINE
    at = NOW
    while True:  # retried with a growing back-off, the last try a minute before the deadline
        report = _send(sessions, settings, at)
        if report.cancelled:
            break
        assert report.retried == [email_id]
        at = _row(sessions, email_id).next_attempt_at
        assert at <= DEADLINE - dt.timedelta(minutes=1)
    assert report.cancelled == [email_id]
    row = _row(sessions, email_id)
    assert row.status == "cancelled" and "deadline 2011-12-08 00:00 UTC passed" in row.last_error
    assert "Connection refused" in row.last_error
    with session_scope(sessions) as s:
        selection = s.get(GiftSelection, s.get(OutboundEmail, email_id).selection_id)
        assert selection.status == "skipped" and "deadline" in selection.status_reason
    controller, _ = start_server(handler, port=port)  # the relay comes back after the deadline
    try:
        assert _send(sessions, settings, DEADLINE + dt.timedelta(hours=1)).sent == []
    finally:
        controller.stop()
    assert handler.messages == []


def test_a_queued_message_past_its_deadline_is_cancelled_without_a_try(sessions, mail_settings, smtp_server):
    [email_id] = _queue_reminders(sessions, mail_settings)
    report = _send(sessions, mail_settings, DEADLINE)
    assert report.cancelled == [email_id] and report.sent == []
    assert (_row(sessions, email_id).attempts, smtp_server.messages) == (0, [])


def test_a_refused_login_pauses_the_whole_queue_until_a_probe_succeeds(sessions, settings, tls_files):
    handler = RecordingHandler()
    controller, port = start_server(
        handler,
        tls_context=server_tls_context(tls_files),
        require_starttls=True,
        authenticator=authenticator("shop", "s3cret"),
        auth_required=True,
    )
    try:
        wrong = with_mail(
            settings, smtp_port=port, smtp_security="starttls", smtp_username="shop", smtp_password="typo"
        )
        ids = _queue_reminders(sessions, wrong, 3)
        report = _send(sessions, wrong, NOW, tls_files)
        assert report.paused and "login refused: 535" in report.paused
        assert report.retried == [ids[0]] and report.sent == report.failed == []
        with session_scope(sessions) as s:  # nothing counted against the messages
            assert [r.attempts for r in s.scalars(select(OutboundEmail))] == [0, 0, 0]
            assert {r.status for r in s.scalars(select(OutboundEmail))} == {"queued"}
            assert current_pause(s).next_probe_at == NOW + dt.timedelta(seconds=60)
        # paused: no message is tried, and the probe waits for its back-off
        fixed = with_mail(wrong, smtp_password="s3cret")
        assert _send(sessions, fixed, NOW + dt.timedelta(seconds=30), tls_files).paused
        # a probe with the wrong password fails: still paused, the next probe later
        report = _send(sessions, wrong, NOW + dt.timedelta(seconds=61), tls_files)
        assert report.paused and report.sent == []
        with session_scope(sessions) as s:
            assert current_pause(s).probes == 1
        # the password is fixed: the next probe succeeds, the queue resumes and everything goes out once
        report = _send(sessions, fixed, NOW + dt.timedelta(minutes=10), tls_files)
        assert report.resumed and report.paused is None and report.sent == ids
        assert len(handler.messages) == 3
        with session_scope(sessions) as s:
            actions = list(s.scalars(select(AuditLog.action).where(AuditLog.entity_type == "mail_queue")))
            assert actions == ["outbox.paused", "outbox.resumed"]
    finally:
        controller.stop()


def test_an_operator_resumes_a_paused_queue(sessions, settings, runner):
    wrong = with_mail(settings, smtp_port=free_port(), smtp_security="starttls")
    with session_scope(sessions) as s:
        from domain.messaging.pause import pause

        pause(s, wrong.mail, reason="STARTTLS extension not supported by server.", now=NOW, by="w1")
    listed = runner.invoke(cli, ["outbox", "list"])
    assert "QUEUE PAUSED since 2011-12-01 09:00 UTC: STARTTLS" in listed.output
    result = runner.invoke(cli, ["outbox", "resume"])
    assert result.exit_code == 0 and "mail queue resumed" in result.output, result.output
    assert "was not paused" in runner.invoke(cli, ["outbox", "resume"]).output


def _enqueue(sessions, n):
    """n messages without a deadline (a kind other than reminders)."""
    with session_scope(sessions) as s:
        rows = []
        for i in range(n):
            customer = make_customer(s)
            rows.append(
                enqueue(
                    s,
                    dedupe_key=f"note:{customer.id}",
                    kind="winback",
                    to_address=customer.email,
                    subject=f"Hello {i}",
                    body_text="x",
                    body_html=None,
                    customer_id=customer.id,
                    not_before=NOW,
                )
            )
        s.flush()
        return [row.id for row in rows]


def test_retry_queues_again_the_failed_messages_of_a_period(sessions, mail_settings, smtp_server, runner):
    ids = _enqueue(sessions, 3)
    smtp_server.handler.data_replies.extend(["554 5.3.0 relay misconfigured"] * 3)
    mailer = SmtpMailer(mail_settings.mail)
    assert send_outbox(sessions, mail_settings, mailer, NOW, "w1").failed == ids  # the wall clock's now
    wall = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with session_scope(sessions) as s:  # the first one failed before the period asked for
        old = wall - dt.timedelta(hours=2)
        s.execute(update(OutboundEmail).where(OutboundEmail.id == ids[0]).values(claimed_at=old))
    since = wall - dt.timedelta(hours=1)
    result = runner.invoke(cli, ["outbox", "retry", "--since", f"{since:%Y-%m-%d %H:%M}"])
    assert result.exit_code == 0, result.output
    assert "queued again 2; left failed because their deadline has passed 0" in result.output
    report = send_outbox(sessions, mail_settings, mailer, wall + dt.timedelta(minutes=1), "w1")
    assert report.sent == ids[1:] and _row(sessions, ids[0]).status == "failed"
    assert len(smtp_server.messages) == 2


def test_retry_leaves_a_message_past_its_deadline_failed(sessions, mail_settings, smtp_server):
    [email_id] = _queue_reminders(sessions, mail_settings)
    smtp_server.handler.data_replies.append("554 5.3.0 relay misconfigured")
    assert _send(sessions, mail_settings, NOW).failed == [email_id]
    with session_scope(sessions) as s:
        since = NOW - dt.timedelta(hours=1)
        assert retry_failed(s, since=since, until=NOW + dt.timedelta(days=1), now=NOW, actor="t") == (
            [email_id],
            [],
        )
        s.rollback()
        late = DEADLINE + dt.timedelta(hours=1)
        assert retry_failed(s, since=since, until=late, now=late, actor="t") == ([], [email_id])


def test_two_messages_inside_the_cap_never_both_leave(sessions, mail_settings, smtp_server):
    """As two `queue-reminders` runs side by side could queue them: the cap is re-checked at send time."""
    with session_scope(sessions) as s:
        customer = make_customer(s)
        ids = [
            enqueue(
                s,
                dedupe_key=f"race:{i}",
                kind="reminder",
                to_address=customer.email,
                subject=f"Hello {i}",
                body_text="x",
                body_html=None,
                customer_id=customer.id,
                not_before=NOW,
            ).id
            for i in range(2)
        ]
    report = _send(sessions, mail_settings, NOW)
    assert report.sent == [ids[0]] and report.deferred == [ids[1]]
    row = _row(sessions, ids[1])
    assert (row.status, row.attempts) == ("queued", 0)
    assert abs(row.next_attempt_at - (NOW + dt.timedelta(days=3))) < dt.timedelta(seconds=5)
    assert "frequency cap" in row.last_error
    assert len(smtp_server.messages) == 1


def test_an_operators_resend_inside_the_cap_waits_for_it(sessions, mail_settings, smtp_server):
    """Regression: `outbox resolve --resend` queued the message for now, bypassing the cap."""
    with session_scope(sessions) as s:
        customer = make_customer(s)
    first, second = _queue_reminders(sessions, mail_settings, 2, customer=customer)
    assert _send(sessions, mail_settings, NOW).sent == [first]
    with session_scope(sessions) as s:  # the second failed; an operator resends it an hour later
        s.execute(update(OutboundEmail).where(OutboundEmail.id == second).values(status="failed"))
        resolve(s, second, outcome="resend", now=NOW + dt.timedelta(hours=1), actor="test")
    report = _send(sessions, mail_settings, NOW + dt.timedelta(hours=1))
    assert report.sent == [] and report.deferred == [second]
    row = _row(sessions, second)
    assert abs(row.next_attempt_at - (NOW + dt.timedelta(days=3))) < dt.timedelta(seconds=5)
    assert "frequency cap" in row.last_error and len(smtp_server.messages) == 1
    # past the deadline the cap's slot would be: cancelled, never sent late
    with session_scope(sessions) as s:
        s.execute(update(OutboundEmail).where(OutboundEmail.id == second).values(next_attempt_at=NOW))
        s.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id == first)
            .values(counted_at=NOW + dt.timedelta(days=5))
        )
    report = _send(sessions, mail_settings, NOW + dt.timedelta(hours=2))
    assert report.cancelled == [second] and "past the deadline" in _row(sessions, second).last_error
    assert len(smtp_server.messages) == 1


def test_a_message_that_cannot_be_built_is_failed_not_unknown(sessions, mail_settings, smtp_server):
    with session_scope(sessions) as s:
        customer = make_customer(s)
        email_id = enqueue(
            s,
            dedupe_key="bad:1",
            kind="reminder",
            to_address=customer.email,
            subject="Hello\nBcc: everyone@example.com",
            body_text="x",
            body_html=None,
            customer_id=customer.id,
            not_before=NOW,
        ).id
    report = _send(sessions, mail_settings, NOW)
    assert report.failed == [email_id] and report.unknown == []
    row = _row(sessions, email_id)
    assert row.status == "failed" and "cannot be built" in row.last_error and "linefeed" in row.last_error
    assert smtp_server.messages == []


def test_a_stop_request_finishes_the_current_message_and_leaves_the_rest_queued(
    sessions, mail_settings, smtp_server
):
    ids = _queue_reminders(sessions, mail_settings, 3)
    asked = iter([False, True])
    report = _send(sessions, mail_settings, NOW, stop=lambda: next(asked))
    assert report.sent == ids[:1] and report.stopped
    with session_scope(sessions) as s:
        statuses = list(s.scalars(select(OutboundEmail.status).order_by(OutboundEmail.id)))
    assert statuses == ["sent", "queued", "queued"]
