"""The generated people of the demo: names, relationships, birthdays, important dates, interests, gifts.

No database access: numpy's seeded ``Generator`` and the customer in, plain dataclasses out;
:mod:`domain.demo.seed` reads what they build on and writes them. Every name list and weight here is
made up for the demo.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domain.models import Customer

DEMO_TODAY = dt.date(2011, 12, 1)
SOON_DAYS = 14
OCCASION_CODES = ("new_year", "valentines_day", "feb_23", "march_8", "mothers_day", "christmas")

GENERIC_WORDS = frozenset(
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


@dataclass
class DemoDate:
    kind: str
    month: int
    day: int
    year: int | None = None
    recurrence: str = "yearly"
    title: str | None = None
    feb29_rule: str = "feb28"
    lead_days: int | None = None


@dataclass
class Person:
    relationship: str
    name: str
    gender: str | None
    birth_on: dt.date | None
    interests: list[str]
    dates: list[DemoDate] = field(default_factory=list)
    gift_lines: list[tuple[int, int, dt.date]] = field(default_factory=list)  # line id, product id, date


@dataclass
class SaleLine:
    id: int
    product_id: int
    on: dt.date
    order_key: tuple[str, int]


def _leap_year_at_or_before(year: int) -> int:
    while not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        year -= 1
    return year


def _valid_year(year: int, month: int, day: int) -> int:
    return _leap_year_at_or_before(year) if (month, day) == (2, 29) else year


def date_window(start: dt.date, days: int) -> set[tuple[int, int, int]]:
    """(year, month, day) of ``days`` days from ``start`` on."""
    return {(d.year, d.month, d.day) for d in (start + dt.timedelta(days=i) for i in range(days))}


def falls_within(d: DemoDate, window: set[tuple[int, int, int]]) -> bool:
    if d.recurrence == "once":
        return (d.year, d.month, d.day) in window
    return any((m, day) == (d.month, d.day) for _, m, day in window)


def _random_month_day(rng: np.random.Generator) -> tuple[int, int]:
    """A day of a non-leap year: 29 February only ever comes from an explicit choice."""
    day = dt.date(2011, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))
    return day.month, day.day


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def generate_people(
    rng: np.random.Generator,
    customer: Customer,
    vip_rank: int | None,
    vocabulary: list[tuple[str, int]],
    own_words: Counter[str],
    lines: list[SaleLine],
    anchors: tuple[dt.date, dt.date],
    forced: str | None,
) -> tuple[list[Person], list[tuple[str, int | None]]]:
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


def _birthday(rng: np.random.Generator, year: int) -> tuple[dt.date, DemoDate]:
    if rng.random() < 0.02:
        year = _leap_year_at_or_before(year)
        rule = "feb28" if rng.random() < 0.7 else "mar1"
        return dt.date(year, 2, 29), DemoDate("birthday", 2, 29, year, feb29_rule=rule)
    month, day = _random_month_day(rng)
    return dt.date(year, month, day), DemoDate("birthday", month, day, year)


def _person(
    rng: np.random.Generator, relationship: str, locale: str, customer_gender: str, family: str, born: int
) -> Person:
    """One recipient with plausible gender, age and dates for the relationship."""
    if relationship == "partner_company":
        month, day = _random_month_day(rng)
        founded = int(rng.integers(1950, 2009))
        date = DemoDate("company_anniversary", month, day, founded)
        return Person("partner_company", _pick(rng, _COMPANIES[locale].split("|")), None, None, [], [date])
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
    person = Person(relationship, f"{first} {last}", gender, birth_on, [], [birthday])
    if relationship in ("wife", "husband") and rng.random() < 0.7:
        month, day = _random_month_day(rng)
        married = min(max(year, born) + int(rng.integers(22, 36)), DEMO_TODAY.year)
        person.dates.append(DemoDate("wedding_anniversary", month, day, married))
    if locale == "ru" and rng.random() < 0.6:
        name_day = next((d for n, _, d in _RU_FIRST[gender] if n == first), None)
        if name_day:
            person.dates.append(DemoDate("name_day", *name_day))
    return person


def _interests(rng: np.random.Generator, vocabulary: list[tuple[str, int]], own: Counter[str]) -> list[str]:
    if not vocabulary:
        return []
    weights = np.array([(1 + 4 * own.get(w, 0)) * math.sqrt(n) for w, n in vocabulary], dtype=float)
    k = min(len(vocabulary), int(rng.integers(2, 5)))
    picked = rng.choice(len(vocabulary), size=k, replace=False, p=weights / weights.sum())
    return [vocabulary[int(i)][0].lower() for i in picked]


def _extra_dates(rng: np.random.Generator, people: list[Person], locale: str) -> None:
    """Some custom yearly dates, some one-offs with a year, some per-date lead times."""
    if rng.random() < 0.12:
        month, day = _random_month_day(rng)
        _pick(rng, people).dates.append(
            DemoDate("custom", month, day, title=_pick(rng, _CUSTOM_TITLES[locale]))
        )
    if rng.random() < 0.1:
        on = DEMO_TODAY + dt.timedelta(days=int(rng.integers(1, 400)))
        _pick(rng, people).dates.append(
            DemoDate("custom", on.month, on.day, on.year, "once", _pick(rng, _ONCE_TITLES[locale]))
        )
    for person in people:
        for d in person.dates:
            if rng.random() < 0.08:
                d.lead_days = int(_pick(rng, (3, 10, 14)))


def _move_first_yearly_date(people: list[Person], on: dt.date, start: int) -> None:
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


def _apply_forced(people: list[Person], scenario: str, locale: str) -> None:
    kind, _, arg = scenario.partition(":")
    if kind == "soon":
        _move_first_yearly_date(people, dt.date.fromisoformat(arg), 0)
    elif arg == "once":
        people[0].dates.append(DemoDate("custom", 2, 29, 2012, "once", _ONCE_TITLES[locale][0]))
    else:
        born = [p for p in people if p.birth_on is not None]
        if born:
            person = born[0]
            assert person.birth_on is not None
            year = _leap_year_at_or_before(person.birth_on.year)
            person.birth_on = dt.date(year, 2, 29)
            person.dates[0] = DemoDate("birthday", 2, 29, year, feb29_rule=arg)
        else:
            people[0].dates.append(DemoDate("custom", 2, 29, None, "yearly", "Leap day", feb29_rule=arg))


def _gifts(rng: np.random.Generator, people: list[Person], lines: list[SaleLine]) -> None:
    """Some recipients were given 1-3 products from the customer's real past orders."""
    if not lines:
        return
    by_product: dict[int, SaleLine] = {}
    for line in lines:  # the first time each product was bought
        by_product.setdefault(line.product_id, line)
    firsts = list(by_product.values())
    for person in people:
        if rng.random() >= 0.35:
            continue
        k = min(len(firsts), int(rng.integers(1, 4)))
        for i in sorted(int(i) for i in rng.choice(len(firsts), size=k, replace=False)):
            person.gift_lines.append((firsts[i].id, firsts[i].product_id, firsts[i].on))


def _opt_ins(rng: np.random.Generator, people: list[Person], locale: str) -> list[tuple[str, int | None]]:
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
