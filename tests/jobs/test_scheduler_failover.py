"""Exactly one active scheduler: a second one waits on the database lease and takes over when the first
is killed outright (``kill -9``: no clean release), within ``lock_ttl`` plus one renewal period."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domain.locks import lease_holder
from domain.models._types import utcnow
from jobs.scheduler import LOCK_NAME
from tests.delivery_fixtures import HANG, with_mail
from tests.jobs.test_send_outbox import _enqueue, _statuses, send_outbox_now

LOCK_TTL = 3  # seconds; a waiting scheduler looks at the lease every LOCK_TTL / 3


def _scheduler(settings, log: Path, **env: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = (
        dict(
            os.environ,
            GIFTREC_DATABASE_URL=settings.database.url,
            GIFTREC_SERVER_INSTANCE_DIR=settings.server.instance_dir,
            GIFTREC_SERVER_SECRET_KEY="test",
            GIFTREC_SCHEDULER_LOCK_TTL=str(LOCK_TTL),
            GIFTREC_MAIL_SMTP_PORT="9",  # nothing is queued; a catch-up send must not reach a real relay
        )
        | env
    )
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "jobs"], env=env, stdout=out, stderr=out)


def _holder_pid(sessions) -> tuple[int | None, object]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        lease = lease_holder(session, LOCK_NAME)
        if lease is None:
            return None, None
        return int(lease.holder.split(":")[1]), lease.expires_at


def _wait(check, seconds: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


@pytest.mark.slow
def test_a_second_scheduler_waits_and_takes_over_when_the_first_is_killed(settings, sessions, tmp_path):
    first = _scheduler(settings, tmp_path / "first.log")
    second = None
    try:
        _wait(lambda: _holder_pid(sessions)[0] == first.pid, 60)
        second = _scheduler(settings, tmp_path / "second.log")
        # The second one is up (it logs that it stays idle) and never takes the lease while the first renews.
        _wait(lambda: b"staying idle" in (tmp_path / "second.log").read_bytes(), 60)
        time.sleep(2 * LOCK_TTL)
        assert _holder_pid(sessions)[0] == first.pid
        assert second.poll() is None

        _, expires_at = _holder_pid(sessions)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed = time.monotonic()
        _wait(lambda: _holder_pid(sessions)[0] == second.pid, 4 * LOCK_TTL + 10)
        took = time.monotonic() - killed
        new_pid, new_expiry = _holder_pid(sessions)
        assert new_expiry > expires_at, "taken over only once the dead one's lease expired"
        assert took <= LOCK_TTL + LOCK_TTL / 3 + 5, took  # the documented bound, plus start-up slack
        assert b"holds the database lock" in (tmp_path / "second.log").read_bytes()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)


#: A long lease in the SIGTERM tests: a standby that takes over sooner than this was let in by the stopped
#: scheduler's release, not by the lease's expiry.
LONG_TTL = 30
#: How long a stopped scheduler may take to exit when nothing is stuck (start-up slack of a loaded machine).
EXIT_WITHIN = 15


def _stop(proc: subprocess.Popen[bytes], seconds: float) -> float:
    """SIGTERM ``proc``; the seconds it took to exit (AssertionError past ``seconds``)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"still running {seconds} s after SIGTERM") from None
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigterm_as_the_lease_is_gained_stops_and_releases_it(settings, sessions, tmp_path, delay):
    """Regression: the SIGTERM handler ran ``shutdown(wait=True)`` on the main thread, which could be inside
    the scheduler's loop holding the job store's lock that the lease's catch-up call (on another thread)
    was waiting for: the stop hung. The signal is sent just as the lease is gained (catch-up in flight)."""
    first = _scheduler(settings, tmp_path / "first.log", GIFTREC_SCHEDULER_LOCK_TTL=str(LONG_TTL))
    try:
        _wait(lambda: _holder_pid(sessions)[0] == first.pid, 60)
        time.sleep(delay)
        _stop(first, EXIT_WITHIN)
        assert first.returncode == 0, (tmp_path / "first.log").read_text()
        assert _holder_pid(sessions) == (None, None), "the lease is released, not left to expire"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)


@pytest.mark.slow
def test_after_sigterm_a_standby_takes_over_before_the_lease_would_expire(settings, sessions, tmp_path):
    first = _scheduler(settings, tmp_path / "first.log", GIFTREC_SCHEDULER_LOCK_TTL=str(LONG_TTL))
    second = None
    try:
        _wait(lambda: _holder_pid(sessions)[0] == first.pid, 60)
        second = _scheduler(settings, tmp_path / "second.log", GIFTREC_SCHEDULER_LOCK_TTL=str(LONG_TTL))
        _wait(lambda: b"staying idle" in (tmp_path / "second.log").read_bytes(), 60)
        _stop(first, EXIT_WITHIN)
        stopped = time.monotonic()
        _wait(lambda: _holder_pid(sessions)[0] == second.pid, LONG_TTL / 3 + 10)
        assert time.monotonic() - stopped < LONG_TTL, "taken over at the release, not at the expiry"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)


@pytest.mark.slow
def test_a_job_stuck_past_the_stop_timeout_is_abandoned_and_nothing_is_sent_twice(
    settings, sessions, smtp_server, tmp_path
):
    """Regression: a SIGTERM waited for the running jobs however long they took (here a relay that never
    answers DATA, with a long SMTP timeout), past any supervisor's patience. The scheduler now waits
    ``scheduler.stop_timeout``, releases the lease and exits 1, abandoning the stuck send: its message stays
    'sending', becomes 'unknown' for the operator, and is never sent twice."""
    stop_timeout = 2
    ids = _enqueue(sessions, 3)
    smtp_server.handler.data_replies.append(HANG)
    log = tmp_path / "scheduler.log"
    proc = _scheduler(
        settings,
        log,
        GIFTREC_SCHEDULER_LOCK_TTL=str(LONG_TTL),
        GIFTREC_SCHEDULER_STOP_TIMEOUT=str(stop_timeout),
        GIFTREC_MAIL_SMTP_HOST=smtp_server.host,
        GIFTREC_MAIL_SMTP_PORT=str(smtp_server.port),
        GIFTREC_MAIL_SMTP_TIMEOUT="600",
    )
    try:
        _wait(lambda: "sending" in _statuses(sessions).values(), 60)
        time.sleep(0.5)  # the message is on the wire, its DATA unanswered
        took = _stop(proc, stop_timeout + EXIT_WITHIN)
        assert proc.returncode == 1, log.read_text()
        assert took >= stop_timeout
        assert "abandoned" in log.read_text()
        assert _holder_pid(sessions) == (None, None)
        assert sorted(_statuses(sessions).values()) == ["queued", "queued", "sending"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    report = send_outbox_now(
        sessions,
        with_mail(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port),
        utcnow() + dt.timedelta(hours=1),
    )
    assert len(report.sent) == 2 and len(report.abandoned) == 1
    assert sorted(_statuses(sessions).values()) == ["sent", "sent", "unknown"]
    assert len(smtp_server.messages) == 2 and len(set(smtp_server.message_ids())) == 2
    assert set(_statuses(sessions)) == set(ids)
