"""A seeded loop of SIGKILLs of the sender and of the scheduler over a batch: nothing twice, nothing lost."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from domain.db import session_scope
from domain.messaging.mail import message_id_for
from domain.models import OutboundEmail
from domain.models._types import utcnow
from tests.jobs.test_send_outbox import _enqueue, giftrec_env, send_outbox_now

SEED = 20261202
BATCH = 300
KILLS = 24
COMMANDS = {"sender": "jobs run send-outbox", "scheduler": "scheduler"}


class Forker:
    """tests.jobs.forking_giftrec: giftrec commands as children of one process, to be killed."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.forking_giftrec", str(log)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def _ask(self, line: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def run(self, command: str) -> int:
        return self._ask(f"run {command}")

    def wait(self, pid: int) -> int:
        return self._ask(f"wait {pid}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def run_twice_at_once(env: dict[str, str], log: Path, command: str) -> list[int]:
    """Two children running ``command`` at the same time (the scheduler's run and one by hand); their
    wait statuses."""
    forker = Forker(env, log)
    try:
        first, second = forker.run(command), forker.run(command)
        return [forker.wait(first), forker.wait(second)]
    finally:
        forker.close()


def _wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def test_a_seeded_loop_of_kills_of_sender_and_scheduler_sends_nothing_twice_and_loses_nothing(
    sessions, mail_settings, smtp_server, tmp_path
):
    ids = _enqueue(sessions, BATCH)
    # a killed scheduler's lock expires at once for the next one
    env = giftrec_env(mail_settings, smtp_server, tmp_path) | {"GIFTREC_SCHEDULER_LOCK_TTL": "1"}
    log = tmp_path / "children.log"
    rng = random.Random(SEED)
    forker = Forker(env, log)
    killed: Counter[str] = Counter()
    try:
        for _ in range(KILLS):
            which = rng.choice(sorted(COMMANDS))
            target = len(smtp_server.messages) + rng.randint(1, 8)  # kill after this many more arrived
            pid = forker.run(COMMANDS[which])
            reached = _wait_for(lambda t=target: len(smtp_server.messages) >= t, timeout=30)
            assert reached, log.read_text()[-3000:]
            time.sleep(rng.uniform(0, 0.01))  # anywhere in the next exchange: claim, SMTP, record
            os.kill(pid, signal.SIGKILL)
            assert forker.wait(pid) == signal.SIGKILL, log.read_text()[-3000:]
            killed[which] += 1
        assert len(smtp_server.messages) < BATCH  # the kills fell inside the batch, not after it
        # a sender left alone finishes the batch
        pid = forker.run(COMMANDS["sender"])
        assert forker.wait(pid) == 0, log.read_text()[-3000:]
    finally:
        forker.close()
    assert killed["sender"] >= 5 and killed["scheduler"] >= 5, killed

    # past the claim timeout, the rows killed senders left 'sending' are listed unknown, never resent
    report = send_outbox_now(sessions, mail_settings, utcnow() + dt.timedelta(hours=1))
    assert report.sent == []
    received = smtp_server.message_ids()
    counts = Counter(received)
    assert [m for m, n in counts.items() if n > 1] == []  # no message accepted twice
    with session_scope(sessions) as s:
        rows = s.execute(
            select(OutboundEmail.id, OutboundEmail.status, OutboundEmail.message_id, OutboundEmail.dedupe_key)
        ).all()
    statuses = Counter(row.status for row in rows)
    assert sorted(r.id for r in rows) == sorted(ids)
    assert set(statuses) <= {"sent", "unknown"}, statuses  # none lost: nothing queued or stuck 'sending'
    assert statuses["sent"] + statuses["unknown"] == BATCH  # the counts add up exactly
    assert statuses["unknown"] <= KILLS  # at most the message on the wire at each kill
    sent = {m for _, status, m, _ in rows if status == "sent"}
    # an unknown row never learnt its Message-ID from a reply: it is derived from its key, as the sender did
    unknown = {
        message_id_for(key, mail_settings.mail.from_address)
        for _, status, _, key in rows
        if status == "unknown"
    }
    assert sent <= set(received)  # every 'sent' row reached the server
    assert set(received) - sent <= unknown  # anything else the server holds is listed for the operator
    assert len(received) == len(sent) + len(set(received) & unknown)
