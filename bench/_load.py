"""The deployment benchmark's load: the storefront's request mix, sent closed loop or open loop.

Closed loop (the default): each connection sends its next request as soon as the last one returned, so
the server's speed sets the rate. Open loop: visitors arrive at a rate whatever the server does. Send
times are drawn in advance (a seeded Poisson process), at most ``slots`` requests are in flight, and each
request's latency is counted from its *scheduled* time: a request that waited for a free connection, or
for a busy load generator, counts that wait (no coordinated omission).

The requests go out on an asyncio Protocol (:class:`Connection`), through an :class:`Upstream` per port: a
new connection for each request, or kept HTTP/1.1 connections, as a load balancer keeps its upstream ones.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import random
import resource
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
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
#: Short names of MIX's kinds, for a mix given on the command line (``--mix``).
MIX_NAMES = {
    "recommendations": "recommendations",
    "similar": "similar",
    "bestsellers": "bestsellers",
    "events": "event write",
    "orders": "order write",
    "health": "bare Flask /health/live",
}


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """A mix from ``name=share,...`` (names of :data:`MIX_NAMES`; shares are relative, the kinds left out
    are not sent), in MIX's order. Raises ValueError naming what is wrong."""
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in MIX_NAMES:
            raise ValueError(f"{part.strip()!r}: expected NAME=SHARE with NAME one of {', '.join(MIX_NAMES)}")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"{part.strip()!r}: the share is not a number") from None
        if not share >= 0:
            raise ValueError(f"{part.strip()!r}: the share must be at least 0")
        shares[MIX_NAMES[name]] = share
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("the shares add up to 0")
    return tuple((kind, shares[kind] / total) for kind, _ in MIX if shares.get(kind, 0) > 0)


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
class ResponseError(ConnectionError):
    """The connection ended, or sent bytes that are not an HTTP/1.1 response, before the answer was whole."""


def parse_response(buf: bytes | bytearray, eof: bool = False) -> tuple[int, bytes, int, bool] | None:
    """The first whole response in `buf`: (status, body, bytes it took, whether the server closes the
    connection after it), or None while it is incomplete.

    The body is framed by Content-Length, by chunks (``Transfer-Encoding: chunked``), or, with neither, by
    the end of the connection (`eof`: the server has closed). Interim 1xx responses are skipped; 204 and
    304 have no body. Raises :class:`ResponseError` on bytes that are no response, or on `eof` before the
    response is whole.
    """
    start = 0
    while True:
        head_end = buf.find(b"\r\n\r\n", start)
        if head_end < 0:
            break
        lines = bytes(buf[start:head_end]).split(b"\r\n")
        first = lines[0].split(b" ", 2)
        if len(first) < 2 or not first[0].startswith(b"HTTP/1.") or not first[1].isdigit():
            raise ResponseError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(first[1])
        length: int | None = None
        chunked = False
        close = first[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                close = b"close" in tokens or (close and b"keep-alive" not in tokens)
        body_start = head_end + 4
        if 100 <= status < 200:  # interim (100 Continue): the response follows
            start = body_start
            continue
        if status in (204, 304):
            return status, b"", body_start, close
        if chunked:
            return _chunked(buf, body_start, status, close, eof)
        if length is not None:
            if len(buf) >= body_start + length:
                return status, bytes(buf[body_start : body_start + length]), body_start + length, close
            break
        if eof:  # framed by the end of the connection
            return status, bytes(buf[body_start:]), len(buf), True
        return None
    if eof:
        raise ResponseError(f"the connection ended {len(buf)} bytes into the response")
    return None


def _chunked(
    buf: bytes | bytearray, pos: int, status: int, close: bool, eof: bool
) -> tuple[int, bytes, int, bool] | None:
    body = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            break
        size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
        if size == 0:  # the last chunk, then trailer fields up to an empty line
            if buf[line_end + 2 : line_end + 4] == b"\r\n":
                return status, bytes(body), line_end + 4, close
            trailers_end = buf.find(b"\r\n\r\n", line_end + 2)
            if trailers_end < 0:
                break
            return status, bytes(body), trailers_end + 4, close
        if len(buf) < line_end + 2 + size + 2:
            break
        body += buf[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2
    if eof:
        raise ResponseError("the connection ended inside a chunked body")
    return None


class Connection(asyncio.Protocol):
    """One HTTP/1.1 client connection: one request at a time, its response read to the last byte (framed by
    :func:`parse_response`); kept for the next request unless either side closes it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes no request asked for: never reuse
            self.close()
            return
        self._buf += data
        self._settle(eof=False)

    def eof_received(self) -> bool:
        self.closed = True
        self._settle(eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settle(eof=True)

    def _settle(self, eof: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = parse_response(self._buf, eof)
        except (ResponseError, ValueError) as exc:
            self.close()
            waiter.set_exception(ResponseError(str(exc)))
            return
        if answer is not None:
            status, body, used, close = answer
            if used != len(self._buf):  # more than one response: nothing asked for the rest
                close = True
            self._buf.clear()
            waiter.set_result((status, body, close))

    def reusable(self) -> bool:
        """Open at both ends as far as this side can tell without sending: no close seen by the event loop,
        and none (nor any stray byte) waiting in the socket, which a peek finds before the loop does."""
        if self.closed:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # b"": the server has closed; bytes: a stray answer

    async def exchange(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, whether the connection is closed after it)."""
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(raw)
            status, body, close = await self._waiter
        finally:
            self._waiter = None
        if close:
            self.close()
        return status, body, self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, host: str = "127.0.0.1") -> Connection:
    """A new connection to `host`:`port`, on a socket of our own (:meth:`Connection.reusable` peeks)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (host, port))
        conn = Connection(sock)
        await loop.create_connection(lambda: conn, sock=sock)
    except BaseException:
        sock.close()
        raise
    return conn


@dataclass
class Upstream:
    """The requests to one port, as a load balancer sends them: a new connection for each request
    (``Connection: close`` in the request), or, with `keep_alive`, kept connections reused, the last used
    first (an nginx ``upstream`` with ``keepalive``).

    A kept connection the server closed while it was idle (its keep-alive timeout) is found before the
    send and replaced: nothing was sent on it, so the request goes once on a new connection. A request
    whose connection fails after it was sent is not sent again (a write may have been done): its status
    is 0, an error, as is a failed connect."""

    port: int
    keep_alive: bool = False
    host: str = "127.0.0.1"
    idle: list[Connection] = field(default_factory=list)
    #: connections opened; the kept ones closed by the server's ``Connection: close``, found closed (or
    #: with stray bytes) before a send, and requests failed (their connection is dropped)
    connects: int = 0
    told_close: int = 0
    stale: int = 0
    failed: int = 0

    async def fetch(self, raw: bytes) -> tuple[int, bytes]:
        """(status, body) of one request; status 0 when the connection failed."""
        conn = None
        while self.idle and conn is None:
            conn = self.idle.pop()
            if not conn.reusable():
                conn.close()
                conn = None
                self.stale += 1
        try:
            if conn is None:
                self.connects += 1
                conn = await connect(self.port, self.host)
            status, body, closed = await conn.exchange(raw)
        except OSError:
            self.failed += 1
            if conn is not None:
                conn.close()
            return 0, b""
        if not self.keep_alive:
            conn.close()
        elif closed:
            self.told_close += 1
        else:
            self.idle.append(conn)
        return status, body

    def stats(self) -> dict[str, int]:
        return {
            "connects": self.connects,
            "told_close": self.told_close,
            "stale": self.stale,
            "failed": self.failed,
        }

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


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
    headers = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if not plan.get("keep_alive"):
        headers.append("Connection: close")
    if key:
        headers.append(f"X-Api-Key: {key}")
    if body:
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


@functools.lru_cache(maxsize=4)
def _mix_tables(mix: tuple[tuple[str, float], ...]) -> tuple[list[str], list[float]]:
    return [k for k, _ in mix], list(accumulate(w for _, w in mix))


def _draw(rng: random.Random, plan: dict[str, Any]) -> tuple[str, bytes, str]:
    """A request of the plan's ``mix`` (default :data:`MIX`)."""
    kinds, cum = _mix_tables(plan.get("mix") or MIX)
    kind = rng.choices(kinds, cum_weights=cum)[0]
    raw = build(kind, rng, plan)
    who = raw.split(b" ", 2)[1].decode() if kind == "recommendations" else ""
    return kind, raw, who


async def _closed(
    upstream: Upstream, until: float, rng: random.Random, plan: dict[str, Any], out: list[Row]
) -> None:
    port = upstream.port
    while time.monotonic() < until:
        kind, raw, who = _draw(rng, plan)
        started = time.monotonic()
        status = (await upstream.fetch(raw))[0]
        out.append((kind, port, status, (time.monotonic() - started) * 1000.0, started, who, 0.0, False))


async def _open(
    index: int, plan: dict[str, Any], slots: int, out: list[Row], upstreams: list[Upstream]
) -> None:
    """This generator's share of the schedule: every ``generators``-th arrival, ports alternating, each
    port's requests through its `upstreams` entry (with keep-alive, a pool of kept connections that any
    free slot uses: at most `slots` requests in flight, so at most that many connections)."""
    rng = random.Random(SEED * 1000 + index)
    start = plan["start"]
    mine = plan["schedule"][index :: plan["generators"]]
    drawn = [(*_draw(rng, plan), upstreams[k % len(upstreams)]) for k in range(len(mine))]
    deadline = start + plan["duration"] + DRAIN_SECONDS

    async def send(i: int) -> int:
        return (await drawn[i][3].fetch(drawn[i][1]))[0]

    for s in await open_loop([start + t for t in mine], slots, send, deadline=deadline):
        kind, _, who, upstream = drawn[s.index]
        latency, wait = s.latency_ms, s.wait_ms
        if latency is None or wait is None:
            out.append((kind, upstream.port, DROPPED, 0.0, s.scheduled, who, 0.0, s.queued))
        else:
            out.append((kind, upstream.port, s.result, latency, s.scheduled, who, wait, s.queued))


def connection_summary(stats: Sequence[dict[str, int]]) -> dict[str, int]:
    """The connections' counts of several :class:`Upstream` (or generators) added up."""
    total = {"connects": 0, "told_close": 0, "stale": 0, "failed": 0}
    for one in stats:
        for name in total:
            total[name] += one[name]
    return total


def generator(index: int, plan: dict[str, Any], connections: int, until: float, result: str) -> None:
    """One load-generating process: ``connections`` closed loops bound to the ports round-robin, each with
    its own connection(s), or, with ``plan["schedule"]``, its share of the open-loop arrivals with
    ``connections`` requests in flight. ``plan["keep_alive"]`` keeps the connections (else one per
    request); ``plan["uvloop"]`` runs the event loop of uvloop."""
    out: list[Row] = []
    upstreams: list[Upstream] = []
    # No garbage collection while it measures: a full collection walks every object this process
    # inherited at the fork and the rows recorded so far, and pauses every connection of its event loop
    # meanwhile, tens of milliseconds that the requests answered in that pause counted as their latency.
    # Nothing it makes in the run is cyclic garbage that only the collector frees.
    gc.freeze()
    gc.disable()
    started = resource.getrusage(resource.RUSAGE_SELF)
    keep = bool(plan.get("keep_alive"))

    async def main() -> None:
        if plan.get("schedule") is not None:
            upstreams.extend(Upstream(port, keep) for port in plan["ports"])
            await _open(index, plan, connections, out, upstreams)
        else:
            loops = []
            for c in range(connections):
                rng = random.Random(SEED * 1000 + index * 100 + c)
                port = plan["ports"][(index * connections + c) % len(plan["ports"])]
                upstreams.append(Upstream(port, keep))
                loops.append(_closed(upstreams[-1], until, rng, plan, out))
            await asyncio.gather(*loops)
        for upstream in upstreams:
            upstream.close()

    if plan.get("uvloop"):
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    used = resource.getrusage(resource.RUSAGE_SELF)
    gc.enable()
    cpu = used.ru_utime + used.ru_stime - started.ru_utime - started.ru_stime
    stats = connection_summary([u.stats() for u in upstreams])
    Path(result).write_text(json.dumps({"rows": out, "cpu_seconds": cpu, "connections": stats}))
