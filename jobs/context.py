"""What every job gets: settings, sessions, a mailer, the model store and the moment it runs at."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from domain.messaging.mail import Mailer
from domain.models._types import utcnow


def worker_name() -> str:
    """host:pid:random, unique per process, readable in `outbox list` and the job lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class JobContext:
    settings: Settings
    sessions: sessionmaker[Session]
    mailer: Mailer
    #: A fixed day to run as (CLI --today, tests): noon UTC of that day. None: the real clock.
    today: dt.date | None = None
    #: A fixed instant (naive UTC) to run at; wins over ``today``.
    at: dt.datetime | None = None
    model_store: Any = None
    worker_id: str = field(default_factory=worker_name)
    #: Set on SIGTERM/SIGINT: long jobs stop between two units of work (the sender between two messages).
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def now(self) -> dt.datetime:
        """The business instant: what is due, deadlines, the cap. Never used for claims or leases."""
        if self.at is not None:
            return self.at
        if self.today is not None:
            return dt.datetime.combine(self.today, dt.time(12))
        return utcnow()
