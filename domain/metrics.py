"""The Prometheus metrics every web process counts into (``prometheus-client``; multiprocess under
gunicorn).

Counters and histograms are defined once here. With ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is first imported (``giftrec serve`` sets it for its gunicorn workers), each process
writes its values to files in that directory and ``/metrics`` adds them up; without it they live in this
process's default registry. What is read from the database or the model in memory (model version and age,
the outbox, the queue's pause, and the scheduler's job runs, which a scheduler on any host records in the
database: ``domain.job_runs``) is not counted here but read when ``/metrics`` is scraped
(``api/metrics.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram

__all__ = [
    "RATE_LIMIT_STORAGE_FAILURES",
    "RECOMMENDATIONS",
    "REQUEST_LATENCY",
    "count_served",
]

#: Buckets for requests: the storefront answers in milliseconds, the pages and imports in seconds.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_LATENCY = Histogram(
    "giftrec_http_request_duration_seconds",
    "Time from the request reaching the app to its response's start, by route (Flask endpoint) and status",
    ("route", "method", "status"),
    buckets=_REQUEST_BUCKETS,
)
RECOMMENDATIONS = Counter(
    "giftrec_recommendations_served",
    "Items served by the storefront API, by source (collaborative, similar, bestsellers, new_arrivals)",
    ("source",),
)
RATE_LIMIT_STORAGE_FAILURES = Counter(
    "giftrec_rate_limit_storage_failures",
    "Calls to the rate-limit storage (Redis) that failed, by limit: api (the request went through "
    "unlimited), sign_in (counted in the web process instead)",
    ("limit",),
)


#: source -> its counter: ``labels()`` checks the label and takes a lock on every call; the sources are four.
_SERVED: dict[str, Any] = {}


def count_served(sources: Iterable[str]) -> None:
    """Count one response's items by source (one increment per distinct source, usually one)."""
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    for source, n in counts.items():
        counter = _SERVED.get(source)
        if counter is None:
            counter = _SERVED[source] = RECOMMENDATIONS.labels(source)
        counter.inc(n)
