"""The deployment benchmark's open loop: its send times and its latency bookkeeping, on a virtual clock."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bench._load import DROPPED, LATE_MS, Sent, open_loop, open_loop_summary, poisson_schedule


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: where the loop would wait for its next timer, virtual time jumps there instead."""

    now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout:
            self.now += timeout
        return ready


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(selector=self._virtual)

    def time(self) -> float:
        return self._virtual.now


def _run(due: list[float], slots: int, service: float, deadline: float = 1e9) -> list[Sent]:
    """Run the open loop on virtual time: every request takes `service` seconds once sent."""

    async def main() -> list[Sent]:
        loop = asyncio.get_running_loop()

        async def send(i: int) -> int:
            await asyncio.sleep(service)
            return 200

        clock: Callable[[], float] = loop.time
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        return await open_loop(due, slots, send, deadline=deadline, clock=clock, sleep=sleep)

    with asyncio.Runner(loop_factory=_VirtualTimeLoop) as runner:
        return runner.run(main())


def test_a_request_that_waits_for_a_connection_counts_its_wait_from_its_scheduled_time() -> None:
    done = _run([0.0, 0.0, 0.0], slots=1, service=10.0)

    assert [s.latency_ms for s in done] == pytest.approx([10_000.0, 20_000.0, 30_000.0])
    assert [s.wait_ms for s in done] == pytest.approx([0.0, 10_000.0, 20_000.0])
    assert [s.queued for s in done] == [False, True, True]
    assert [s.result for s in done] == [200, 200, 200]


def test_queued_requests_take_the_next_free_connection_in_order_of_their_send_times() -> None:
    done = _run([0.0, 1.0, 2.0, 3.0], slots=2, service=10.0)

    assert [s.sent for s in done] == pytest.approx([0.0, 1.0, 10.0, 11.0])
    assert [s.latency_ms for s in done] == pytest.approx([10_000.0, 10_000.0, 18_000.0, 18_000.0])
    assert [s.queued for s in done] == [False, False, True, True]


def test_requests_are_sent_at_their_scheduled_times_not_earlier_and_not_back_to_back() -> None:
    done = _run([5.0, 50.0, 51.0], slots=1, service=10.0)

    assert [s.sent for s in done] == pytest.approx([5.0, 50.0, 60.0])
    assert [s.wait_ms for s in done] == pytest.approx([0.0, 0.0, 9_000.0])


def test_a_request_with_no_free_connection_by_the_deadline_is_dropped_not_sent() -> None:
    done = _run([0.0, 0.0, 0.0], slots=1, service=10.0, deadline=15.0)

    assert [s.sent for s in done] == pytest.approx([0.0, 10.0, None])
    assert done[2].latency_ms is None and done[2].result is None


def test_the_schedule_is_a_seeded_poisson_process_within_the_run() -> None:
    times = poisson_schedule(200.0, 60.0, seed=18)

    assert times == poisson_schedule(200.0, 60.0, seed=18)
    assert times != poisson_schedule(200.0, 60.0, seed=19)
    assert times == sorted(times) and 0.0 < times[0] and times[-1] < 60.0
    # 12,000 expected; the count of a Poisson process has standard deviation sqrt(12,000) ~ 110.
    assert abs(len(times) - 12_000) < 5 * 110
    with pytest.raises(ValueError):
        poisson_schedule(0.0, 60.0, seed=18)


def test_the_summary_counts_dropped_and_late_requests_apart_from_the_answered() -> None:
    rows = [
        ("recommendations", 1, 200, 12.0, 0.0, "/v1/customers/1/recommendations?n=10", 0.0, False),
        ("similar", 2, 200, 40.0, 0.1, "", LATE_MS * 30, True),
        ("bestsellers", 1, 503, 5.0, 0.2, "", LATE_MS / 2, False),
        ("similar", 2, DROPPED, 0.0, 0.3, "", 0.0, True),
    ]

    summary = open_loop_summary(rows, duration=2.0)

    assert summary["scheduled"] == 4
    assert summary["answered"] == 3
    assert summary["dropped"] == 1
    assert summary["achieved_per_s"] == pytest.approx(1.5)
    assert summary["late"] == 1
    assert summary["queued"] == 2
