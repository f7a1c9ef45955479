"""The planner killed mid-run (SIGKILL, at seeded random moments) and two planners at once."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import time
from collections import Counter

from sqlalchemy import select

from domain.db import session_scope
from domain.demo.seed import seed_demo
from domain.models import GiftSelection
from domain.reminders.planning import plan_due_selections
from tests.domain.serving.fixtures import imported, imported_rows, sample_slice, settings  # noqa: F401
from tests.jobs.test_kill_loop import Forker, run_twice_at_once
from tests.jobs.test_send_outbox import giftrec_env

SEED = 16
TODAY = dt.date(2011, 12, 1)
PLAN = f"jobs run plan-selections --today {TODAY:%Y-%m-%d}"


def _keys(sessions) -> Counter[tuple[int, str, int]]:
    with sessions() as s:
        rows = s.execute(select(GiftSelection.customer_id, GiftSelection.occasion_key, GiftSelection.year))
        return Counter((r[0], r[1], r[2]) for r in rows)


def _expected(sessions, settings) -> Counter[tuple[int, str, int]]:
    """What one planner alone plans, in a transaction rolled back afterwards."""
    with sessions() as s:
        plan_due_selections(s, settings, dt.datetime.combine(TODAY, dt.time(12)))
        s.flush()
        rows = s.execute(select(GiftSelection.customer_id, GiftSelection.occasion_key, GiftSelection.year))
        keys = Counter((r[0], r[1], r[2]) for r in rows)
        s.rollback()
    assert keys and _keys(sessions) == Counter()
    return keys


def _clear(sessions) -> None:
    with session_scope(sessions) as s:
        for selection in s.scalars(select(GiftSelection)):
            s.delete(selection)


def _seeded(sessions) -> None:
    with session_scope(sessions) as s:
        seed_demo(s, today=TODAY)


def test_a_planner_killed_mid_run_leaves_nothing_half_planned_and_the_next_run_plans_it_all(
    sessions, settings, imported, smtp_server, tmp_path
):
    _seeded(sessions)
    expected = _expected(sessions, settings)
    rng = random.Random(SEED)
    forker = Forker(giftrec_env(settings, smtp_server, tmp_path), tmp_path / "children.log")
    try:
        started = time.monotonic()
        pid = forker.run(PLAN)
        assert forker.wait(pid) == 0, (tmp_path / "children.log").read_text()[-3000:]
        alone = time.monotonic() - started  # how long a whole run takes here
        _clear(sessions)  # back to nothing planned, to kill runs from the start
        # Each attempt starts from nothing planned and is killed at a seeded moment of a whole run. A run
        # that ended before its kill (this machine faster now than the measured run) counts no kill and
        # halves the window, so that at least three runs are killed mid-way however fast the machine is.
        kills = attempts = 0
        while kills < 3 and attempts < 20:
            attempts += 1
            pid = forker.run(PLAN)
            time.sleep(rng.uniform(0.1, 0.9) * alone)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it had already ended
            killed = forker.wait(pid) == signal.SIGKILL
            kills += killed
            planned = _keys(sessions)
            assert planned in (Counter(), expected), "a killed planner left part of its run behind"
            if not killed:
                alone /= 2
            _clear(sessions)
        assert kills >= 3, f"only {kills} of {attempts} runs could be killed before they ended"
        pid = forker.run(PLAN)
        assert forker.wait(pid) == 0, (tmp_path / "children.log").read_text()[-3000:]
        assert _keys(sessions) == expected  # the next run plans it all
    finally:
        forker.close()
    assert _keys(sessions) == expected  # none twice, none missing


def test_two_planners_at_once_plan_each_selection_once(sessions, settings, imported, smtp_server, tmp_path):
    _seeded(sessions)
    expected = _expected(sessions, settings)
    log = tmp_path / "children.log"
    statuses = run_twice_at_once(giftrec_env(settings, smtp_server, tmp_path), log, PLAN)
    assert _keys(sessions) == expected  # none twice, none missing
    assert statuses == [0, 0], log.read_text()[-8000:]  # the one that lost the race did not fail
