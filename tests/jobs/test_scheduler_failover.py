"""Exactly one active scheduler: a second one waits on the database lease and takes over when the first
is killed outright (``kill -9``: no clean release), within ``lock_ttl`` plus one renewal period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domain.locks import lease_holder
from jobs.scheduler import LOCK_NAME

LOCK_TTL = 3  # seconds; a waiting scheduler looks at the lease every LOCK_TTL / 3


def _scheduler(settings, log: Path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=settings.database.url,
        GIFTREC_SERVER_INSTANCE_DIR=settings.server.instance_dir,
        GIFTREC_SERVER_SECRET_KEY="test",
        GIFTREC_SCHEDULER_LOCK_TTL=str(LOCK_TTL),
        GIFTREC_MAIL_SMTP_PORT="9",  # nothing is queued; a catch-up send must not reach a real relay
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
        # Its catch-up runs are over before it is stopped (a SIGTERM while the lease's catch-up call is in
        # flight can hang the stop: see docs/deployment.md, what is left).
        _wait(lambda: b"job send-outbox:" in (tmp_path / "second.log").read_bytes(), 60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
