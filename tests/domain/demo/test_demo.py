"""Demo data on the real sample: deterministic, idempotent, labelled, plausible, and VIPs by real spend."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from api.cli import cli
from domain import schema
from domain.access.users import authenticate
from domain.customers.imports import import_orders
from domain.db import Base, make_engine, make_session_factory, session_scope
from domain.demo.people import OCCASION_CODES
from domain.demo.seed import (
    DEMO_ADMIN,
    DEMO_MANAGERS,
    DEMO_PASSWORD,
    DEMO_TODAY,
    DemoSummary,
    seed_demo,
)
from domain.models import (
    DATE_KINDS,
    AuditLog,
    Customer,
    GiftGiven,
    ImportantDate,
    OccasionOptIn,
    Order,
    OrderLine,
    Product,
    Recipient,
    User,
)
from domain.reminders.occasions import BUILTIN_OCCASIONS

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "online_retail_sample.csv.gz"
# A stand-in for the real date: its two-week window crosses 29 February 2024.
TODAY = dt.date(2024, 2, 20)
FEMALE = {"wife", "mother"}
MALE = {"husband", "father"}
RELATIONSHIPS = FEMALE | MALE | {"child", "friend", "colleague", "partner_company"}


def _snapshot(session: Session) -> dict[str, Any]:
    """Every generated row by natural keys (external ids, skus, relationship), without ids or timestamps."""
    PW = DEMO_PASSWORD  # noqa: N806
    users = {u.id: u for u in session.scalars(select(User))}
    customers = {c.id: c for c in session.scalars(select(Customer))}
    skus = dict(session.execute(select(Product.id, Product.sku)).all())
    recipients = {r.id: r for r in session.scalars(select(Recipient))}
    # Relationships are drawn without replacement, so (customer, relationship) names a recipient.
    key = {r.id: (customers[r.customer_id].external_id, r.relationship_) for r in recipients.values()}
    return {
        "users": sorted(
            (u.email, u.name, u.role, u.is_active, u.is_generated, check_password_hash(u.password_hash, PW))
            for u in users.values()
        ),
        "customers": sorted(
            (
                c.external_id, c.name, c.email, c.locale, c.time_zone, c.country, c.email_consent, c.is_vip,
                users[c.account_manager_id].email if c.account_manager_id else None, c.is_generated,
            )
            for c in customers.values()
        ),
        "recipients": sorted(
            (key[r.id], r.name, r.gender, r.birth_on, tuple(r.interests), r.is_generated)
            for r in recipients.values()
        ),
        "dates": sorted(
            (
                key[d.recipient_id], d.kind, d.title or "", d.month, d.day, d.year or 0, d.recurrence,
                d.feb29_rule, d.lead_days or 0, d.is_stopped, d.is_generated,
            )
            for d in session.scalars(select(ImportantDate))
        ),
        "gifts": sorted(
            (key[g.recipient_id], skus[g.product_id], g.given_on, g.order_line_id is not None, g.is_generated)
            for g in session.scalars(select(GiftGiven))
        ),
        "opt_ins": sorted(
            (
                customers[o.customer_id].external_id, o.occasion_code,
                key[o.recipient_id] if o.recipient_id else ("", ""), o.is_generated,
            )
            for o in session.scalars(select(OccasionOptIn))
        ),
    }  # fmt: skip


@dataclass
class Seeded:
    summary: DemoSummary
    again: DemoSummary
    before: dict[str, Any]
    after: dict[str, Any]
    audit: list[tuple[str, str, dict[str, Any]]]
    spend: dict[str, Decimal]
    #: external id -> {(sku, day)} of its sale lines.
    bought: dict[str, set[tuple[str, dt.date]]]
    title_words: set[str]
    login_ok: bool


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


def _import_and_seed(factory: Any, rejects: Path) -> DemoSummary:
    with session_scope(factory) as s:
        import_orders(s, SAMPLE, "online-retail", reject_path=rejects)
    with session_scope(factory) as s:
        return seed_demo(s, today=TODAY)


@pytest.fixture(scope="module")
def seeded(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """The sample imported and seeded twice; everything the tests check is read out, then the tables emptied.

    (Reading everything out once keeps this module to one import of the sample.)
    """
    _empty(engine)
    factory = make_session_factory(engine)
    try:
        summary = _import_and_seed(factory, tmp_path_factory.mktemp("demo") / "rejects.csv")
        with factory() as s:
            before = _snapshot(s)
        with session_scope(factory) as s:
            again = seed_demo(s, today=TODAY)
        with factory() as s:
            after = _snapshot(s)
            audit = [(a.actor, a.action, a.details) for a in s.scalars(select(AuditLog))]
            spend: dict[str, Decimal] = defaultdict(Decimal)
            bought: dict[str, set[tuple[str, dt.date]]] = defaultdict(set)
            rows = s.execute(
                select(Customer.external_id, Order.kind, OrderLine.quantity, OrderLine.unit_price,
                       Product.sku, Order.ordered_at)
                .join(Order, Order.customer_id == Customer.id)
                .join(OrderLine, OrderLine.order_id == Order.id)
                .join(Product, Product.id == OrderLine.product_id)
            )  # fmt: skip
            for ext, kind, quantity, price, sku, at in rows:
                spend[ext] += (-1 if kind == "return" else 1) * quantity * price
                if kind == "sale":
                    bought[ext].add((sku, at.date()))
            words = {w.lower() for (t,) in s.execute(select(Product.title)) for w in re.findall(r"[A-Z]+", t)}
            login_ok = authenticate(s, DEMO_MANAGERS[0][0], DEMO_PASSWORD) is not None
        return Seeded(summary, again, before, after, audit, dict(spend), dict(bought), words, login_ok)
    finally:
        _empty(engine)


def test_seed_fills_every_imported_customer_and_says_what_it_made(seeded: Seeded) -> None:
    s = seeded.summary
    customers = seeded.before["customers"]
    assert s.customers == len(customers) == len(seeded.spend) > 600
    assert s.managers == 3  # two managers and the admin
    assert s.recipients == len(seeded.before["recipients"])
    assert s.important_dates == len(seeded.before["dates"])
    assert s.gifts_given == len(seeded.before["gifts"]) > 0
    assert s.occasion_opt_ins == len(seeded.before["opt_ins"]) > 0
    assert s.customers <= s.recipients <= 3 * s.customers
    assert seeded.audit == [("cli", "demo.seed", {**s.counts(), "seed": 20111209, "today": "2024-02-20"})]


def test_second_seed_adds_nothing_and_changes_nothing(seeded: Seeded) -> None:
    assert not seeded.again.created_anything
    assert seeded.again.counts() == dict.fromkeys(seeded.summary.counts(), 0)
    assert seeded.after == seeded.before
    assert len(seeded.audit) == 1


def test_every_generated_row_is_labelled(seeded: Seeded) -> None:
    snap = seeded.before
    assert all(c[-1] for c in snap["customers"])
    assert all(r[-1] for r in snap["recipients"])
    assert all(d[-1] for d in snap["dates"])
    assert all(g[-1] for g in snap["gifts"])
    assert all(o[-1] for o in snap["opt_ins"])
    assert all(u[4] for u in snap["users"])


def test_demo_managers_have_the_printed_logins(seeded: Seeded) -> None:
    users = seeded.before["users"]
    expected = [(email, "manager", True) for email, _ in DEMO_MANAGERS] + [(DEMO_ADMIN[0], "admin", True)]
    assert sorted((u[0], u[2], u[5]) for u in users) == sorted(expected)
    assert seeded.login_ok
    assert [(x.email, x.password) for x in seeded.summary.logins] == [
        (e, DEMO_PASSWORD) for e, _ in (*DEMO_MANAGERS, DEMO_ADMIN)
    ]


def test_vips_are_the_top_five_percent_of_spenders_net_of_returns(seeded: Seeded) -> None:
    positive = sorted((-v, ext) for ext, v in seeded.spend.items() if v > 0)
    top = {ext for _, ext in positive[: math.ceil(0.05 * len(positive))]}
    customers = seeded.before["customers"]
    vips = {c[0] for c in customers if c[7]}
    assert vips == top
    assert seeded.summary.vips == len(top) >= 30
    managers = Counter(c[8] for c in customers if c[7])
    assert set(managers) == {email for email, _ in DEMO_MANAGERS}
    assert abs(managers[DEMO_MANAGERS[0][0]] - managers[DEMO_MANAGERS[1][0]]) <= 1
    assert all(c[8] is None for c in customers if not c[7])


def test_customers_get_example_addresses_locales_zones_and_consent(seeded: Seeded) -> None:
    customers = seeded.before["customers"]
    emails = [c[2] for c in customers]
    assert all(re.fullmatch(r"[a-z0-9.]+@example\.(com|org)", e) for e in emails)
    assert len(set(emails)) == len(emails)
    locales = Counter(c[3] for c in customers)
    assert set(locales) == {"en", "ru"} and locales["en"] > 0.75 * len(customers)
    zones = Counter(c[4] for c in customers)
    assert zones.most_common(1)[0][0] == "Europe/London"
    assert zones["Europe/Moscow"] > 0
    for zone in zones:
        ZoneInfo(zone)
    assert all(c[4] == "Europe/London" for c in customers if c[3] == "en" and c[5] == "United Kingdom")
    consent = sum(c[6] for c in customers)
    assert 0.7 * len(customers) < consent < len(customers)


def test_recipients_belong_to_imported_customers_and_are_plausible(seeded: Seeded) -> None:
    per_customer = Counter(r[0][0] for r in seeded.before["recipients"])
    assert set(per_customer) == set(seeded.spend)
    assert set(per_customer.values()) == {1, 2, 3}
    for (_, relationship), name, gender, birth_on, interests, _ in seeded.before["recipients"]:
        assert relationship in RELATIONSHIPS
        assert name
        if relationship == "partner_company":
            assert gender is None and birth_on is None
        else:
            assert gender == (
                "female" if relationship in FEMALE else "male" if relationship in MALE else gender
            )
            assert gender in ("female", "male")
            assert dt.date(1890, 1, 1) < birth_on < DEMO_TODAY
        assert 2 <= len(interests) <= 4 and len(set(interests)) == len(interests)
        assert set(interests) <= seeded.title_words, "interests are words of real product titles"


def _real_day(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


def test_important_dates_are_valid_and_feb29_only_where_its_rule_matters(seeded: Seeded) -> None:
    dates = seeded.before["dates"]
    births = {r[0]: r[3] for r in seeded.before["recipients"]}
    kinds = Counter(d[1] for d in dates)
    assert set(kinds) == set(DATE_KINDS)
    feb29_rules = Counter()
    for who, kind, title, month, day, year, recurrence, rule, lead_days, stopped, _ in dates:
        assert not stopped
        assert _real_day(year or 2012, month, day), (who, kind, month, day, year)
        assert recurrence in ("yearly", "once")
        if recurrence == "once":
            assert year >= DEMO_TODAY.year and title
        if kind == "custom":
            assert title
        if kind == "birthday":
            assert births[who] == dt.date(year, month, day)
        if (month, day) == (2, 29):
            assert year == 0 or calendar.isleap(year)
            feb29_rules[rule] += 1
        else:
            assert rule == "feb28"
        assert lead_days in (0, 3, 10, 14)
    assert feb29_rules["feb28"] >= 2 and feb29_rules["mar1"] >= 1
    assert seeded.summary.feb29_dates == sum(feb29_rules.values())


def test_name_days_are_only_for_russian_speaking_customers(seeded: Seeded) -> None:
    locale = {c[0]: c[3] for c in seeded.before["customers"]}
    name_days = [d for d in seeded.before["dates"] if d[1] == "name_day"]
    assert name_days
    assert {locale[d[0][0]] for d in name_days} == {"ru"}


def test_some_dates_fall_a_week_after_the_demo_today_and_after_today(seeded: Seeded) -> None:
    vips = {c[0] for c in seeded.before["customers"] if c[7]}
    for anchor in (DEMO_TODAY, TODAY):
        lead_day = anchor + dt.timedelta(days=7)
        on_lead_day = [
            d for d in seeded.before["dates"]
            if (d[3], d[4]) == (lead_day.month, lead_day.day) and (d[6] == "yearly" or d[5] == lead_day.year)
        ]  # fmt: skip
        assert on_lead_day, anchor
        assert any(d[0][0] in vips for d in on_lead_day), anchor
    assert seeded.summary.dates_soon_after_demo_today >= 20
    assert seeded.summary.dates_soon_after_today >= 20


def test_gifts_given_come_from_the_customers_own_orders(seeded: Seeded) -> None:
    gifts = seeded.before["gifts"]
    for (ext, _), sku, given_on, has_line, _ in gifts:
        assert (sku, given_on) in seeded.bought[ext]
        assert has_line
    per_recipient = Counter((g[0], g[1]) for g in gifts)
    assert max(per_recipient.values()) == 1, "one recipient is never given the same product twice"


def test_occasion_opt_ins_use_calendar_codes_and_the_customers_own_recipients(seeded: Seeded) -> None:
    recipients = {r[0] for r in seeded.before["recipients"]}
    codes = Counter(o[1] for o in seeded.before["opt_ins"])
    assert set(codes) == set(OCCASION_CODES)
    assert set(codes) <= set(BUILTIN_OCCASIONS)
    for ext, code, recipient, _ in seeded.before["opt_ins"]:
        if recipient != ("", ""):
            assert recipient[0] == ext and recipient in recipients
            if code == "mothers_day":
                assert recipient[1] == "mother"


def test_two_fresh_databases_seeded_alike_hold_identical_rows(seeded: Seeded, tmp_path: Path) -> None:
    """A second, fresh SQLite database (so on a PostgreSQL run this also compares the two backends)."""
    url = f"sqlite:///{tmp_path / 'second.db'}"
    schema.upgrade(url)
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        summary = _import_and_seed(factory, tmp_path / "rejects.csv")
        with factory() as s:
            assert _snapshot(s) == seeded.before
        assert summary.counts() == seeded.summary.counts()

        # Another seed gives other rows: the comparison above can fail.
        with factory() as s:
            s.execute(delete(OccasionOptIn))
            s.execute(delete(Recipient))
            for c in s.scalars(select(Customer)):
                c.name = c.email = None
                c.is_generated = c.is_vip = False
            seed_demo(s, seed=7, today=TODAY)
            other = _snapshot(s)
            s.rollback()
        assert other["customers"] != seeded.before["customers"]
        assert other["recipients"] != seeded.before["recipients"]
    finally:
        engine.dispose()


# --- small builder rows ----------------------------------------------------------------------------------
def _customer(session: Session, ext: str, spend: str, **fields: Any) -> Customer:
    product = session.scalar(select(Product).where(Product.sku == "85123A"))
    if product is None:
        product = Product(sku="85123A", title="WHITE HANGING HEART T-LIGHT HOLDER", price=Decimal("2.55"))
        session.add(product)
        session.flush()
    customer = Customer(external_id=ext, **fields)
    session.add(customer)
    session.flush()
    order = Order(external_id=f"o-{ext}", customer_id=customer.id, ordered_at=dt.datetime(2011, 5, 1, 10))
    order.lines.append(OrderLine(line_no=1, product_id=product.id, quantity=1, unit_price=Decimal(spend)))
    session.add(order)
    session.flush()
    return customer


def test_customers_with_real_personal_data_or_erased_are_left_alone(session: Session) -> None:
    named = _customer(session, "100", "900.00", name="Real Person", email="real@example.net")
    erased = _customer(session, "101", "800.00", erased_at=dt.datetime(2011, 6, 1))
    plain = _customer(session, "102", "5.00")

    summary = seed_demo(session, today=TODAY)

    assert summary.customers == 1
    assert (named.name, named.email, named.is_generated, named.is_vip) == (
        "Real Person",
        "real@example.net",
        False,
        False,
    )
    assert (erased.name, erased.is_generated, erased.recipients) == (None, False, [])
    assert plain.is_generated and plain.recipients
    # Three spenders, the erased one not counted: ceil(5 % of 2) = 1 VIP, the bigger spender, who has real
    # data and is therefore not flagged.
    assert summary.vips == 0 and not plain.is_vip


def test_cli_demo_seed_prints_counts_and_logins(runner, sessions) -> None:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as s:
        _customer(s, "200", "50.00", country="United Kingdom")

    result = runner.invoke(cli, args=["demo", "seed", "--seed", "3", "--today", "2024-02-20"])
    assert result.exit_code == 0, result.output
    assert re.search(r"customers\s+1\n", result.output)
    assert re.search(r"vips\s+1\n", result.output)
    for email, _ in (*DEMO_MANAGERS, DEMO_ADMIN):
        assert f"{email}  password: {DEMO_PASSWORD}" in result.output

    again = runner.invoke(cli, args=["demo", "seed"])
    assert again.exit_code == 0, again.output
    assert "Nothing to seed" in again.output
    with sessions() as s:
        details = s.scalars(select(AuditLog.details).where(AuditLog.action == "demo.seed")).all()
    assert len(details) == 1 and details[0]["seed"] == 3
