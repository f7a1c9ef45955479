"""Job: send the due emails of the outbox (claimed one by one, marked sent only after SMTP accepted).

``ctx.now()`` is the business instant (``--today``); claims and leases always use the wall clock. A stop
request (SIGTERM) ends the run between two messages: the one on the wire is finished and recorded.
"""

from __future__ import annotations

from domain.messaging.sending import send_outbox
from jobs.context import JobContext


def run(ctx: JobContext) -> str:
    report = send_outbox(
        ctx.sessions, ctx.settings, ctx.mailer, ctx.now(), ctx.worker_id, stop=ctx.stop_requested.is_set
    )
    return report.summary()
