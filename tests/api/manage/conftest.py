"""Fixtures of the /manage tests: two managers with a VIP client each, an admin, a pinned clock, sign-in."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest

from domain.access.users import create_user
from domain.db import session_scope
from tests.delivery_fixtures import make_customer, make_selection

NOW = dt.datetime(2011, 12, 1, 9, 0)
PASSWORD = "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@dataclass
class People:
    anna: int
    bruno: int
    admin: int
    anna_client: int
    bruno_client: int
    anna_selection: int
    bruno_selection: int
    later_selection: int


@pytest.fixture
def people(app) -> People:  # type: ignore[no-untyped-def]
    """Anna and Bruno manage one VIP client each; Anna's has two selections awaiting review."""
    ctx = app.extensions["giftrec"]
    ctx.services["clock"] = lambda: NOW
    with session_scope(ctx.sessions) as s:
        anna = create_user(s, "anna@example.com", "Anna Manager", PASSWORD, "manager")
        bruno = create_user(s, "bruno@example.com", "Bruno Manager", PASSWORD, "manager")
        admin = create_user(s, "admin@example.com", "Ada Admin", PASSWORD, "admin")
        ca = make_customer(s, name="Olga Ivanova", is_vip=True, account_manager_id=anna.id)
        cb = make_customer(s, name="Peter Brown", is_vip=True, account_manager_id=bruno.id)
        sa = make_selection(s, ca, status="awaiting_review", occasion_on=dt.date(2011, 12, 8))
        sa.review_cutoff_at = dt.datetime(2011, 12, 5)
        later = make_selection(
            s, ca, status="awaiting_review", occasion_on=dt.date(2011, 12, 10), recipient_name="Masha"
        )
        later.review_cutoff_at = dt.datetime(2011, 12, 7)
        sb = make_selection(s, cb, status="awaiting_review", occasion_on=dt.date(2011, 12, 9))
        sb.review_cutoff_at = dt.datetime(2011, 12, 6)
        s.flush()
        return People(anna.id, bruno.id, admin.id, ca.id, cb.id, sa.id, sb.id, later.id)


def token(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client, email: str = "anna@example.com", password: str = PASSWORD):  # type: ignore[no-untyped-def]
    page = client.get("/manage/login")
    return client.post(
        "/manage/login",
        data={"csrf_token": token(page.text), "email": email, "password": password},
    )


@pytest.fixture
def anna(client, people):  # type: ignore[no-untyped-def]
    """A test client signed in as Anna."""
    assert sign_in(client).status_code == 302
    return client


def form_token(client, path: str) -> str:  # type: ignore[no-untyped-def]
    page = client.get(path)
    assert page.status_code == 200, page.text
    return token(page.text)
