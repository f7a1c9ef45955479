"""``GET /metrics``: Prometheus's text format, for a server or admin key only.

The counters and histograms of :mod:`domain.metrics` (request latency by route and status, items served
by source) come from every web process: under ``giftrec serve`` from the files of
``PROMETHEUS_MULTIPROC_DIR`` (all gunicorn workers), else from this process. What is read at the scrape:
the model this worker serves (version, age), and from the database, which every host shares, the outbox
by status, how long the oldest due reminder has waited, whether the mail queue is paused, whether a
scheduler holds the database lease, and the scheduled job runs (counts by outcome, wall time, the last
success) that whichever scheduler ran them recorded (:mod:`domain.job_runs`), on this host or another.

Access: the figures name no customer, but they tell how a shop is doing (orders, mail volume), so a
widget key (public, in the shop's pages) or an email key must not read them: a scraper sends a server or
admin key as a bearer token (Prometheus's ``authorization`` setting). tests/api/test_metrics.py checks it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api import auth
from api.context import AppContext
from domain.job_runs import job_run_totals
from domain.locks import SCHEDULER_LOCK, lease_is_live
from domain.messaging.outbox import outbox_counts
from domain.messaging.pause import current_pause
from domain.models._types import utcnow

#: Not in the OpenAPI document (for the operator's scraper, not for shops); guarded like /v1 (api.auth).
bp = APIBlueprint("metrics", __name__, enable_openapi=False)

#: Who may read /metrics (admin keys pass every check).
METRICS_SCOPES = ("server",)


class StateCollector(Collector):
    """Read at each scrape: the served model, the outbox, the mail queue's pause, the scheduler and its
    job runs."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        store = self.ctx.services.get("model_store")
        info = GaugeMetricFamily(
            "giftrec_model_info",
            "The model this worker serves (1), by version and algorithm",
            labels=("version", "algorithm"),
        )
        age = GaugeMetricFamily(
            "giftrec_model_age_seconds", "Seconds since the served model's run was trained"
        )
        loaded = None if store is None else store.loaded_model()
        if loaded is not None:
            info.add_metric([loaded.version, loaded.algorithm], 1.0)
            if loaded.trained_at is not None:
                age.add_metric([], (now - loaded.trained_at).total_seconds())
        yield info
        yield age
        with self.ctx.sessions() as session:
            counts, oldest = outbox_counts(session, now)
            paused = current_pause(session) is not None
            scheduler = lease_is_live(session, SCHEDULER_LOCK, now)
            jobs = job_run_totals(session)
        outbox = GaugeMetricFamily("giftrec_outbox_messages", "Outbox messages by status", labels=("status",))
        for status, n in counts.items():
            outbox.add_metric([status], float(n))
        yield outbox
        yield GaugeMetricFamily(
            "giftrec_oldest_due_reminder_seconds",
            "How long the oldest reminder that is due and not sent has waited (0: none)",
            value=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
        )
        yield GaugeMetricFamily(
            "giftrec_mail_queue_paused", "1 while the mail queue is paused", value=1.0 if paused else 0.0
        )
        yield GaugeMetricFamily(
            "giftrec_scheduler_active",
            "1 while a scheduler holds the database lease (0: no scheduler runs jobs: nothing is sent)",
            value=1.0 if scheduler else 0.0,
        )
        yield from _job_metrics(jobs)


def _job_metrics(jobs: list[Any]) -> Iterator[Metric]:
    """The job runs every scheduler recorded (``domain.job_runs``), by job."""
    runs = CounterMetricFamily(
        "giftrec_job_runs", "Scheduled job runs, by job and outcome (ok, failed)", labels=("job", "outcome")
    )
    duration = SummaryMetricFamily(
        "giftrec_job_duration_seconds", "Wall time of scheduled job runs, by job", labels=("job",)
    )
    success = GaugeMetricFamily(
        "giftrec_job_last_success_timestamp_seconds",
        "When the job's last successful run finished (Unix time); absent until one has",
        labels=("job",),
    )
    for job in jobs:
        runs.add_metric([job.job, "ok"], float(job.runs_ok))
        runs.add_metric([job.job, "failed"], float(job.runs_failed))
        duration.add_metric([job.job], job.runs_ok + job.runs_failed, job.seconds_total)
        if job.last_success_at is not None:
            success.add_metric([job.job], job.last_success_at.timestamp())
    yield runs
    yield duration
    yield success


def _registry(ctx: AppContext) -> Any:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry: Any = REGISTRY
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector(ctx))
    return registry, state


@bp.get("/metrics")
def metrics() -> Response:
    refused = auth.authenticate(request.environ, *METRICS_SCOPES)
    if refused is not None:
        return refused
    ctx: AppContext = current_app.extensions["giftrec"]
    counted, state = _registry(ctx)
    body = generate_latest(counted) + generate_latest(state)
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
