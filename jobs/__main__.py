"""The scheduler process: `giftrec scheduler` or `python -m jobs`; builds engine, mailer and jobs."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from domain.db import make_engine, make_session_factory
from domain.messaging.mail import SmtpMailer
from jobs.context import JobContext
from jobs.scheduler import build_scheduler

log = logging.getLogger("jobs")


def build_context(settings: Settings, sessions: sessionmaker[Session] | None = None) -> JobContext:
    """The jobs' composition root: sessions (unless given), the SMTP mailer, the model store."""
    if sessions is None:
        sessions = make_session_factory(make_engine(settings.database.url, echo=settings.database.echo))
    return JobContext(settings=settings, sessions=sessions, mailer=SmtpMailer(settings.mail))


def run_scheduler(settings: Settings, sessions: sessionmaker[Session] | None = None) -> None:
    """Run the scheduler in this process until SIGINT/SIGTERM; releases the database lock on the way out."""
    from recommender.threads import pin_blas_threads

    pin_blas_threads()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # every lease renewal would be logged
    ctx = build_context(settings, sessions)
    scheduler = build_scheduler(ctx)

    def stop(signum: int, _frame: FrameType | None) -> None:
        # Running jobs stop between two units of work (the sender between two messages): the message on
        # the wire is finished and recorded instead of being left 'sending' (later 'unknown').
        log.info("signal %s: stopping the scheduler after the running jobs' current step", signum)
        ctx.stop_requested.set()
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    jobs = sorted(job.id for job in scheduler.scheduler.get_jobs() if not job.id.startswith("_"))
    log.info("scheduler %s starting with jobs: %s", ctx.worker_id, ", ".join(jobs))
    scheduler.start()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_scheduler(load_settings())


if __name__ == "__main__":  # pragma: no cover
    main()
