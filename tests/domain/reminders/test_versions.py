"""Approval is of a version: an edit after approval returns the selection to review, a queued email is
cancelled and re-queued from the approved version, never sent with stale picks; concurrent edits collide."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from domain.db import session_scope
from domain.errors import Conflict, InvalidInput
from domain.messaging.mail import SmtpMailer
from domain.messaging.sending import send_outbox
from domain.models import AuditLog, GiftSelection, OutboundEmail, Product, User
from domain.reminders.queueing import queue_reminders
from domain.reminders.selections import (
    approve_selection,
    move_pick,
    remove_pick,
    set_note,
    swap_pick,
)
from tests.delivery_fixtures import NOW, make_customer, make_product, make_selection


def _manager(session, email="am@example.com") -> User:
    user = User(email=email, name="Anna Manager", password_hash="x", role="manager")
    session.add(user)
    session.flush()
    return user


def _emails(session, selection_id: int) -> list[OutboundEmail]:
    return list(
        session.scalars(
            select(OutboundEmail).where(OutboundEmail.selection_id == selection_id).order_by(OutboundEmail.id)
        )
    )


def test_an_edit_after_approval_never_reaches_the_customer_with_stale_picks(
    sessions, mail_settings, smtp_server
):
    """Regression: a swap on an approved selection whose email was already queued was audit-logged, but the
    queued email (rendered before the swap) still went out with the old pick."""
    with session_scope(sessions) as s:
        am = _manager(s)
        c = make_customer(s, account_manager_id=am.id, is_vip=True)
        sel = make_selection(s, c, status="awaiting_review")
        sel.review_cutoff_at = dt.datetime(2011, 12, 5)
        approve_selection(s, sel.id, am)
        assert queue_reminders(s, mail_settings, NOW).queued == [sel.id]
        old = s.get(Product, sel.picks[0].product_id)
        new = make_product(s, "13.00", title="Hand-bound notebook")
        swap_pick(s, sel.id, sel.picks[0].id, new.sku, am)
        assert sel.status == "awaiting_review" and sel.version == 2 and sel.approved_version == 1
        (first,) = _emails(s, sel.id)
        assert first.status == "cancelled" and "edited" in (first.last_error or "")
        sel_id, old_title = sel.id, old.title  # type: ignore[union-attr]
    with session_scope(sessions) as s:
        # Not approved again: nothing is queued.
        assert queue_reminders(s, mail_settings, NOW).queued == []
        approve_selection(s, sel_id, s.get(User, am.id))  # type: ignore[arg-type]
        assert s.get(GiftSelection, sel_id).approved_version == 2  # type: ignore[union-attr]
        assert queue_reminders(s, mail_settings, NOW).queued == [sel_id]
        keys = [e.dedupe_key for e in _emails(s, sel_id)]
        assert keys == [f"selection:{sel_id}", f"selection:{sel_id}:v2"]
    report = send_outbox(sessions, mail_settings, SmtpMailer(mail_settings.mail), NOW, "w1")
    assert len(report.sent) == 1 and len(smtp_server.messages) == 1
    body = smtp_server.messages[0].get_body(preferencelist=("plain",)).get_content()
    assert "Hand-bound notebook" in body and old_title not in body


def test_an_edit_to_a_ready_selection_requeues_the_newest_version(sessions, mail_settings, smtp_server):
    with session_scope(sessions) as s:
        am = _manager(s)
        sel = make_selection(s, make_customer(s, account_manager_id=am.id))
        queue_reminders(s, mail_settings, NOW)
        set_note(s, sel.id, "Anna loves dark chocolate: the second one is my favourite.", am)
        remove_pick(s, sel.id, sel.picks[-1].id, am)
        assert sel.status == "ready" and sel.version == 3  # no review needed: it goes out as edited
        assert [e.status for e in _emails(s, sel.id)] == ["cancelled"]
        assert queue_reminders(s, mail_settings, NOW).queued == [sel.id]
    send_outbox(sessions, mail_settings, SmtpMailer(mail_settings.mail), NOW, "w1")
    (message,) = smtp_server.messages
    assert "Anna loves dark chocolate" in message.get_body(preferencelist=("plain",)).get_content()
    assert "Anna loves dark chocolate" in message.get_body(preferencelist=("html",)).get_content()


def test_a_stale_version_is_refused_and_changes_nothing(session):
    am, other = _manager(session), _manager(session, "bruno@example.com")
    sel = make_selection(session, make_customer(session, account_manager_id=am.id), status="awaiting_review")
    remove_pick(session, sel.id, sel.picks[0].id, am, expected_version=1)
    before = [p.product_id for p in sel.picks]
    with pytest.raises(Conflict, match="changed by someone else"):
        remove_pick(session, sel.id, sel.picks[0].id, other, expected_version=1)
    with pytest.raises(Conflict, match="changed by someone else"):
        approve_selection(session, sel.id, other, expected_version=1)
    assert [p.product_id for p in sel.picks] == before and sel.status == "awaiting_review"


def test_an_email_being_sent_blocks_edits(session, mail_settings):
    am = _manager(session)
    sel = make_selection(session, make_customer(session), status="approved")
    queue_reminders(session, mail_settings, NOW)
    (email,) = _emails(session, sel.id)
    email.status = "sending"
    session.flush()
    with pytest.raises(Conflict, match="being sent"):
        remove_pick(session, sel.id, sel.picks[0].id, am)


def _tier_order(selection: GiftSelection, tier: int) -> list[int]:
    return [p.id for p in sorted(selection.picks, key=lambda p: (p.position, p.id)) if p.tier == tier]


def test_move_pick_reorders_within_its_tier_raises_the_version_and_is_audited(session):
    user = _manager(session)
    sel = make_selection(session, status="awaiting_review")
    first, second = _tier_order(sel, 2)
    move_pick(session, sel.id, second, -1, user, expected_version=1)
    assert _tier_order(sel, 2) == [second, first] and sel.version == 2
    assert _tier_order(sel, 1) == [p.id for p in sel.picks if p.tier == 1]  # other tiers untouched
    (log,) = session.scalars(select(AuditLog).where(AuditLog.action == "selection.pick_moved"))
    assert (log.details["before"], log.details["after"]) == ([first, second], [second, first])
    move_pick(session, sel.id, second, 1, user, expected_version=2)
    assert _tier_order(sel, 2) == [first, second] and sel.version == 3


def test_move_pick_past_the_end_of_its_tier_or_from_a_stale_version_changes_nothing(session):
    user = _manager(session)
    sel = make_selection(session, status="awaiting_review")
    first, second = _tier_order(sel, 3)
    with pytest.raises(InvalidInput) as up:
        move_pick(session, sel.id, first, -1, user)
    assert up.value.field == "step" and "already first" in up.value.detail
    with pytest.raises(InvalidInput):
        move_pick(session, sel.id, second, 1, user)
    with pytest.raises(Conflict, match="changed by someone else"):
        move_pick(session, sel.id, second, -1, user, expected_version=7)
    assert _tier_order(sel, 3) == [first, second] and sel.version == 1


def test_a_move_after_approval_returns_the_selection_to_review_and_cancels_the_queued_email(
    session, mail_settings
):
    user = _manager(session)
    customer = make_customer(session, is_vip=True)
    sel = make_selection(session, customer, status="awaiting_review")
    sel.review_cutoff_at = dt.datetime(2011, 12, 5)
    approve_selection(session, sel.id, user, expected_version=1)
    assert queue_reminders(session, mail_settings, NOW, selection_ids=[sel.id]).queued == [sel.id]
    first, second = _tier_order(sel, 1)
    move_pick(session, sel.id, second, -1, user, expected_version=1)
    assert (sel.status, sel.version, sel.approved_version) == ("awaiting_review", 2, 1)
    assert [e.status for e in _emails(session, sel.id)] == ["cancelled"]
