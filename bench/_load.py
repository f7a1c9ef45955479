"""The deployment benchmark's load: the storefront's request mix, sent closed loop or open loop.

Closed loop (the default): each connection sends its next request as soon as the last one returned, so
the server's speed sets the rate. Open loop: visitors arrive at a rate whatever the server does. Send
times are drawn in advance (a seeded Poisson process), at most ``slots`` requests are in flight, and each
request's latency is counted from its *scheduled* time: a request that waited for a free connection, or
for a busy load generator, counts that wait (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from bench._common import percentile

SEED = 18
MIX = (
    ("recommendations", 0.55),
    ("similar", 0.15),
    ("bestsellers", 0.10),
    ("event write", 0.06),
    ("order write", 0.04),
    ("bare Flask /health/live", 0.10),
)
# A request sent more than this after its scheduled time is late: it waited for a connection or for the
# load generator's own loop. Below it is the event loop's timer: epoll waits in whole milliseconds, so a
# send wakes up to 1 ms after its time even on an idle machine (counted in the latency all the same).
LATE_MS = 2.0
# After the last send time, requests still waiting for a connection are sent for this long; the rest are
# dropped (not sent, counted as such).
DRAIN_SECONDS = 10.0
# The status of a dropped request in a row.
DROPPED = -1

# A row: (kind, port, status, latency ms from the start or the scheduled time, that time (clock s), the
# recommendations' path (empty for other kinds), wait ms before the send, whether all connections were busy)
Row = tuple[str, int, int, float, float, str, float, bool]


def zipf_cum(n: int) -> list[float]:
    """Cumulative Zipf (s = 1) weights over ranks 0..n-1, for ``random.choices(cum_weights=...)``."""
    return list(accumulate(1.0 / (rank + 1) for rank in range(n)))


def poisson_schedule(rate: float, duration: float, seed: int) -> list[float]:
    """Send times (seconds from the start, ascending, all below `duration`) of a Poisson process of
    `rate` arrivals per second: exponential gaps drawn from a generator seeded with `seed`."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


@dataclass(frozen=True)
class Sent:
    """One open-loop request: when it was due, sent and answered (clock seconds), and its result.

    ``sent`` and ``done`` are None for a request dropped at the end of the run. ``queued`` says that every
    connection was busy at its scheduled time."""

    index: int
    scheduled: float
    sent: float | None
    done: float | None
    queued: bool
    result: Any = None

    @property
    def latency_ms(self) -> float | None:
        """From the scheduled time to the answer: the wait for a connection included."""
        return None if self.done is None else (self.done - self.scheduled) * 1000.0

    @property
    def wait_ms(self) -> float | None:
        """From the scheduled time to the send."""
        return None if self.sent is None else (self.sent - self.scheduled) * 1000.0


async def open_loop(
    due: Sequence[float],
    slots: int,
    send: Callable[[int], Awaitable[Any]],
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> list[Sent]:
    """Call ``send(i)`` at clock time ``due[i]`` (ascending) with at most `slots` calls in flight.

    A request due while every slot is busy waits for one, in order of its due time; one that gets no
    slot before `deadline` is dropped. The answer's time counts from ``due[i]``, not from the send.
    `clock` and `sleep` are the event loop's by default; tests pass a virtual clock.
    """
    free = asyncio.Semaphore(slots)

    async def one(i: int, at: float) -> Sent:
        queued = free.locked()
        async with free:
            sent = clock()
            if sent > deadline:
                return Sent(i, at, None, None, queued)
            result = await send(i)
            return Sent(i, at, sent, clock(), queued, result)

    tasks = []
    for i, at in enumerate(due):
        ahead = at - clock()
        if ahead > 0:
            await sleep(ahead)
        tasks.append(asyncio.create_task(one(i, at)))
    return list(await asyncio.gather(*tasks))


def open_loop_summary(rows: Sequence[Row], duration: float) -> dict[str, Any]:
    """Answered, dropped and late requests of an open-loop run, the achieved rate and the waits."""
    answered = [r for r in rows if r[2] != DROPPED]
    waits = [r[6] for r in answered]
    return {
        "scheduled": len(rows),
        "answered": len(answered),
        "dropped": len(rows) - len(answered),
        "achieved_per_s": len(answered) / duration,
        "late": sum(1 for w in waits if w > LATE_MS),
        "queued": sum(1 for r in rows if r[7]),
        "wait_p50_ms": percentile(waits, 50) if waits else 0.0,
        "wait_p99_ms": percentile(waits, 99) if waits else 0.0,
    }


# ------------------------------------------------------------------------------------ the requests
async def request(port: int, raw: bytes) -> tuple[int, bytes]:
    """Send one raw HTTP/1.1 request on a new connection; (status, body), status 0 on a bad answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()  # the request says Connection: close
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body


def build(kind: str, rng: random.Random, plan: dict[str, Any]) -> bytes:
    """One raw request of `kind` for a Zipf-drawn customer and SKU."""
    customers, skus = plan["customers"], plan["skus"]
    who = rng.choices(customers, cum_weights=plan["customer_cum"])[0]
    sku = rng.choices(skus, cum_weights=plan["sku_cum"])[0]
    key = plan["server"]
    body = b""
    method = "GET"
    if kind == "recommendations":
        path = f"/v1/customers/{who}/recommendations?n=10"
    elif kind == "similar":
        path = f"/v1/products/{sku}/similar?n=10"
    elif kind == "bestsellers":
        path = "/v1/bestsellers?n=10"
    elif kind == "event write":
        method, path = "POST", "/v1/events"
        event = {"id": uuid.uuid4().hex, "type": "view", "sku": sku, "customer_id": who}
        body = json.dumps({"events": [event]}).encode()
    elif kind == "order write":
        method, path = "POST", "/v1/orders"
        line = {"sku": sku, "quantity": 1, "unit_price": "4.95"}
        body = json.dumps(
            {"order_id": f"B-{uuid.uuid4().hex[:20]}", "customer_id": who, "lines": [line]}
        ).encode()
    else:
        path, key = "/health/live", ""
    headers = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if key:
        headers.append(f"X-Api-Key: {key}")
    if body:
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _draw(rng: random.Random, plan: dict[str, Any]) -> tuple[str, bytes, str]:
    kinds = [k for k, _ in MIX]
    kind = rng.choices(kinds, cum_weights=list(accumulate(w for _, w in MIX)))[0]
    raw = build(kind, rng, plan)
    who = raw.split(b" ", 2)[1].decode() if kind == "recommendations" else ""
    return kind, raw, who


async def _status(port: int, raw: bytes) -> int:
    try:
        return (await request(port, raw))[0]
    except OSError:
        return 0


async def _closed(port: int, until: float, rng: random.Random, plan: dict[str, Any], out: list[Row]) -> None:
    while time.monotonic() < until:
        kind, raw, who = _draw(rng, plan)
        started = time.monotonic()
        status = await _status(port, raw)
        out.append((kind, port, status, (time.monotonic() - started) * 1000.0, started, who, 0.0, False))


async def _open(index: int, plan: dict[str, Any], slots: int, out: list[Row]) -> None:
    """This generator's share of the schedule: every ``generators``-th arrival, ports alternating."""
    rng = random.Random(SEED * 1000 + index)
    ports, start = plan["ports"], plan["start"]
    mine = plan["schedule"][index :: plan["generators"]]
    drawn = [(*_draw(rng, plan), ports[k % len(ports)]) for k in range(len(mine))]
    deadline = start + plan["duration"] + DRAIN_SECONDS

    async def send(i: int) -> int:
        return await _status(drawn[i][3], drawn[i][1])

    for s in await open_loop([start + t for t in mine], slots, send, deadline=deadline):
        kind, _, who, port = drawn[s.index]
        latency, wait = s.latency_ms, s.wait_ms
        if latency is None or wait is None:
            out.append((kind, port, DROPPED, 0.0, s.scheduled, who, 0.0, s.queued))
        else:
            out.append((kind, port, s.result, latency, s.scheduled, who, wait, s.queued))


def generator(index: int, plan: dict[str, Any], connections: int, until: float, result: str) -> None:
    """One load-generating process: ``connections`` closed loops bound to the ports round-robin, or, with
    ``plan["schedule"]``, its share of the open-loop arrivals with ``connections`` requests in flight."""
    out: list[Row] = []
    started = resource.getrusage(resource.RUSAGE_SELF)

    async def main() -> None:
        if plan.get("schedule") is not None:
            await _open(index, plan, connections, out)
            return
        loops = []
        for c in range(connections):
            rng = random.Random(SEED * 1000 + index * 100 + c)
            port = plan["ports"][(index * connections + c) % len(plan["ports"])]
            loops.append(_closed(port, until, rng, plan, out))
        await asyncio.gather(*loops)

    asyncio.run(main())
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = used.ru_utime + used.ru_stime - started.ru_utime - started.ru_stime
    Path(result).write_text(json.dumps({"rows": out, "cpu_seconds": cpu}))
