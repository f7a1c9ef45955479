"""The send-outbox job: --today moves the business date only; a killed sender never sends twice."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from domain.db import session_scope
from domain.messaging.mail import SmtpMailer
from domain.messaging.outbox import enqueue
from domain.models import OutboundEmail
from domain.models._types import utcnow
from jobs import send_outbox
from jobs.context import JobContext
from tests.delivery_fixtures import NOW, make_customer


def _enqueue(sessions, n, not_before=NOW):
    with session_scope(sessions) as s:
        rows = []
        for i in range(n):
            customer = make_customer(s)
            rows.append(
                enqueue(
                    s,
                    dedupe_key=f"job:{customer.id}",
                    kind="reminder",
                    to_address=customer.email,
                    subject=f"Hello {i}",
                    body_text="x",
                    body_html=None,
                    customer_id=customer.id,
                    not_before=not_before,
                )
            )
        s.flush()
        return [row.id for row in rows]


def test_today_moves_the_business_date_never_the_clock_of_claims(sessions, mail_settings, smtp_server):
    """Regression: `jobs run send-outbox --today D` wrote claimed_at/sent_at of D, and a run --today some
    days ahead declared the live scheduler's in-flight send abandoned ('unknown')."""
    due, in_flight = _enqueue(sessions, 2)
    claimed_at = utcnow() - dt.timedelta(seconds=30)  # the real scheduler is sending this one right now
    with session_scope(sessions) as s:
        s.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id == in_flight)
            .values(status="sending", claimed_at=claimed_at, claimed_by="scheduler", attempts=1)
        )
    before = utcnow()
    ctx = JobContext(mail_settings, sessions, SmtpMailer(mail_settings.mail), today=dt.date(2030, 1, 1))
    summary = send_outbox.run(ctx)
    assert summary.startswith("sent 1, retry later 0, failed 0, unknown 0, cancelled 0, abandoned"), summary
    after = utcnow()
    with session_scope(sessions) as s:
        sent, flying = s.get(OutboundEmail, due), s.get(OutboundEmail, in_flight)
        assert before <= sent.claimed_at <= sent.sent_at <= after  # the wall clock
        assert sent.counted_at.date() == dt.date(2030, 1, 1)  # the business date, for the cap
        assert (flying.status, flying.claimed_at) == ("sending", claimed_at)  # not 'unknown'
    assert len(smtp_server.messages) == 1
