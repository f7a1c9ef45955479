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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.orm import Session

from domain.access.users import create_user, find_user
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
DEMO_TODAY = dt.date(2011, 12, 1)
DEMO_PASSWORD = "giftrec-demo"
DEMO_MANAGERS = (
    ("anna.manager@example.com", "Anna Manager (demo)"),
    ("bruno.manager@example.com", "Bruno Manager (demo)"),
)
VIP_SHARE = 0.05
LEAD_DAYS = 7
SOON_DAYS = 14
OCCASION_CODES = ("new_year", "valentines_day", "feb_23", "march_8", "mothers_day", "christmas")
INTEREST_VOCABULARY = 60

_GENERIC_WORDS = frozenset(
    "SET WITH AND THE FOR OF IN DESIGN SMALL LARGE MINI JUMBO PACK ASSORTED COLOUR COLOURS ROUND SQUARE "
    "PINK BLUE RED WHITE GREEN BLACK IVORY CREAM PURPLE ORANGE YELLOW BROWN GREY HOT DROP CASES KIT SIZE "
    "TALL HOOK STAND HANGING HOLDER BOX BAG TIN TINS JAR CARD CARDS SIGN WRAP COVER PAPER".split()
)
_COUNTRY_ZONES = {
    "United Kingdom": "Europe/London", "EIRE": "Europe/Dublin", "Channel Islands": "Europe/Jersey",
    "Germany": "Europe/Berlin", "France": "Europe/Paris", "Spain": "Europe/Madrid",
    "Netherlands": "Europe/Amsterdam", "Belgium": "Europe/Brussels", "Switzerland": "Europe/Zurich",
    "Portugal": "Europe/Lisbon", "Italy": "Europe/Rome", "Norway": "Europe/Oslo",
    "Sweden": "Europe/Stockholm",
    "Finland": "Europe/Helsinki", "Denmark": "Europe/Copenhagen", "Austria": "Europe/Vienna",
    "Poland": "Europe/Warsaw", "Cyprus": "Asia/Nicosia", "Greece": "Europe/Athens", "Malta": "Europe/Malta",
    "Iceland": "Atlantic/Reykjavik", "Lithuania": "Europe/Vilnius", "Czech Republic": "Europe/Prague",
    "Australia": "Australia/Sydney", "Japan": "Asia/Tokyo", "Singapore": "Asia/Singapore",
    "Hong Kong": "Asia/Hong_Kong", "Israel": "Asia/Jerusalem", "USA": "America/New_York",
    "Canada": "America/Toronto", "Brazil": "America/Sao_Paulo", "RSA": "Africa/Johannesburg",
    "United Arab Emirates": "Asia/Dubai", "Lebanon": "Asia/Beirut", "Bahrain": "Asia/Bahrain",
    "Saudi Arabia": "Asia/Riyadh",
}  # fmt: skip
_RU_ZONES = ("Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk")
_RU_ZONE_WEIGHTS = (0.8, 0.1, 0.1)

_EN_FIRST = {
    "female": "Emma Olivia Sophie Charlotte Amelia Grace Lucy Hannah Emily Jessica Sarah Laura Rachel "
    "Victoria Eleanor Alice Harriet Clare Helen Margaret".split(),
    "male": "James Oliver Harry George Thomas William Jack Edward Daniel Samuel Matthew Andrew Richard "
    "Peter David Henry Charles Robert Michael Simon".split(),
}
_EN_LAST = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans Walker White "
    "Roberts Green Hall Wood Jackson Clarke Hughes Edwards Turner Cooper Harris".split()
)
# (Cyrillic, Latin, Orthodox name day as (month, day)).
_RU_FIRST: dict[str, list[tuple[str, str, tuple[int, int]]]] = {
    "female": [
        ("Татьяна", "Tatiana", (1, 25)), ("Ольга", "Olga", (7, 24)), ("Елена", "Elena", (6, 3)),
        ("Наталья", "Natalia", (9, 8)), ("Вера", "Vera", (9, 30)), ("Надежда", "Nadezhda", (9, 30)),
        ("Екатерина", "Ekaterina", (12, 7)), ("Марина", "Marina", (7, 30)), ("Ирина", "Irina", (5, 18)),
        ("Мария", "Maria", (8, 4)), ("Светлана", "Svetlana", (4, 2)),
    ],
    "male": [
        ("Александр", "Alexander", (9, 12)), ("Сергей", "Sergei", (10, 8)), ("Николай", "Nikolai", (12, 19)),
        ("Дмитрий", "Dmitry", (11, 8)), ("Михаил", "Mikhail", (11, 21)), ("Владимир", "Vladimir", (7, 28)),
        ("Андрей", "Andrei", (12, 13)), ("Иван", "Ivan", (7, 7)), ("Пётр", "Pyotr", (7, 12)),
        ("Георгий", "Georgy", (5, 6)), ("Алексей", "Alexei", (3, 30)),
    ],
}  # fmt: skip
# (Cyrillic masculine form, Latin); the feminine adds "а"/"a".
_RU_LAST = [
    ("Иванов", "Ivanov"), ("Смирнов", "Smirnov"), ("Кузнецов", "Kuznetsov"), ("Попов", "Popov"),
    ("Соколов", "Sokolov"), ("Лебедев", "Lebedev"), ("Козлов", "Kozlov"), ("Новиков", "Novikov"),
    ("Морозов", "Morozov"), ("Волков", "Volkov"), ("Орлов", "Orlov"), ("Павлов", "Pavlov"),
]  # fmt: skip
_COMPANIES = {
    "en": "Harbour & Finch Ltd|Northgate Events Ltd|Bluebell Interiors|Kestrel Trading Co|Oakridge Hotels|"
    "Mulberry Lane Florists|Whitmore & Sons|Pennywell Gift Shop|Riverside Cafe Ltd|Lantern Bay Weddings",
    "ru": "ООО «Северный ветер»|ООО «Дом подарков»|АО «Белые ночи»|ООО «Самовар»|ООО «Волжские узоры»",
}
_CUSTOM_TITLES = {
    "en": ["Day we met", "Graduation day", "Housewarming anniversary", "First day at school"],
    "ru": ["День знакомства", "Выпускной", "Годовщина новоселья", "Первое сентября"],
}
_ONCE_TITLES = {
    "en": ["Housewarming", "Retirement party", "Christening", "Engagement party"],
    "ru": ["Новоселье", "Проводы на пенсию", "Крестины", "Помолвка"],
}
_RELATIONSHIPS = ("spouse", "mother", "father", "child", "friend", "colleague", "partner_company")
_RELATIONSHIP_WEIGHTS = np.array([0.3, 0.18, 0.12, 0.15, 0.1, 0.08, 0.07])
# Opt-in probability per occasion, by locale (same order as OCCASION_CODES).
_OPT_IN = {"en": (0.5, 0.35, 0.02, 0.05, 0.4, 0.7), "ru": (0.8, 0.3, 0.5, 0.7, 0.2, 0.2)}


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


@dataclass
class _Date:
    kind: str
    month: int
    day: int
    year: int | None = None
    recurrence: str = "yearly"
    title: str | None = None
    feb29_rule: str = "feb28"
    lead_days: int | None = None


@dataclass
class _Person:
    relationship: str
    name: str
    gender: str | None
    birth_on: dt.date | None
    interests: list[str]
    dates: list[_Date] = field(default_factory=list)
    gift_lines: list[tuple[int, int, dt.date]] = field(default_factory=list)  # line id, product id, date


@dataclass
class _Line:
    id: int
    product_id: int
    on: dt.date
    order_key: tuple[str, int]


def seed_demo(
    session: Session, *, seed: int = DEFAULT_SEED, today: dt.date | None = None, actor: str = "cli"
) -> DemoSummary:
    """Generate demo managers, VIP flags, recipients, dates, opt-ins and gifts for unseeded customers.

    ``today`` (default: the real date) only decides which dates are placed in the two weeks after it;
    :data:`DEMO_TODAY` gets the same treatment. Never commits; writes an audit row ``demo.seed`` with
    the counts when it created anything.
    """
    today = today or dt.date.today()
    summary = DemoSummary(logins=tuple(DemoLogin(e, DEMO_PASSWORD, n) for e, n in DEMO_MANAGERS))
    managers: list[User] = []
    for email, name in DEMO_MANAGERS:
        user = find_user(session, email)
        if user is None:
            user = create_user(session, email, name, DEMO_PASSWORD, "manager", is_generated=True)
            summary.managers += 1
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

    plans: list[tuple[Customer, list[_Person], list[tuple[str, int | None]]]] = []
    for customer in candidates:
        rng = np.random.default_rng([seed, _stable_int(customer.external_id)])
        own = Counter(
            w for line in lines.get(customer.id, []) for w in product_words.get(line.product_id, ())
        )
        rank = vip_rank.get(customer.external_id)
        people, opt_ins = _generate(
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

    soon = [_window(a + dt.timedelta(days=1), SOON_DAYS) for a in anchors]
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
                summary.dates_soon_after_demo_today += _falls_within(d, soon[0])
                summary.dates_soon_after_today += _falls_within(d, soon[1])
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
    return {w for w in re.findall(r"[A-Z]{3,}", title.upper()) if w not in _GENERIC_WORDS}


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


def _sale_lines(session: Session, customer_ids: Sequence[int]) -> dict[int, list[_Line]]:
    """Each customer's sale lines, oldest first (ordered in Python: the same on every database)."""
    wanted = set(customer_ids)
    result: dict[int, list[_Line]] = {}
    rows = session.execute(
        select(Order.customer_id, OrderLine.id, OrderLine.product_id, Order.ordered_at, Order.external_id,
               OrderLine.line_no)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.kind == "sale", Order.customer_id.is_not(None))
    )  # fmt: skip
    for cid, line_id, product_id, at, order_ext, line_no in rows:
        if cid in wanted:
            result.setdefault(cid, []).append(_Line(line_id, product_id, at.date(), (order_ext, line_no)))
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


def _leap_year_at_or_before(year: int) -> int:
    while not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        year -= 1
    return year


def _valid_year(year: int, month: int, day: int) -> int:
    return _leap_year_at_or_before(year) if (month, day) == (2, 29) else year


def _window(start: dt.date, days: int) -> set[tuple[int, int, int]]:
    """(year, month, day) of ``days`` days from ``start`` on."""
    return {(d.year, d.month, d.day) for d in (start + dt.timedelta(days=i) for i in range(days))}


def _falls_within(d: _Date, window: set[tuple[int, int, int]]) -> bool:
    if d.recurrence == "once":
        return (d.year, d.month, d.day) in window
    return any((m, day) == (d.month, d.day) for _, m, day in window)


def _random_month_day(rng: np.random.Generator) -> tuple[int, int]:
    """A day of a non-leap year: 29 February only ever comes from an explicit choice."""
    day = dt.date(2011, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))
    return day.month, day.day


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def _generate(
    rng: np.random.Generator,
    customer: Customer,
    vip_rank: int | None,
    vocabulary: list[tuple[str, int]],
    own_words: Counter[str],
    lines: list[_Line],
    anchors: tuple[dt.date, dt.date],
    forced: str | None,
) -> tuple[list[_Person], list[tuple[str, int | None]]]:
    """Fill ``customer`` and return its people and occasion opt-ins (code, index of the recipient)."""
    locale = "ru" if rng.random() < 0.12 else "en"
    gender = "female" if rng.random() < 0.5 else "male"
    first, first_latin, last, last_latin = _name(rng, locale, gender)
    customer.name = f"{first} {last}"
    domain = "example.com" if rng.random() < 0.7 else "example.org"
    local = re.sub(r"[^a-z0-9]+", ".", f"{first_latin}.{last_latin}.{customer.external_id}".lower())
    customer.email = f"{local.strip('.')}@{domain}"
    customer.locale = locale
    if locale == "ru":
        customer.time_zone = _RU_ZONES[int(rng.choice(len(_RU_ZONES), p=_RU_ZONE_WEIGHTS))]
    else:
        customer.time_zone = _COUNTRY_ZONES.get(customer.country or "", "Europe/London")
    customer.email_consent = bool(rng.random() < 0.85)
    birth_year = DEMO_TODAY.year - int(rng.integers(28, 71))

    n_people = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4] if vip_rank is not None else [0.35, 0.4, 0.25]))
    chosen = rng.choice(len(_RELATIONSHIPS), size=n_people, replace=False, p=_RELATIONSHIP_WEIGHTS)
    people = [
        _person(rng, _RELATIONSHIPS[i], locale, gender, last, birth_year)
        for i in sorted(int(i) for i in chosen)
    ]
    for person in people:
        person.interests = _interests(rng, vocabulary, own_words)
    _extra_dates(rng, people, locale)
    soon_p = 0.4 if vip_rank is not None else 0.12
    if rng.random() < soon_p:
        anchor = anchors[int(rng.integers(0, 2))] + dt.timedelta(days=int(rng.integers(1, SOON_DAYS + 1)))
        _move_first_yearly_date(people, anchor, int(rng.integers(0, 3)))
    if forced:
        _apply_forced(people, forced, locale)
    _gifts(rng, people, lines)
    return people, _opt_ins(rng, people, locale)


def _name(rng: np.random.Generator, locale: str, gender: str) -> tuple[str, str, str, str]:
    if locale == "ru":
        first, first_latin, _ = _pick(rng, _RU_FIRST[gender])
        last, last_latin = _pick(rng, _RU_LAST)
        if gender == "female":
            last, last_latin = last + "а", last_latin + "a"
        return first, first_latin, last, last_latin
    first = _pick(rng, _EN_FIRST[gender])
    last = _pick(rng, _EN_LAST)
    return first, first, last, last


def _birthday(rng: np.random.Generator, year: int) -> tuple[dt.date, _Date]:
    if rng.random() < 0.02:
        year = _leap_year_at_or_before(year)
        rule = "feb28" if rng.random() < 0.7 else "mar1"
        return dt.date(year, 2, 29), _Date("birthday", 2, 29, year, feb29_rule=rule)
    month, day = _random_month_day(rng)
    return dt.date(year, month, day), _Date("birthday", month, day, year)


def _person(
    rng: np.random.Generator, relationship: str, locale: str, customer_gender: str, family: str, born: int
) -> _Person:
    """One recipient with plausible gender, age and dates for the relationship."""
    if relationship == "partner_company":
        month, day = _random_month_day(rng)
        founded = int(rng.integers(1950, 2009))
        date = _Date("company_anniversary", month, day, founded)
        return _Person("partner_company", _pick(rng, _COMPANIES[locale].split("|")), None, None, [], [date])
    if relationship == "spouse":
        gender = "female" if customer_gender == "male" else "male"
        if rng.random() < 0.05:
            gender = customer_gender
        relationship = {"female": "wife", "male": "husband"}[gender]
        year = born + int(rng.integers(-5, 6))
    elif relationship in ("mother", "father"):
        gender = "female" if relationship == "mother" else "male"
        year = born - int(rng.integers(22, 36))
    elif relationship == "child":
        gender = "female" if rng.random() < 0.5 else "male"
        year = min(born + int(rng.integers(22, 39)), DEMO_TODAY.year - 1 - int(rng.integers(0, 6)))
    else:
        gender = "female" if rng.random() < 0.5 else "male"
        year = born + int(rng.integers(-8, 9))
    same_family = relationship in ("wife", "husband", "mother", "father", "child")
    first, _, last, _ = _name(rng, locale, gender)
    if same_family:
        last = family
        if locale == "ru":  # the family name agrees with the recipient's gender
            stem = family[:-1] if family.endswith("а") else family
            last = stem + "а" if gender == "female" else stem
    birth_on, birthday = _birthday(rng, year)
    person = _Person(relationship, f"{first} {last}", gender, birth_on, [], [birthday])
    if relationship in ("wife", "husband") and rng.random() < 0.7:
        month, day = _random_month_day(rng)
        married = min(max(year, born) + int(rng.integers(22, 36)), DEMO_TODAY.year)
        person.dates.append(_Date("wedding_anniversary", month, day, married))
    if locale == "ru" and rng.random() < 0.6:
        name_day = next((d for n, _, d in _RU_FIRST[gender] if n == first), None)
        if name_day:
            person.dates.append(_Date("name_day", *name_day))
    return person


def _interests(rng: np.random.Generator, vocabulary: list[tuple[str, int]], own: Counter[str]) -> list[str]:
    if not vocabulary:
        return []
    weights = np.array([(1 + 4 * own.get(w, 0)) * math.sqrt(n) for w, n in vocabulary], dtype=float)
    k = min(len(vocabulary), int(rng.integers(2, 5)))
    picked = rng.choice(len(vocabulary), size=k, replace=False, p=weights / weights.sum())
    return [vocabulary[int(i)][0].lower() for i in picked]


def _extra_dates(rng: np.random.Generator, people: list[_Person], locale: str) -> None:
    """Some custom yearly dates, some one-offs with a year, some per-date lead times."""
    if rng.random() < 0.12:
        month, day = _random_month_day(rng)
        _pick(rng, people).dates.append(_Date("custom", month, day, title=_pick(rng, _CUSTOM_TITLES[locale])))
    if rng.random() < 0.1:
        on = DEMO_TODAY + dt.timedelta(days=int(rng.integers(1, 400)))
        _pick(rng, people).dates.append(
            _Date("custom", on.month, on.day, on.year, "once", _pick(rng, _ONCE_TITLES[locale]))
        )
    for person in people:
        for d in person.dates:
            if rng.random() < 0.08:
                d.lead_days = int(_pick(rng, (3, 10, 14)))


def _move_first_yearly_date(people: list[_Person], on: dt.date, start: int) -> None:
    """Move one yearly date (and a birthday's birth date with it) onto ``on``'s month and day."""
    # Name days stay on their saint's day.
    candidates = [
        (p, d) for p in people for d in p.dates if d.recurrence == "yearly" and d.kind != "name_day"
    ]
    if not candidates:
        return
    person, d = candidates[start % len(candidates)]
    d.month, d.day, d.lead_days = on.month, on.day, None
    d.feb29_rule = "feb28"
    if d.year is not None:
        d.year = _valid_year(d.year, on.month, on.day)
    if d.kind == "birthday" and person.birth_on is not None and d.year is not None:
        person.birth_on = dt.date(d.year, on.month, on.day)


def _apply_forced(people: list[_Person], scenario: str, locale: str) -> None:
    kind, _, arg = scenario.partition(":")
    if kind == "soon":
        _move_first_yearly_date(people, dt.date.fromisoformat(arg), 0)
    elif arg == "once":
        people[0].dates.append(_Date("custom", 2, 29, 2012, "once", _ONCE_TITLES[locale][0]))
    else:
        born = [p for p in people if p.birth_on is not None]
        if born:
            person = born[0]
            assert person.birth_on is not None
            year = _leap_year_at_or_before(person.birth_on.year)
            person.birth_on = dt.date(year, 2, 29)
            person.dates[0] = _Date("birthday", 2, 29, year, feb29_rule=arg)
        else:
            people[0].dates.append(_Date("custom", 2, 29, None, "yearly", "Leap day", feb29_rule=arg))


def _gifts(rng: np.random.Generator, people: list[_Person], lines: list[_Line]) -> None:
    """Some recipients were given 1-3 products from the customer's real past orders."""
    if not lines:
        return
    by_product: dict[int, _Line] = {}
    for line in lines:  # the first time each product was bought
        by_product.setdefault(line.product_id, line)
    firsts = list(by_product.values())
    for person in people:
        if rng.random() >= 0.35:
            continue
        k = min(len(firsts), int(rng.integers(1, 4)))
        for i in sorted(int(i) for i in rng.choice(len(firsts), size=k, replace=False)):
            person.gift_lines.append((firsts[i].id, firsts[i].product_id, firsts[i].on))


def _opt_ins(rng: np.random.Generator, people: list[_Person], locale: str) -> list[tuple[str, int | None]]:
    """Store-wide occasions the customer opted into, with whom the gift is for when that is clear."""

    def first(*relationships: str) -> int | None:
        return next((i for i, p in enumerate(people) if p.relationship in relationships), None)

    recipient_for = {
        "valentines_day": first("wife", "husband"),
        "march_8": first("wife", "mother"),
        "feb_23": first("husband", "father"),
        "mothers_day": first("mother"),
    }
    chosen = []
    for code, p in zip(OCCASION_CODES, _OPT_IN[locale], strict=True):
        if rng.random() < p:
            chosen.append((code, recipient_for.get(code)))
    return chosen


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
