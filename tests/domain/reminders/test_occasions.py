"""Occasion date math: calendar rules, Feb 29, one-off dates, time zones, lead days, catch-up."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.errors import InvalidInput
from domain.reminders.occasions import (
    CalendarError,
    decide,
    easter_sunday,
    lead_days_for,
    local_midnight_utc,
    local_today,
    next_occurrence,
    occurrence_in,
    parse_calendar,
)

D = dt.date


@pytest.mark.parametrize(
    ("year", "easter"), [(2011, D(2011, 4, 24)), (2019, D(2019, 4, 21)), (2024, D(2024, 3, 31))]
)
def test_easter_sunday_known_dates(year, easter):
    assert easter_sunday(year) == easter


def test_default_calendar_dates():
    cal = parse_calendar()
    assert list(cal) == [
        "new_year",
        "valentines_day",
        "feb_23",
        "march_8",
        "mothers_day",
        "fathers_day",
        "christmas",
    ]
    assert cal["mothers_day"].on(2024) == D(2024, 3, 10)  # UK Mothering Sunday
    assert cal["mothers_day"].on(2025) == D(2025, 3, 30)
    assert cal["fathers_day"].on(2024) == D(2024, 6, 16)
    assert cal["christmas"].next_on(D(2011, 12, 26)) == D(2012, 12, 25)
    assert cal["march_8"].on(2012) == D(2012, 3, 8)


def test_configurable_mothers_day_rule_and_custom_dates():
    cal = parse_calendar("mothers_day=us, shop_birthday=09-15,new_year")
    assert cal["mothers_day"].on(2024) == D(2024, 5, 12)
    assert parse_calendar("mothers_day=ru")["mothers_day"].on(2024) == D(2024, 11, 24)
    assert cal["shop_birthday"].on(2030) == D(2030, 9, 15)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("easter_monday", "unknown occasion"),
        ("mothers_day=fr", "mothers_day rule"),
        ("sale=13-01", "MM-DD"),
        ("new_year,new_year", "twice"),
        ("bad code=01-01", "bad occasion code"),
    ],
)
def test_bad_calendar_names_the_setting(spec, message):
    with pytest.raises(CalendarError, match=message) as err:
        parse_calendar(spec)
    assert err.value.field == "reminders.calendar"


def test_feb29_follows_its_rule_in_common_years():
    assert occurrence_in(2, 29, 2011, feb29_rule="feb28") == D(2011, 2, 28)
    assert occurrence_in(2, 29, 2011, feb29_rule="mar1") == D(2011, 3, 1)
    assert occurrence_in(2, 29, 2012, feb29_rule="mar1") == D(2012, 2, 29)
    assert occurrence_in(4, 31, 2011) == D(2011, 4, 30)


def test_next_occurrence_yearly_once_and_first_year():
    today = D(2011, 12, 1)
    assert next_occurrence(12, 1, today=today) == today
    assert next_occurrence(11, 30, today=today) == D(2012, 11, 30)
    assert next_occurrence(12, 8, today=today, recurrence="once", year=2011) == D(2011, 12, 8)
    assert next_occurrence(11, 8, today=today, recurrence="once", year=2011) is None
    assert next_occurrence(1, 5, today=today, year=2013) == D(2013, 1, 5)
    assert next_occurrence(2, 29, today=D(2012, 3, 2), feb29_rule="feb28") == D(2013, 2, 28)


def test_the_customers_time_zone_decides_today():
    now = dt.datetime(2011, 12, 1, 20, 30, tzinfo=dt.UTC)
    assert local_today(now, "Asia/Tokyo") == D(2011, 12, 2)
    assert local_today(now, "America/Los_Angeles") == D(2011, 12, 1)
    assert local_today(now.replace(tzinfo=None), "UTC") == D(2011, 12, 1)
    assert local_midnight_utc(D(2011, 12, 2), "Asia/Tokyo") == dt.datetime(2011, 12, 1, 15, 0)
    with pytest.raises(InvalidInput) as err:
        local_today(now, "Mars/Olympus")
    assert err.value.field == "time_zone"


def test_lead_days_date_over_customer_over_setting():
    assert lead_days_for(3, 10, 7) == 3
    assert lead_days_for(None, 10, 7) == 10
    assert lead_days_for(None, None, 7) == 7


def test_planned_exactly_on_lead_day_not_before():
    today = D(2011, 12, 1)
    assert decide(D(2011, 12, 9), today, 7, 2) is None
    d = decide(D(2011, 12, 8), today, 7, 2)
    assert d is not None and d.action == "plan" and not d.is_catch_up and d.reason is None


def test_missed_lead_day_is_caught_up_then_skipped_with_reason():
    today = D(2011, 12, 1)
    late = decide(D(2011, 12, 3), today, 7, 2)
    assert late is not None and late.action == "plan" and late.is_catch_up
    assert "caught up 5 day(s)" in (late.reason or "")
    too_late = decide(D(2011, 12, 2), today, 7, 2)
    assert too_late is not None and too_late.action == "skip"
    assert "1 day(s) away" in (too_late.reason or "")
    assert decide(D(2011, 11, 30), today, 7, 2) is None  # passed


def test_a_lead_time_shorter_than_the_catch_up_minimum_still_plans_on_its_day():
    d = decide(D(2011, 12, 2), D(2011, 12, 1), 1, 2)
    assert d is not None and d.action == "plan"
