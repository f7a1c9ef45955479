"""The admin pages: users, client assignments, the campaign report. A manager gets 404 on every one of
them, pages and posts alike; every form refuses a post without its CSRF token; every change is audited."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from werkzeug.security import check_password_hash

from domain.db import session_scope
from domain.models import AuditLog, Customer, TriggerAssignment, User
from tests.api.manage.conftest import PASSWORD, form_token, sign_in
from tests.delivery_fixtures import make_customer, make_snapshot

ADMIN_PAGES = ("/manage/admin/users", "/manage/admin/clients", "/manage/admin/campaigns")


def _admin_posts(people) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    return [
        (
            "/manage/admin/users",
            {"email": "eve@example.com", "name": "Eve", "role": "admin", "password": "x" * 12},
        ),
        (f"/manage/admin/users/{people.bruno}/active", {"active": 0}),
        (f"/manage/admin/users/{people.admin}/password", {"password": "taken over now"}),
        ("/manage/admin/clients/assign", {"customer_ids": [people.bruno_client], "manager_id": people.anna}),
        ("/manage/admin/clients/unassign", {"customer_ids": [people.bruno_client]}),
    ]


@pytest.fixture
def admin(client, people):  # type: ignore[no-untyped-def]
    assert sign_in(client, "admin@example.com").status_code == 302
    return client


def _state(app):  # type: ignore[no-untyped-def]
    with session_scope(app.extensions["giftrec"].sessions) as s:
        users = sorted((u.email, u.role, u.is_active, u.password_hash) for u in s.scalars(select(User)))
        managers = sorted((c.id, c.account_manager_id) for c in s.scalars(select(Customer)))
        audit = s.scalars(select(AuditLog.action)).all()
        return users, managers, audit


def test_a_manager_gets_404_on_every_admin_page_and_post_and_nothing_changes(app, anna, people):
    for path in ADMIN_PAGES:
        resp = anna.get(path)
        assert resp.status_code == 404, path
        assert "Not found" in resp.text
    assert "/manage/admin/" not in anna.get("/manage/").text  # no link to them either
    token = form_token(anna, f"/manage/clients/{people.anna_client}")
    before = _state(app)
    for path, data in _admin_posts(people):
        assert anna.post(path, data={"csrf_token": token, **data}).status_code == 404, path
    assert _state(app) == before


@pytest.mark.parametrize("index", range(5))
def test_each_admin_form_refuses_a_post_without_or_with_a_wrong_csrf_token(app, admin, people, index):
    path, data = _admin_posts(people)[index]
    before = _state(app)
    assert admin.post(path, data=data).status_code == 400
    assert admin.post(path, data={"csrf_token": "forged", **data}).status_code == 400
    assert _state(app) == before


def test_the_admin_creates_a_manager_who_can_sign_in_with_a_hashed_password(app, admin, client):
    token = form_token(admin, "/manage/admin/users")
    resp = admin.post(
        "/manage/admin/users",
        data={
            "csrf_token": token,
            "email": "Carla@Example.com",
            "name": "Carla",
            "role": "manager",
            "password": "a fine password",
        },
        follow_redirects=True,
    )
    assert resp.status_code == 200 and "Carla (manager) can now sign in as carla@example.com" in resp.text
    with session_scope(app.extensions["giftrec"].sessions) as s:
        carla = s.scalar(select(User).where(User.email == "carla@example.com"))
        assert carla.password_hash != "a fine password"
        assert check_password_hash(carla.password_hash, "a fine password")
        log = s.scalar(select(AuditLog).where(AuditLog.action == "user.created"))
        assert (log.actor, log.entity_id, log.details["role"]) == (
            "user:admin@example.com",
            str(carla.id),
            "manager",
        )
    admin.post("/manage/logout", data={"csrf_token": form_token(admin, "/manage/")})
    assert sign_in(client, "carla@example.com", "a fine password").status_code == 302


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"password": "short"}, "password", "At least 8 characters."),
        ({"email": "not-an-email"}, "email", "is not an email address"),
        ({"email": "Anna@example.com"}, "email", "a user with email anna@example.com already exists"),
        ({"role": "viewer"}, "role", "Not a valid choice"),
        ({"name": ""}, "name", "Enter a name."),
    ],
)
def test_new_user_form_errors_are_shown_next_to_their_fields_and_nothing_is_created(
    app, admin, change, field, message
):
    token = form_token(admin, "/manage/admin/users")
    before = _state(app)
    data = {"email": "d@example.com", "name": "D", "role": "manager", "password": "x" * 10} | change
    resp = admin.post("/manage/admin/users", data={"csrf_token": token, **data})
    assert resp.status_code == 422
    assert f'id="{field}-error"' in resp.text and message in resp.text
    assert _state(app) == before


def test_a_disabled_user_is_signed_out_and_cannot_sign_in_until_enabled(app, admin, client, people):
    from flask.testing import FlaskClient

    bruno = FlaskClient(app, app.response_class, use_cookies=True)
    assert sign_in(bruno, "bruno@example.com").status_code == 302
    token = form_token(admin, "/manage/admin/users")
    resp = admin.post(f"/manage/admin/users/{people.bruno}/active", data={"csrf_token": token, "active": 0})
    assert resp.status_code == 302
    assert bruno.get("/manage/").status_code == 302  # his session ends at its next request
    assert sign_in(bruno, "bruno@example.com").status_code == 401
    admin.post(f"/manage/admin/users/{people.bruno}/active", data={"csrf_token": token, "active": 1})
    assert sign_in(bruno, "bruno@example.com").status_code == 302
    _, _, audit = _state(app)
    assert [a for a in audit if a.startswith("user.")] == ["user.disabled", "user.enabled"]


def test_an_admin_cannot_disable_themselves(app, admin, people):
    token = form_token(admin, "/manage/admin/users")
    resp = admin.post(f"/manage/admin/users/{people.admin}/active", data={"csrf_token": token, "active": 0})
    assert resp.status_code == 422 and "you cannot disable your own account" in resp.text
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.get(User, people.admin).is_active


def test_the_admin_resets_a_password(app, admin, client, people):
    token = form_token(admin, "/manage/admin/users")
    short = admin.post(
        f"/manage/admin/users/{people.anna}/password", data={"csrf_token": token, "password": "x"}
    )
    assert short.status_code == 422 and f'id="password-{people.anna}-error"' in short.text
    ok = admin.post(
        f"/manage/admin/users/{people.anna}/password",
        data={"csrf_token": token, "password": "brand new secret"},
    )
    assert ok.status_code == 302
    assert sign_in(client, "anna@example.com", PASSWORD).status_code == 401
    assert sign_in(client, "anna@example.com", "brand new secret").status_code == 302
    with session_scope(app.extensions["giftrec"].sessions) as s:
        log = s.scalar(select(AuditLog).where(AuditLog.action == "user.password_reset"))
        assert log.entity_id == str(people.anna) and "brand new secret" not in str(log.details)


def test_the_admin_assigns_one_client_then_a_few_and_unassigns_and_each_change_is_audited(app, admin, people):
    with session_scope(app.extensions["giftrec"].sessions) as s:
        extra = [make_customer(s, name=f"VIP {i}", is_vip=True).id for i in range(3)]
    token = form_token(admin, "/manage/admin/clients")
    page = admin.get("/manage/admin/clients").text
    assert "VIP 0" in page and "Peter Brown" in page
    one = admin.post(
        "/manage/admin/clients/assign",
        data={"csrf_token": token, "customer_ids": [people.bruno_client], "manager_id": people.anna},
        follow_redirects=True,
    )
    assert "1 client(s) assigned to Anna Manager." in one.text
    few = admin.post(
        "/manage/admin/clients/assign",
        data={"csrf_token": token, "customer_ids": extra, "manager_id": people.bruno},
        follow_redirects=True,
    )
    assert "3 client(s) assigned to Bruno Manager." in few.text
    gone = admin.post(
        "/manage/admin/clients/unassign",
        data={"csrf_token": token, "customer_ids": extra[:2]},
        follow_redirects=True,
    )
    assert "2 client(s) no longer have a manager." in gone.text
    with session_scope(app.extensions["giftrec"].sessions) as s:
        assert s.get(Customer, people.bruno_client).account_manager_id == people.anna
        assert [s.get(Customer, i).account_manager_id for i in extra] == [None, None, people.bruno]
        logs = s.scalars(select(AuditLog).where(AuditLog.action.like("client.%")).order_by(AuditLog.id)).all()
        assert [(a.action, a.entity_id) for a in logs][:1] == [("client.assigned", str(people.bruno_client))]
        assert logs[0].details == {"before_manager_id": people.bruno, "after_manager_id": people.anna}
        assert [a.action for a in logs] == ["client.assigned"] * 4 + ["client.unassigned"] * 2
        assert all(a.actor_user_id == people.admin for a in logs)


def test_a_bad_assignment_changes_nothing_and_says_why_by_its_field(app, admin, people):
    token = form_token(admin, "/manage/admin/clients")
    before = _state(app)
    nobody = admin.post(
        "/manage/admin/clients/assign",
        data={"csrf_token": token, "customer_ids": [], "manager_id": people.anna},
    )
    assert nobody.status_code == 422 and 'id="customer_ids-error"' in nobody.text
    unknown = admin.post(
        "/manage/admin/clients/assign",
        data={"csrf_token": token, "customer_ids": [people.anna_client, 999999], "manager_id": people.bruno},
    )
    assert unknown.status_code == 422 and "no such client: 999999" in unknown.text
    no_manager = admin.post(
        "/manage/admin/clients/assign",
        data={"csrf_token": token, "customer_ids": [people.anna_client], "manager_id": 0},
    )
    assert no_manager.status_code == 422 and 'id="manager_id-error"' in no_manager.text
    assert _state(app) == before


def test_an_assigned_client_appears_for_the_new_manager_and_leaves_the_old_one(app, admin, client, people):
    token = form_token(admin, "/manage/admin/clients")
    admin.post(
        "/manage/admin/clients/assign",
        data={"csrf_token": token, "customer_ids": [people.bruno_client], "manager_id": people.anna},
    )
    from flask.testing import FlaskClient

    anna = FlaskClient(app, app.response_class, use_cookies=True)
    assert sign_in(anna).status_code == 302
    assert "Peter Brown" in anna.get("/manage/").text
    assert anna.get(f"/manage/clients/{people.bruno_client}").status_code == 200
    bruno = FlaskClient(app, app.response_class, use_cookies=True)
    assert sign_in(bruno, "bruno@example.com").status_code == 302
    assert bruno.get(f"/manage/clients/{people.bruno_client}").status_code == 404


def test_the_campaign_page_draws_one_chart_per_trigger_and_the_segment_sizes(app, admin, people):
    with session_scope(app.extensions["giftrec"].sessions) as s:
        customers = [make_customer(s, name=f"C{i}").id for i in range(64)]
        for i, cid in enumerate(customers):
            s.add(
                TriggerAssignment(
                    customer_id=cid,
                    trigger="winback",
                    window_key=f"w{i}",
                    eligible_on=dt.date(2011, 11, 20),
                    eligible_at=dt.datetime(2011, 11, 20, 6),
                    period="2011Q4",
                    arm="treatment" if i % 2 else "control",
                )
            )
        s.add(
            TriggerAssignment(
                customer_id=customers[0],
                trigger="new_arrivals",
                window_key="n",
                eligible_on=dt.date(2011, 11, 21),
                eligible_at=dt.datetime(2011, 11, 21, 6),
                period="2011Q4",
                arm="treatment",
            )
        )
        for day, segment, cid in (
            (dt.date(2011, 11, 29), "champions", customers[0]),
            (dt.date(2011, 11, 29), "at_risk", customers[1]),
            (dt.date(2011, 11, 30), "champions", customers[0]),
            (dt.date(2011, 11, 30), "champions", customers[1]),
        ):
            make_snapshot(s, cid, day, segment)
    page = admin.get("/manage/admin/campaigns")
    assert page.status_code == 200
    text = page.text
    assert text.count('class="chart uplift"') == 2  # winback and new arrivals
    assert "0.0% (0 of 32)" in text  # treated and control bars, nobody ordered
    assert "difference +0.0%, 95 % interval [" in text  # 32 per group: an interval
    assert "too few to tell (need" in text  # new arrivals has 1 treated, no control
    sizes = text.split('id="sizes-title"')[1]
    assert sizes.count("<polyline") == 2 and "champions: 2" in sizes and "at risk: 0" in sizes
    assert "2 snapshot day(s), 29 Nov 2011 to 30 Nov 2011" in sizes


def test_the_campaign_page_names_a_bad_period_by_its_field(admin):
    resp = admin.get("/manage/admin/campaigns?since=2011-12-31&until=2011-01-01")
    assert resp.status_code == 422 and 'id="since-error"' in resp.text
    bad = admin.get("/manage/admin/campaigns?since=yesterday")
    assert bad.status_code == 422 and 'id="since-error"' in bad.text


def test_a_password_reset_ends_the_users_open_sessions(app, admin, people):
    """Regression: after an admin reset Anna's password, a session Anna (or whoever had her password)
    signed in before kept working until it expired."""
    other = app.test_client()
    assert sign_in(other, "anna@example.com", PASSWORD).status_code == 302
    assert other.get("/manage/").status_code == 200
    token = form_token(admin, "/manage/admin/users")
    reset = admin.post(
        f"/manage/admin/users/{people.anna}/password",
        data={"csrf_token": token, "password": "brand new secret"},
    )
    assert reset.status_code == 302
    gone = other.get("/manage/")
    assert gone.status_code == 302 and "/manage/login" in gone.headers["Location"]
    assert admin.get("/manage/admin/users").status_code == 200  # the admin's own session is untouched
    assert sign_in(other, "anna@example.com", "brand new secret").status_code == 302
    assert other.get("/manage/").status_code == 200
