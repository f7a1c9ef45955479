"""gunicorn settings that ``giftrec serve`` loads (``--config python:api.gunicorn_conf``)."""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges leave /metrics (prometheus-client's multiprocess mode); its
    counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
