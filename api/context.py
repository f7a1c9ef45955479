"""What the web process built once (settings, engine, sessions, services), shared by the blueprints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings


@dataclass
class AppContext:
    """What the web process built once: handed to the blueprints through app.extensions."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    #: name -> callable returning a JSON-able status; a dict with ok=False makes /health/ready fail.
    readiness_probes: dict[str, Callable[[], Any]] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)

    def close(self, timeout: float = 30.0) -> None:
        """Let background refreshes finish (they hold database connections), then close the pool."""
        for name in ("next_purchase", "model_store", "catalog"):
            service = self.services.get(name)
            if service is not None:
                service.wait(timeout)
        self.engine.dispose()
