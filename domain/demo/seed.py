"""Seeded, labelled demo data for the imported customers: managers, VIPs, people, dates, occasions, gifts.

The UCI Online Retail file has customer ids, countries and orders, nothing else. :func:`seed_demo` fills in
what a gift shop would know about its clients, so that reminders, selections and the VIP review have
something to work on. Every row it creates or fills is marked ``is_generated=True``.

* **Who is seeded**: customers with no personal data yet (no name, no email, not erased, not generated).
  Customers that already carry a name or email, and customers seeded before, are never touched; so a
  second run adds nothing and changes nothing.
* **Deterministic**: each customer's rows come from a numpy ``Generator`` seeded with ``(seed,
  sha256(external_id))``; everything is ordered in Python, never by database collation. The same database
  and ``seed``/``today`` give the same rows on SQLite and PostgreSQL (ids and timestamps aside; the two
  managers' password hashes are salted).
* **VIPs** are the top :data:`VIP_SHARE` (5 %, rounded up) of customers with a positive net spend (sales
  minus returns, in pence), ties broken by external id; they alternate between the two demo managers.
* **Interests** are frequent words of the catalog's product titles (``candle``, ``heart``, ``vintage``...),
  weighted towards what the customer bought; lower-case, to be matched case-insensitively.
* **Dates near "today"**: some dates fall 1-14 days after :data:`DEMO_TODAY` (2011-12-01, the sample's
  last month) and after ``today`` (the real date by default), and a few customers are picked to have a
  date exactly a week (the default lead time) after each, VIPs among them; a few dates are 29 February.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.orm import Session

from domain.access.users import create_user, find_user
from domain.demo.people import (
    DEMO_TODAY,
    GENERIC_WORDS,
    SOON_DAYS,
    Person,
    SaleLine,
    date_window,
    falls_within,
    generate_people,
)
from domain.models import (
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

DEFAULT_SEED = 20111209
DEMO_PASSWORD = "giftrec-demo"
DEMO_MANAGERS = (
    ("anna.manager@example.com", "Anna Manager (demo)"),
    ("bruno.manager@example.com", "Bruno Manager (demo)"),
)
#: The demo's admin: assigns clients, manages users, sees the campaign report (manages no client).
DEMO_ADMIN = ("ada.admin@example.com", "Ada Admin (demo)")
VIP_SHARE = 0.05
LEAD_DAYS = 7
INTEREST_VOCABULARY = 60


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    name: str


@dataclass
class DemoSummary:
    """What one :func:`seed_demo` run created (all zero on a second run)."""

    managers: int = 0
    customers: int = 0
    vips: int = 0
    recipients: int = 0
    important_dates: int = 0
    occasion_opt_ins: int = 0
    gifts_given: int = 0
    feb29_dates: int = 0
    dates_soon_after_demo_today: int = 0
    dates_soon_after_today: int = 0
    logins: tuple[DemoLogin, ...] = ()

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}

    @property
    def created_anything(self) -> bool:
        return any(self.counts().values())


def seed_demo(
    session: Session, *, seed: int = DEFAULT_SEED, today: dt.date | None = None, actor: str = "cli"
) -> DemoSummary:
    """Generate demo managers, VIP flags, recipients, dates, opt-ins and gifts for unseeded customers.

    ``today`` (default: the real date) only decides which dates are placed in the two weeks after it;
    :data:`DEMO_TODAY` gets the same treatment. Never commits; writes an audit row ``demo.seed`` with
    the counts when it created anything.
    """
    today = today or dt.date.today()
    logins = (*DEMO_MANAGERS, DEMO_ADMIN)
    summary = DemoSummary(logins=tuple(DemoLogin(e, DEMO_PASSWORD, n) for e, n in logins))
    managers: list[User] = []
    for email, name in logins:
        role = "admin" if (email, name) == DEMO_ADMIN else "manager"
        user = find_user(session, email)
        if user is None:
            user = create_user(session, email, name, DEMO_PASSWORD, role, is_generated=True)
            summary.managers += 1
        if role == "manager":
            managers.append(user)

    candidates = sorted(
        session.scalars(
            select(Customer).where(
                Customer.is_generated.is_(False),
                Customer.name.is_(None),
                Customer.email.is_(None),
                Customer.erased_at.is_(None),
            )
        ),
        key=lambda c: c.external_id,
    )
    if candidates:
        _seed_customers(session, candidates, managers, seed, today, summary)
    if summary.created_anything:
        details: dict[str, Any] = {**summary.counts(), "seed": seed, "today": today.isoformat()}
        session.add(AuditLog(actor=actor, action="demo.seed", entity_type="customer", details=details))
        session.flush()
    return summary


def _seed_customers(
    session: Session,
    candidates: list[Customer],
    managers: list[User],
    seed: int,
    today: dt.date,
    summary: DemoSummary,
) -> None:
    vip_rank = _vip_ranks(session)
    vocabulary, product_words = _vocabulary(session)
    lines = _sale_lines(session, [c.id for c in candidates])
    forced = _forced_scenarios(candidates, vip_rank, seed, today)
    anchors = (DEMO_TODAY, today)

    plans: list[tuple[Customer, list[Person], list[tuple[str, int | None]]]] = []
    for customer in candidates:
        rng = np.random.default_rng([seed, _stable_int(customer.external_id)])
        own = Counter(
            w for line in lines.get(customer.id, []) for w in product_words.get(line.product_id, ())
        )
        rank = vip_rank.get(customer.external_id)
        people, opt_ins = generate_people(
            rng, customer, rank, vocabulary, own, lines.get(customer.id, []), anchors,
            forced.get(customer.external_id),
        )  # fmt: skip
        if rank is not None:
            customer.is_vip = True
            customer.account_manager_id = managers[rank % len(managers)].id
            summary.vips += 1
        customer.is_generated = True
        summary.customers += 1
        plans.append((customer, people, opt_ins))

    recipients: list[list[Recipient]] = []
    for customer, people, _ in plans:
        rows = [
            Recipient(
                customer_id=customer.id, name=p.name, relationship_=p.relationship, gender=p.gender,
                birth_on=p.birth_on, interests=p.interests, is_generated=True,
            )
            for p in people
        ]  # fmt: skip
        session.add_all(rows)
        recipients.append(rows)
    session.flush()

    soon = [date_window(a + dt.timedelta(days=1), SOON_DAYS) for a in anchors]
    for (customer, people, opt_ins), rows in zip(plans, recipients, strict=True):
        for person, recipient in zip(people, rows, strict=True):
            for d in person.dates:
                session.add(
                    ImportantDate(
                        recipient_id=recipient.id, kind=d.kind, title=d.title, month=d.month, day=d.day,
                        year=d.year, recurrence=d.recurrence, feb29_rule=d.feb29_rule,
                        lead_days=d.lead_days, is_generated=True,
                    )
                )  # fmt: skip
                summary.important_dates += 1
                summary.feb29_dates += (d.month, d.day) == (2, 29)
                summary.dates_soon_after_demo_today += falls_within(d, soon[0])
                summary.dates_soon_after_today += falls_within(d, soon[1])
            for line_id, product_id, on in person.gift_lines:
                session.add(
                    GiftGiven(
                        recipient_id=recipient.id, product_id=product_id, given_on=on,
                        order_line_id=line_id, is_generated=True,
                    )
                )  # fmt: skip
                summary.gifts_given += 1
        for code, index in opt_ins:
            session.add(
                OccasionOptIn(
                    customer_id=customer.id, occasion_code=code,
                    recipient_id=None if index is None else rows[index].id, is_generated=True,
                )
            )  # fmt: skip
            summary.occasion_opt_ins += 1
        summary.recipients += len(rows)
    session.flush()


def _stable_int(text: str) -> int:
    """A process-independent integer for ``text`` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _vip_ranks(session: Session) -> dict[str, int]:
    """external id -> rank (0 = biggest spender) for the top VIP_SHARE of customers by net spend."""
    pence = cast(func.round(OrderLine.unit_price * 100), Integer) * OrderLine.quantity
    signed = case((Order.kind == "return", -pence), else_=pence)
    rows = session.execute(
        select(Customer.external_id, func.sum(signed))
        .join(Order, Order.customer_id == Customer.id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Customer.erased_at.is_(None))
        .group_by(Customer.external_id)
    ).all()
    spenders = sorted(((-int(total), ext) for ext, total in rows if total and int(total) > 0))
    top = math.ceil(VIP_SHARE * len(spenders))
    return {ext: rank for rank, (_, ext) in enumerate(spenders[:top])}


def vip_count_for(n_spenders: int) -> int:
    """How many VIPs :func:`seed_demo` flags among ``n_spenders`` customers with a positive net spend."""
    return math.ceil(VIP_SHARE * n_spenders)


def _title_words(title: str) -> set[str]:
    return {w for w in re.findall(r"[A-Z]{3,}", title.upper()) if w not in GENERIC_WORDS}


def _vocabulary(session: Session) -> tuple[list[tuple[str, int]], dict[int, tuple[str, ...]]]:
    """The most frequent catalog title words (by number of products) and each product's words among them."""
    titles = session.execute(select(Product.id, Product.title)).all()
    words = {pid: _title_words(title or "") for pid, title in titles}
    counts: Counter[str] = Counter(w for ws in words.values() for w in ws)
    # Fold simple plurals into the singular: CANDLES -> CANDLE.
    singular = {w: w[:-1] for w in counts if w.endswith("S") and w[:-1] in counts}
    for plural, one in singular.items():
        counts[one] += counts.pop(plural)
    vocab = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:INTEREST_VOCABULARY]
    known = {w for w, _ in vocab}
    per_product = {
        pid: tuple(sorted({singular.get(w, w) for w in ws} & known)) for pid, ws in sorted(words.items())
    }
    return vocab, per_product


def _sale_lines(session: Session, customer_ids: Sequence[int]) -> dict[int, list[SaleLine]]:
    """Each customer's sale lines, oldest first (ordered in Python: the same on every database)."""
    wanted = set(customer_ids)
    result: dict[int, list[SaleLine]] = {}
    rows = session.execute(
        select(Order.customer_id, OrderLine.id, OrderLine.product_id, Order.ordered_at, Order.external_id,
               OrderLine.line_no)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.kind == "sale", Order.customer_id.is_not(None))
    )  # fmt: skip
    for cid, line_id, product_id, at, order_ext, line_no in rows:
        if cid in wanted:
            result.setdefault(cid, []).append(SaleLine(line_id, product_id, at.date(), (order_ext, line_no)))
    for lines in result.values():
        lines.sort(key=lambda ln: (ln.on, ln.order_key))
    return result


def _forced_scenarios(
    candidates: list[Customer], vip_rank: dict[str, int], seed: int, today: dt.date
) -> dict[str, str]:
    """A few customers, picked by a seeded hash, get a date on lead day or on 29 February for sure."""
    order = sorted(
        (c.external_id for c in candidates), key=lambda e: hashlib.sha256(f"{seed}:{e}".encode()).hexdigest()
    )
    lead_demo = (DEMO_TODAY + dt.timedelta(days=LEAD_DAYS)).isoformat()
    lead_today = (today + dt.timedelta(days=LEAD_DAYS)).isoformat()
    vips = [e for e in order if e in vip_rank]
    others = [e for e in order if e not in vip_rank]
    plan: dict[str, str] = {}
    plan.update(zip(vips, [f"soon:{lead_demo}", f"soon:{lead_today}"], strict=False))
    scenarios = [f"soon:{lead_demo}", f"soon:{lead_today}", "feb29:feb28", "feb29:mar1", "feb29:once"]
    plan.update(zip(others, scenarios, strict=False))
    return plan


def demo_shopper(session: Session) -> tuple[str | None, str | None]:
    """A customer with the most order lines and the product they bought most: what the demo page shows."""
    row = session.execute(
        select(Customer.external_id, func.count(OrderLine.id).label("n"))
        .join(Order, Order.customer_id == Customer.id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Customer.erased_at.is_(None), Order.kind == "sale")
        .group_by(Customer.external_id)
        .order_by(func.count(OrderLine.id).desc(), Customer.external_id)
        .limit(1)
    ).first()
    if row is None:
        return None, None
    sku = session.scalar(
        select(Product.sku)
        .join(OrderLine, OrderLine.product_id == Product.id)
        .join(Order, Order.id == OrderLine.order_id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Customer.external_id == row[0], Product.is_active.is_(True))
        .group_by(Product.sku)
        .order_by(func.sum(OrderLine.quantity).desc(), Product.sku)
        .limit(1)
    )
    return row[0], sku
