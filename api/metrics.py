"""``GET /metrics``: Prometheus's text format, for a server or admin key only.

The counters and histograms of :mod:`domain.metrics` (request latency by route and status, items served
by source, job runs and durations) come from every process: under ``giftrec serve`` from the files of
``PROMETHEUS_MULTIPROC_DIR`` (all gunicorn workers and the scheduler), else from this process. What is
state rather than a count is read at the scrape: the model this worker serves (version, age), the outbox
by status, how long the oldest due reminder has waited, whether the mail queue is paused, whether a
scheduler holds the database lease.

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
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api import auth
from api.context import AppContext
from domain.locks import SCHEDULER_LOCK, lease_is_live
from domain.messaging.outbox import outbox_counts
from domain.messaging.pause import current_pause
from domain.models._types import utcnow

#: Not in the OpenAPI document (for the operator's scraper, not for shops); guarded like /v1 (api.auth).
bp = APIBlueprint("metrics", __name__, enable_openapi=False)

#: Who may read /metrics (admin keys pass every check).
METRICS_SCOPES = ("server",)


class StateCollector(Collector):
    """Gauges read at each scrape: the served model, the outbox, the mail queue's pause, the scheduler."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
