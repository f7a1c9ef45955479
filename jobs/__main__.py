"""The scheduler process: `giftrec scheduler` or `python -m jobs`; builds engine, mailer and jobs."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from domain.db import make_engine, make_session_factory
from domain.logs import configure_logging
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
    """Run the scheduler in this process until SIGINT/SIGTERM; releases the database lock on the way out.

    The signal handler only sets ``ctx.stop_requested``: the main thread, which does nothing but wait for
    it, then stops the scheduler. (Stopping inside the handler hung: the handler runs on the main thread,
    which held the job store's lock in APScheduler's loop while the lease's thread waited for it.) Running
    jobs stop after their current step (the sender after the message on the wire, which is recorded); one
    still running after ``scheduler.stop_timeout`` seconds is abandoned: the lease is released and the
    process exits with status 1 at once. Abandoning is safe by the outbox's rules: a message claimed but
    not recorded stays 'sending', later 'unknown' for the operator, never sent twice.
    """
    from recommender.threads import pin_blas_threads

    pin_blas_threads()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # every lease renewal would be logged
    ctx = build_context(settings, sessions)
    scheduler = build_scheduler(ctx, background=True)

    def stop(signum: int, _frame: FrameType | None) -> None:
        ctx.stop_requested.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    jobs = sorted(job.id for job in scheduler.scheduler.get_jobs() if not job.id.startswith("_"))
    log.info("scheduler %s starting with jobs: %s", ctx.worker_id, ", ".join(jobs))
    scheduler.start()
    while not ctx.stop_requested.wait(1.0):  # a timeout, so that the signal's handler runs promptly
        pass
    timeout = settings.scheduler.stop_timeout
    log.info("stopping: the running jobs have %s s to finish their current step", timeout)
    abandoned = scheduler.stop(timeout)
    if abandoned:
        log.error(
            "abandoned jobs still running after %s s: %s (the lease is released; a message being sent "
            "is left 'sending', later 'unknown', never sent twice)",
            timeout,
            ", ".join(abandoned),
        )
        logging.shutdown()
        os._exit(1)  # their threads would keep the interpreter from exiting
    log.info("scheduler %s stopped", ctx.worker_id)


def main() -> None:
    configure_logging(logging.INFO)
    run_scheduler(load_settings())


if __name__ == "__main__":  # pragma: no cover
    main()
