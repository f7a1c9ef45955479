"""Reordering picks from the review page (up / down forms) and batch approval from a page that shows each
email in full: versions are checked, a selection changed meanwhile is refused by name, the rest approved."""

from __future__ import annotations

import re

from sqlalchemy import select

from domain.db import session_scope
from domain.models import AuditLog, GiftSelection, OutboundEmail, Product
from tests.api.manage.conftest import form_token


def _order(app, selection_id: int, tier: int) -> list[int]:  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as s:
        picks = s.get(GiftSelection, selection_id).picks
        return [p.id for p in sorted(picks, key=lambda p: (p.position, p.id)) if p.tier == tier]


def _status(app, selection_id: int) -> tuple[str, int, int | None]:  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as s:
        sel = s.get(GiftSelection, selection_id)
        return sel.status, sel.version, sel.approved_version


def test_up_and_down_buttons_reorder_the_picks_of_a_tier(app, anna, people):
    path = f"/manage/selections/{people.anna_selection}"
    page = anna.get(path).text
    first, second = _order(app, people.anna_selection, 1)
    assert f"{path}/picks/{second}/move" in page and f"{path}/picks/{first}/move" in page
    assert re.search(rf'picks/{first}/move">.*?name="step" value="1"', page, re.S)  # first: only down
    token = form_token(anna, path)
    resp = anna.post(
        f"{path}/picks/{second}/move",
        data={"csrf_token": token, "version": 1, "step": -1},
        follow_redirects=True,
    )
    assert "Moved up in tier 1." in resp.text
    assert _order(app, people.anna_selection, 1) == [second, first]
    assert _status(app, people.anna_selection) == ("awaiting_review", 2, None)
    with session_scope(app.extensions["giftrec"].sessions) as s:
        picks = {
            p.id: s.get(Product, p.product_id).title
            for p in s.get(GiftSelection, people.anna_selection).picks
        }
    text = anna.get(f"{path}/preview").text.split('id="email-text"')[1]
    assert text.index(picks[second]) < text.index(picks[first])  # the email lists the tier in the new order
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.scalar(select(AuditLog.action).where(AuditLog.action == "selection.pick_moved"))


def test_a_move_from_a_stale_page_is_refused_and_changes_nothing(app, anna, people):
    path = f"/manage/selections/{people.anna_selection}"
    token = form_token(anna, path)
    first, second = _order(app, people.anna_selection, 2)
    anna.post(f"{path}/note", data={"csrf_token": token, "version": 1, "note": "hello"})
    resp = anna.post(f"{path}/picks/{second}/move", data={"csrf_token": token, "version": 1, "step": -1})
    assert resp.status_code == 409 and "changed by someone else since you opened it" in resp.text
    assert _order(app, people.anna_selection, 2) == [first, second]
    assert _status(app, people.anna_selection)[1] == 2


def test_a_move_after_approval_returns_the_selection_to_review(app, anna, people):
    path = f"/manage/selections/{people.anna_selection}"
    token = form_token(anna, path)
    anna.post(f"{path}/approve", data={"csrf_token": token, "version": 1})
    first, second = _order(app, people.anna_selection, 3)
    resp = anna.post(f"{path}/picks/{first}/move", data={"csrf_token": token, "version": 1, "step": 1})
    assert resp.status_code == 302
    assert _status(app, people.anna_selection) == ("awaiting_review", 2, 1)
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert [e.status for e in s.scalars(select(OutboundEmail))] == ["cancelled"]


def test_move_refuses_a_post_without_a_csrf_token_and_another_managers_pick(app, anna, people):
    path = f"/manage/selections/{people.anna_selection}"
    first, second = _order(app, people.anna_selection, 1)
    assert anna.post(f"{path}/picks/{second}/move", data={"version": 1, "step": -1}).status_code == 400
    token = form_token(anna, path)
    theirs = _order(app, people.bruno_selection, 1)[1]
    resp = anna.post(
        f"/manage/selections/{people.bruno_selection}/picks/{theirs}/move",
        data={"csrf_token": token, "version": 1, "step": -1},
    )
    assert resp.status_code == 404
    assert _order(app, people.anna_selection, 1) == [first, second]
    assert _status(app, people.bruno_selection)[1] == 1


def test_the_batch_page_shows_each_email_in_full_with_its_version(app, anna, people):
    page = anna.get("/manage/batch")
    assert page.status_code == 200
    text = page.text
    assert "Peter Brown" not in text  # Bruno's client
    for sid in (people.anna_selection, people.later_selection):
        assert f'src="/manage/selections/{sid}/preview.html"' in text
        assert f'name="version-{sid}" value="1"' in text
    assert text.count('<pre class="email-text">') == 2 and "Product" in text
    assert "Olga Ivanova: Anna&#39;s birthday, 08 Dec 2011" in text
    assert "Approve all 2 as shown" in text


def test_batch_approve_approves_each_at_its_version_and_refuses_one_changed_meanwhile_by_name(
    app, anna, people
):
    token = form_token(anna, "/manage/batch")
    # Someone edits the later selection after the batch page was opened at version 1.
    path = f"/manage/selections/{people.later_selection}"
    anna.post(f"{path}/note", data={"csrf_token": token, "version": 1, "note": "changed meanwhile"})
    resp = anna.post(
        "/manage/batch/approve",
        data={
            "csrf_token": token,
            f"version-{people.anna_selection}": 1,
            f"version-{people.later_selection}": 1,
        },
        follow_redirects=True,
    )
    assert "1 approved: 1 email(s) queued." in resp.text
    assert "Not approved: Olga Ivanova: Masha&#39;s birthday, 10 Dec 2011." in resp.text
    assert "changed by someone else since you opened it" in resp.text
    assert _status(app, people.anna_selection) == ("approved", 1, 1)
    assert _status(app, people.later_selection) == ("awaiting_review", 2, None)
    with session_scope(app.extensions["giftrec"].sessions) as s:
        (email,) = s.scalars(select(OutboundEmail))
        assert (email.selection_id, email.status) == (people.anna_selection, "queued")


def test_batch_approve_without_a_csrf_token_or_with_another_managers_selection_approves_nothing(
    app, anna, people
):
    data = {f"version-{people.anna_selection}": 1, f"version-{people.later_selection}": 1}
    assert anna.post("/manage/batch/approve", data=data).status_code == 400
    token = form_token(anna, "/manage/batch")
    crafted = {**data, f"version-{people.bruno_selection}": 1, "csrf_token": token}
    resp = anna.post("/manage/batch/approve", data=crafted)
    assert resp.status_code == 404 and "Peter Brown" not in resp.text
    for sid in (people.anna_selection, people.later_selection, people.bruno_selection):
        assert _status(app, sid) == ("awaiting_review", 1, None)
    bad = anna.post(
        "/manage/batch/approve", data={"csrf_token": token, f"version-{people.anna_selection}": "x"}
    )
    assert bad.status_code == 302
    assert _status(app, people.anna_selection) == ("awaiting_review", 1, None)
