"""Bad input and safety on /manage: other managers' clients are 404, CSRF, finished selections, races."""

from __future__ import annotations

from sqlalchemy import select

from domain.db import session_scope
from domain.models import AuditLog, GiftSelection, OutboundEmail
from tests.api.manage.conftest import form_token, sign_in


def _selection(app, selection_id: int) -> GiftSelection:  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as s:
        sel = s.get(GiftSelection, selection_id)
        _ = list(sel.picks)
        return sel


def test_manager_a_gets_404_for_manager_bs_client_and_selection_pages(anna, people):
    for path in (
        f"/manage/clients/{people.bruno_client}",
        f"/manage/selections/{people.bruno_selection}",
        f"/manage/selections/{people.bruno_selection}/preview",
        f"/manage/selections/{people.bruno_selection}/preview.html",
        f"/manage/selections/{people.bruno_selection}?replace=1",
    ):
        resp = anna.get(path)
        assert resp.status_code == 404, path
        assert "Peter Brown" not in resp.text
    assert anna.get(f"/manage/clients/{people.anna_client}").status_code == 200


def test_manager_a_gets_404_for_posts_on_manager_bs_selection_and_nothing_changes(app, anna, people):
    token = form_token(anna, f"/manage/selections/{people.anna_selection}")
    before = _selection(app, people.bruno_selection)
    pick = before.picks[0].id
    base = f"/manage/selections/{people.bruno_selection}"
    for path, data in (
        (f"{base}/approve", {"version": 1}),
        (f"{base}/skip", {"version": 1, "reason": "mine now"}),
        (f"{base}/note", {"version": 1, "note": "hello"}),
        (f"{base}/picks/{pick}/remove", {"version": 1}),
        (f"{base}/picks/{pick}/replace", {"version": 1, "sku": "X"}),
        (f"{base}/picks", {"version": 1, "sku": "X", "tier": 1}),
    ):
        assert anna.post(path, data={"csrf_token": token, **data}).status_code == 404, path
    recipient = before.recipient_id
    resp = anna.post(
        f"/manage/clients/{people.bruno_client}/recipients/{recipient}/stop", data={"csrf_token": token}
    )
    assert resp.status_code == 404
    after = _selection(app, people.bruno_selection)
    assert (after.status, after.version, len(after.picks), after.note) == ("awaiting_review", 1, 6, None)


def test_the_admin_sees_every_client(client, people):
    assert sign_in(client, "admin@example.com").status_code == 302
    today = client.get("/manage/").text
    assert "Peter Brown" in today and "Olga Ivanova" in today
    assert client.get(f"/manage/selections/{people.bruno_selection}").status_code == 200


def test_a_post_without_a_csrf_token_is_refused_and_changes_nothing(app, anna, people):
    resp = anna.post(f"/manage/selections/{people.anna_selection}/approve", data={"version": 1})
    assert resp.status_code == 400 and "Nothing was changed" in resp.text
    assert _selection(app, people.anna_selection).status == "awaiting_review"


def test_a_post_with_a_wrong_csrf_token_is_refused_and_changes_nothing(app, anna, people):
    resp = anna.post(
        f"/manage/selections/{people.anna_selection}/skip",
        data={"csrf_token": "forged", "version": 1, "reason": "forged"},
    )
    assert resp.status_code == 400
    assert _selection(app, people.anna_selection).status == "awaiting_review"
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.scalars(select(AuditLog).where(AuditLog.action.like("selection.%"))).all() == []


def test_a_sent_selection_cannot_be_edited(app, anna, people):
    token = form_token(anna, f"/manage/selections/{people.anna_selection}")
    with session_scope(app.extensions["giftrec"].sessions) as s:
        s.get(GiftSelection, people.anna_selection).status = "sent"
    page = anna.get(f"/manage/selections/{people.anna_selection}")
    assert "it can no longer be changed" in page.text and "Approve version" not in page.text
    pick = _selection(app, people.anna_selection).picks[0].id
    resp = anna.post(
        f"/manage/selections/{people.anna_selection}/picks/{pick}/remove",
        data={"csrf_token": token, "version": 1},
    )
    assert resp.status_code == 409 and "can no longer be changed" in resp.text
    assert len(_selection(app, people.anna_selection).picks) == 6


def test_the_second_of_two_concurrent_saves_is_refused_with_a_clear_message(app, anna, client, people):
    path = f"/manage/selections/{people.anna_selection}"
    token = form_token(anna, path)
    sel = _selection(app, people.anna_selection)
    first = anna.post(f"{path}/picks/{sel.picks[0].id}/remove", data={"csrf_token": token, "version": 1})
    assert first.status_code == 302
    # The admin opened the page at version 1 too, and saves a note after Anna's change.
    assert sign_in(client, "admin@example.com").status_code == 302
    admin_token = form_token(client, path)
    second = client.post(f"{path}/note", data={"csrf_token": admin_token, "version": 1, "note": "Hello"})
    assert second.status_code == 409
    assert "changed by someone else since you opened it" in second.text
    after = _selection(app, people.anna_selection)
    assert (after.version, after.note, len(after.picks)) == (2, None, 5)


def test_form_errors_are_shown_next_to_their_field(app, anna, people):
    path = f"/manage/selections/{people.anna_selection}"
    token = form_token(anna, path)
    resp = anna.post(f"{path}/skip", data={"csrf_token": token, "version": 1, "reason": ""})
    assert resp.status_code == 422
    assert 'id="reason-error"' in resp.text and "Say why no email goes out." in resp.text
    assert 'aria-describedby="reason-error"' in resp.text
    long_note = anna.post(f"{path}/note", data={"csrf_token": token, "version": 1, "note": "x" * 1001})
    assert long_note.status_code == 422 and 'id="note-error"' in long_note.text
    bad_sku = anna.post(f"{path}/picks", data={"csrf_token": token, "version": 1, "sku": "NOPE", "tier": 1})
    assert bad_sku.status_code == 422
    assert 'id="sku-error"' in bad_sku.text and "no product with SKU" in bad_sku.text
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.scalars(select(OutboundEmail)).all() == []
    assert _selection(app, people.anna_selection).version == 1
