"""Occasions and their date math: the store-wide calendar, next occurrences, lead days and catch-up.

Everything here is pure date arithmetic (no database), so the rules can be tested one by one:

* **"Today" is the customer's**: :func:`local_today` turns the job's UTC instant into the customer's own
  calendar day with :mod:`zoneinfo`. At 20:00 UTC it is already tomorrow in Tokyo and still today in
  Los Angeles.
* **Next occurrence** of an important date from a local day (:func:`next_occurrence`): a yearly date
  recurs from its first year on (``year`` may be a birth or wedding year), a one-off date happens once,
  in its own year. 29 February follows the date's own rule in other years: ``feb28`` (the default: the
  reminder is never late) or ``mar1``. A day that does not exist in its month (31 April, entered by hand)
  falls on the last day of that month.
* **Lead days**: the date's own ``lead_days`` wins over the customer's ``reminder_lead_days``, which wins
  over ``reminders.lead_days`` (:func:`lead_days_for`).
* **Catch-up** (:func:`decide`): on the lead day the reminder is planned. When that day was missed (the
  service was down, or the date was entered late), the reminder is still planned while the occasion is at
  least ``catch_up_min_days`` away; closer than that it is recorded as skipped, with the reason.

The store-wide calendar (:func:`parse_calendar`) is a comma-separated spec, ``reminders.calendar``:
each entry is a built-in code (``new_year``, ``valentines_day``, ``feb_23``, ``march_8``, ``mothers_day``,
``fathers_day``, ``christmas``), a code with a rule (``mothers_day=us``) or a custom fixed date
(``shop_anniversary=09-15``). Mother's Day rules: ``uk`` = Mothering Sunday, the fourth Sunday of Lent
(three weeks before Easter Sunday; the default, the shop is British); ``us`` = second Sunday of May;
``ru`` = last Sunday of November. Father's Day is the third Sunday of June (UK, US).
"""

from __future__ import annotations

import calendar as _calendar
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.settings import ReminderSettings
from domain.errors import InvalidInput

__all__ = [
    "BUILTIN_OCCASIONS",
    "DEFAULT_CALENDAR",
    "MOTHERS_DAY_RULES",
    "CalendarError",
    "Decision",
    "Occasion",
    "decide",
    "easter_sunday",
    "lead_days_for",
    "local_midnight_utc",
    "local_today",
    "next_occurrence",
    "nth_weekday",
    "occurrence_in",
    "parse_calendar",
    "zone",
]

DEFAULT_CALENDAR = ReminderSettings.calendar


class CalendarError(InvalidInput):
    """``reminders.calendar`` cannot be read; ``field`` names the setting."""

    def __init__(self, message: str) -> None:
        super().__init__("reminders.calendar", message)


# ------------------------------------------------------------------------------------- calendar rules
def easter_sunday(year: int) -> dt.date:
    """Western (Gregorian) Easter Sunday: the anonymous Gregorian algorithm (Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The `n`-th `weekday` (0 = Monday) of a month; ``n = -1`` is the last one."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = dt.date(year, month, _calendar.monthrange(year, month)[1])
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7 + 7 * (-n - 1))


def _fixed(month: int, day: int) -> Callable[[int], dt.date]:
    return lambda year: dt.date(year, month, day)


SUNDAY = 6
MOTHERS_DAY_RULES: dict[str, Callable[[int], dt.date]] = {
    "uk": lambda year: easter_sunday(year) - dt.timedelta(days=21),
    "us": lambda year: nth_weekday(year, 5, SUNDAY, 2),
    "ru": lambda year: nth_weekday(year, 11, SUNDAY, -1),
}

BUILTIN_OCCASIONS: dict[str, Callable[[int], dt.date]] = {
    "new_year": _fixed(1, 1),
    "valentines_day": _fixed(2, 14),
    "feb_23": _fixed(2, 23),
    "march_8": _fixed(3, 8),
    "mothers_day": MOTHERS_DAY_RULES["uk"],
    "fathers_day": lambda year: nth_weekday(year, 6, SUNDAY, 3),
    "christmas": _fixed(12, 25),
}


@dataclass(frozen=True)
class Occasion:
    """A store-wide occasion of the calendar; `rule` gives its date in a year."""

    code: str
    rule: Callable[[int], dt.date]

    def on(self, year: int) -> dt.date:
        return self.rule(year)

    def next_on(self, today: dt.date) -> dt.date:
        """First occurrence on or after `today`."""
        this_year = self.rule(today.year)
        return this_year if this_year >= today else self.rule(today.year + 1)


@lru_cache(maxsize=32)
def parse_calendar(spec: str = DEFAULT_CALENDAR) -> dict[str, Occasion]:
    """Read a calendar spec (see the module docstring) into ``{code: Occasion}``, in spec order.

    Raises :class:`CalendarError` (``field="reminders.calendar"``) naming the bad entry.
    """
    out: dict[str, Occasion] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        code, _, arg = (part.strip() for part in entry.partition("="))
        if not code.replace("_", "").isalnum() or len(code) > 40:
            raise CalendarError(f"bad occasion code {code!r} in {entry!r}")
        if code in out:
            raise CalendarError(f"occasion {code!r} is listed twice")
        if not arg:
            if code not in BUILTIN_OCCASIONS:
                raise CalendarError(f"unknown occasion {code!r}: give its date as {code}=MM-DD")
            out[code] = Occasion(code, BUILTIN_OCCASIONS[code])
        elif code == "mothers_day":
            if arg not in MOTHERS_DAY_RULES:
                raise CalendarError(f"mothers_day rule must be one of {', '.join(MOTHERS_DAY_RULES)}")
            out[code] = Occasion(code, MOTHERS_DAY_RULES[arg])
        else:
            try:
                month_s, day_s = arg.split("-")
                month, day = int(month_s), int(day_s)
                dt.date(2000, month, day)  # a leap year: 02-29 is allowed and follows the feb28 rule
            except ValueError:
                raise CalendarError(f"{entry!r}: expected {code}=MM-DD") from None
            out[code] = Occasion(code, _yearly(month, day))
    return out


def _yearly(month: int, day: int) -> Callable[[int], dt.date]:
    return lambda year: occurrence_in(month, day, year, feb29_rule="feb28")


# ---------------------------------------------------------------------------------- time zones
@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; raises ``InvalidInput("time_zone", ...)`` for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("time_zone", f"unknown time zone {name!r}") from None


def _as_utc(now: dt.datetime) -> dt.datetime:
    """Naive datetimes are UTC throughout giftrec."""
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)


def local_today(now: dt.datetime, time_zone: str) -> dt.date:
    """The calendar day it is in `time_zone` at the instant `now` (naive = UTC)."""
    return _as_utc(now).astimezone(zone(time_zone)).date()


def local_midnight_utc(day: dt.date, time_zone: str) -> dt.datetime:
    """Naive UTC instant at which `day` begins in `time_zone` (stored as ``*_at`` columns are)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone(time_zone))
    return start.astimezone(dt.UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------------ important dates
def occurrence_in(month: int, day: int, year: int, *, feb29_rule: str = "feb28") -> dt.date:
    """Where a (month, day) falls in `year`.

    29 February in a common year goes to 28 February (``feb28``) or 1 March (``mar1``); any other day
    past the end of its month goes to the month's last day.
    """
    last = _calendar.monthrange(year, month)[1]
    if day <= last:
        return dt.date(year, month, day)
    if month == 2 and day == 29 and feb29_rule == "mar1":
        return dt.date(year, 3, 1)
    return dt.date(year, month, last)


def next_occurrence(
    month: int,
    day: int,
    *,
    today: dt.date,
    recurrence: str = "yearly",
    year: int | None = None,
    feb29_rule: str = "feb28",
) -> dt.date | None:
    """The first occurrence on or after `today`, or None when there is none any more.

    A yearly date with a `year` recurs from that year on; a one-off date (``recurrence="once"``) happens
    only in its `year`.
    """
    if recurrence == "once":
        if year is None:
            return None
        on = occurrence_in(month, day, year, feb29_rule=feb29_rule)
        return on if on >= today else None
    start = today.year if year is None else max(today.year, year)
    for y in (start, start + 1):
        on = occurrence_in(month, day, y, feb29_rule=feb29_rule)
        if on >= today:
            return on
    return None  # pragma: no cover - the next year always qualifies


def lead_days_for(date_lead: int | None, customer_lead: int | None, default: int) -> int:
    """Lead time: the date's own, else the customer's, else the setting."""
    if date_lead is not None:
        return date_lead
    if customer_lead is not None:
        return customer_lead
    return default


Action = Literal["plan", "skip"]


@dataclass(frozen=True)
class Decision:
    """What to do today about one occurrence: plan a selection or record it as skipped."""

    action: Action
    occasion_on: dt.date
    days_until: int
    lead_days: int
    reason: str | None = None

    @property
    def is_catch_up(self) -> bool:
        return self.action == "plan" and self.days_until < self.lead_days


def decide(occasion_on: dt.date, today: dt.date, lead_days: int, catch_up_min_days: int) -> Decision | None:
    """Plan on the lead day; catch up a missed lead day while the occasion is >= `catch_up_min_days` away.

    Returns None while the lead day has not come (or the occasion has passed). The caller checks that
    no selection exists yet: a missed lead day is only "missed" if nothing was planned on it.
    """
    days = (occasion_on - today).days
    if days < 0 or days > lead_days:
        return None
    if days == lead_days:
        return Decision("plan", occasion_on, days, lead_days)
    late = lead_days - days
    if days >= catch_up_min_days:
        return Decision("plan", occasion_on, days, lead_days, f"caught up {late} day(s) after the lead day")
    return Decision(
        "skip",
        occasion_on,
        days,
        lead_days,
        f"reminder day missed: the occasion is {days} day(s) away, "
        f"less than the catch-up minimum of {catch_up_min_days}",
    )
