"""Wall and CPU seconds per phase of a nightly run, for its summary and for `bench/bench_lifecycle.py`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Phases", "timed"]

#: phase name -> (wall seconds, CPU seconds of this process), in the order the phases ran.
Phases = dict[str, tuple[float, float]]


@contextmanager
def timed(phases: Phases, name: str) -> Iterator[None]:
    """Add the wall and process CPU time of the block to ``phases[name]`` (summed when repeated)."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        before = phases.get(name, (0.0, 0.0))
        phases[name] = (
            before[0] + time.perf_counter() - wall,
            before[1] + time.process_time() - cpu,
        )
