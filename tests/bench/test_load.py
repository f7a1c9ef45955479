"""The deployment benchmark's load generator: the open loop's send times and latency bookkeeping, on a virtual
clock; its HTTP/1.1 connections (one per request, or kept), against a real server on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import select
import selectors
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._load import (
    DROPPED,
    LATE_MS,
    MIX,
    ResponseError,
    Sent,
    Upstream,
    _draw,
    build,
    generator,
    open_loop,
    open_loop_summary,
    parse_mix,
    parse_response,
    poisson_schedule,
)


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


def test_a_mix_from_the_command_line_is_normalised_in_the_default_mixs_order() -> None:
    mix = parse_mix("health=1, recommendations=3,orders=0")
    assert mix == (("recommendations", 0.75), ("bare Flask /health/live", 0.25))
    given = parse_mix("recommendations=55,similar=15,bestsellers=10,events=6,orders=4,health=10")
    assert [k for k, _ in given] == [k for k, _ in MIX]
    assert [w for _, w in given] == pytest.approx([w for _, w in MIX])
    for bad, named in (("recs=1", "'recs=1'"), ("similar", "'similar'"), ("events=x", "not a number")):
        with pytest.raises(ValueError, match=named):
            parse_mix(bad)
    with pytest.raises(ValueError, match="add up to 0"):
        parse_mix("events=0")


def test_requests_are_drawn_from_the_plans_mix() -> None:
    plan = {"customers": ["c1"], "customer_cum": [1.0], "skus": ["s1"], "sku_cum": [1.0], "server": "k"}
    rng = random.Random(1)
    assert {_draw(rng, plan)[0] for _ in range(400)} == {k for k, _ in MIX}
    plan["mix"] = parse_mix("similar=1,health=1")
    drawn = [_draw(rng, plan)[0] for _ in range(400)]
    assert set(drawn) == {"similar", "bare Flask /health/live"}


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


# ------------------------------------------------------------------------------------- the connections
class _Server:
    """A real HTTP/1.1 server on a loopback port, in a thread with its own event loop (so that a test can
    hold the client's loop while the server acts). Each response's body is ``n`` and the request's number,
    from 1.

    `close_after` N: the Nth response on a connection is its last (with ``Connection: close`` when
    `say_close`, else the server just closes after it). `drop`: numbers of requests read and then
    answered by closing the connection. `split`: each response is written in four pieces, cut inside the
    status line, inside the blank line that ends the head and inside the body (or a chunk's size line),
    each after the test sets the matching `gates` event."""

    def __init__(
        self,
        close_after: int = 0,
        say_close: bool = True,
        drop: frozenset[int] = frozenset(),
        split: bool = False,
        chunked: bool = False,
    ) -> None:
        self.close_after, self.say_close, self.drop = close_after, say_close, drop
        self.chunked = chunked
        self.gates = [threading.Event() for _ in range(3 if split else 0)]
        self.requests: list[bytes] = []
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                number = len(self.requests)
                if number in self.drop:
                    break
                served += 1
                last = served == self.close_after or b"connection: close" in head.lower()
                await self._respond(writer, b"n%d" % number, last and self.say_close)
                if last:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, body: bytes, close: bool) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        if close:
            head += b"Connection: close\r\n"
        if self.chunked:  # the body in two chunks, then a trailer field
            half = len(body) // 2
            data = head + b"Transfer-Encoding: chunked\r\n\r\n"
            data += b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (
                half,
                body[:half],
                len(body) - half,
                body[half:],
            )
        else:
            data = head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        head_end = data.index(b"\r\n\r\n") + 4
        start = 0
        cuts = (7, head_end - 2, head_end + 1)[: len(self.gates)]
        for cut, gate in zip(cuts, self.gates, strict=True):
            writer.write(data[start:cut])
            await writer.drain()
            await asyncio.to_thread(gate.wait, 10)
            start = cut
        writer.write(data[start:])
        await writer.drain()

    def close_idle(self) -> None:
        """Close every connection, as gunicorn closes one idle past its keepalive; return when closed."""

        async def close() -> None:
            for writer in self._writers:
                writer.close()
            for writer in self._writers:
                try:
                    await writer.wait_closed()
                except ConnectionError:
                    pass

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def start(**kwargs: Any) -> _Server:
        servers.append(_Server(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


LOOPS = ["asyncio", "uvloop"]  # the load generators run on either (bench_deploy --loop)


def _run_client(loop: str, upstream: Upstream, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run `main` on a new event loop of that kind; `upstream`'s kept connections are closed after it."""

    async def run() -> Any:
        try:
            return await main()
        finally:
            upstream.close()
            await asyncio.sleep(0)  # the transports' close runs

    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(run())


def _get(n: int = 0, keep_alive: bool = True) -> bytes:
    close = b"" if keep_alive else b"Connection: close\r\n"
    return b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (n, close)


@pytest.mark.parametrize("loop", LOOPS)
def test_by_default_each_request_has_a_connection_of_its_own(serve: Any, loop: str) -> None:
    server = serve()
    upstream = Upstream(server.port)

    async def main() -> list[tuple[int, bytes]]:
        return [await upstream.fetch(_get(n, keep_alive=False)) for n in range(3)]

    assert _run_client(loop, upstream, main) == [(200, b"n1"), (200, b"n2"), (200, b"n3")]
    assert server.connections == 3
    assert upstream.stats() == {"connects": 3, "told_close": 0, "stale": 0, "failed": 0}


@pytest.mark.parametrize("loop", LOOPS)
def test_a_kept_connection_serves_request_after_request_and_is_replaced_when_the_server_says_close(
    serve: Any, loop: str
) -> None:
    server = serve(close_after=3)
    upstream = Upstream(server.port, keep_alive=True)

    async def main() -> list[tuple[int, bytes]]:
        return [await upstream.fetch(_get(n)) for n in range(7)]

    assert _run_client(loop, upstream, main) == [(200, b"n%d" % n) for n in range(1, 8)]
    assert server.connections == 3  # 3 + 3 + 1
    assert upstream.stats() == {"connects": 3, "told_close": 2, "stale": 0, "failed": 0}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("chunked", [False, True])
def test_a_response_split_across_reads_is_read_to_its_last_byte(serve: Any, loop: str, chunked: bool) -> None:
    server = serve(split=True, chunked=chunked)
    upstream = Upstream(server.port, keep_alive=True)

    async def main() -> list[tuple[int, bytes]]:
        answers = []
        for n in range(2):
            task = asyncio.create_task(upstream.fetch(_get(n)))
            for gate in server.gates:
                await asyncio.sleep(0.02)  # the client has had its chance to read what was sent so far
                assert not task.done()
                gate.set()
            answers.append(await task)
            for gate in server.gates:
                gate.clear()
        return answers

    assert _run_client(loop, upstream, main) == [(200, b"n1"), (200, b"n2")]
    assert upstream.stats()["connects"] == 1  # read by its framing, not by the end of the connection


@pytest.mark.parametrize("loop", LOOPS)
def test_a_kept_connection_the_server_closed_while_idle_is_replaced_and_the_request_sent_once(
    serve: Any, loop: str
) -> None:
    server = serve()
    upstream = Upstream(server.port, keep_alive=True)

    async def main() -> list[tuple[int, bytes]]:
        first = await upstream.fetch(_get(1))
        server.close_idle()
        # The close reaches this side's socket while its event loop is held here, so only a look at the
        # socket before the send can tell that the kept connection is gone.
        idle = upstream.idle[0]
        assert select.select([idle.sock], [], [], 10)[0] and not idle.closed
        return [first, await upstream.fetch(_get(2))]

    assert _run_client(loop, upstream, main) == [(200, b"n1"), (200, b"n2")]
    assert len(server.requests) == 2
    assert upstream.stats() == {"connects": 2, "told_close": 0, "stale": 1, "failed": 0}


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_whose_connection_closes_after_it_was_sent_is_an_error_and_not_sent_again(
    serve: Any, loop: str
) -> None:
    server = serve(drop=frozenset({2}), close_after=0)
    upstream = Upstream(server.port, keep_alive=True)

    async def main() -> list[tuple[int, bytes]]:
        return [await upstream.fetch(_get(n)) for n in range(3)]

    assert _run_client(loop, upstream, main) == [(200, b"n1"), (0, b""), (200, b"n3")]
    assert len(server.requests) == 3  # the failed one was read once, never again
    assert upstream.stats() == {"connects": 2, "told_close": 0, "stale": 0, "failed": 1}


def test_a_server_that_closes_without_saying_so_after_each_response_costs_reconnects_not_errors(
    serve: Any,
) -> None:
    server = serve(close_after=1, say_close=False)
    upstream = Upstream(server.port, keep_alive=True)

    async def main() -> list[int]:
        statuses = []
        for n in range(5):
            statuses.append((await upstream.fetch(_get(n)))[0])
            # as a closed loop between two requests: the loop runs, and the close is seen (or peeked)
            await asyncio.sleep(0.01)
        return statuses

    assert _run_client("asyncio", upstream, main) == [200] * 5
    assert upstream.stats()["failed"] == 0 and upstream.stats()["connects"] == 5


def test_requests_ask_the_server_to_close_only_without_keep_alive() -> None:
    import random

    plan = {
        "customers": ["17850"],
        "customer_cum": [1.0],
        "skus": ["85123A"],
        "sku_cum": [1.0],
        "server": "key",
    }
    for kind in ("recommendations", "order write", "bare Flask /health/live"):
        closing = build(kind, random.Random(1), plan)
        kept = build(kind, random.Random(1), {**plan, "keep_alive": True})
        head = closing.split(b"\r\n\r\n")[0]  # a write's body has a new random id each time
        assert b"\r\nConnection: close\r\n" in head + b"\r\n"
        assert kept.split(b"\r\n\r\n")[0] == head.replace(b"\r\nConnection: close", b"")


def test_responses_are_framed_by_length_chunks_or_the_end_of_the_connection() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_response(ok) == (200, b"hello", len(ok), False)
    assert parse_response(ok[:-1]) is None
    assert parse_response(ok + b"HTTP/1.1")[2] == len(ok)
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
    assert parse_response(chunked) == (200, b"hello", len(chunked), False)
    assert parse_response(chunked[:-2]) is None
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + ok
    assert parse_response(interim) == (200, b"hello", len(interim), False)
    no_content = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    assert parse_response(no_content) == (204, b"", len(no_content), True)
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert parse_response(old)[3] is True  # type: ignore[index]
    assert parse_response(old.replace(b"OK\r\n", b"OK\r\nConnection: keep-alive\r\n"))[3] is False  # type: ignore[index]
    until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    assert parse_response(until_close) is None
    assert parse_response(until_close, eof=True) == (200, b"all of it", len(until_close), True)
    with pytest.raises(ResponseError):
        parse_response(ok[:-1], eof=True)
    with pytest.raises(ResponseError):
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")


def _plan(ports: list[int], **more: Any) -> dict[str, Any]:
    return {
        "ports": ports,
        "customers": ["17850", "13047", "12583"],
        "customer_cum": [1.0, 1.5, 1.83],
        "skus": ["85123A", "71053"],
        "sku_cum": [1.0, 1.5],
        "server": "key",
        "generators": 1,
        "keep_alive": True,
        **more,
    }


@pytest.mark.parametrize("loop", LOOPS)
def test_a_generator_in_closed_loop_keeps_one_connection_per_slot(
    serve: Any, loop: str, tmp_path: Path
) -> None:
    servers = [serve(), serve()]
    plan = _plan([s.port for s in servers], schedule=None, uvloop=loop == "uvloop")
    if loop == "uvloop":
        pytest.importorskip("uvloop")

    generator(0, plan, 4, time.monotonic() + 1.0, str(tmp_path / "out.json"))

    result = json.loads((tmp_path / "out.json").read_text())
    assert {row[2] for row in result["rows"]} == {200}
    assert {row[1] for row in result["rows"]} == {servers[0].port, servers[1].port}
    assert result["connections"] == {"connects": 4, "told_close": 0, "stale": 0, "failed": 0}
    assert [s.connections for s in servers] == [2, 2]
    assert sum(len(s.requests) for s in servers) == len(result["rows"])
    assert result["cpu_seconds"] > 0


def test_a_generator_in_open_loop_sends_each_port_its_share_on_at_most_its_slots_connections(
    serve: Any, tmp_path: Path
) -> None:
    servers = [serve(), serve()]
    schedule = [i * 0.005 for i in range(60)]
    plan = _plan([s.port for s in servers], schedule=schedule, start=time.monotonic() + 0.05, duration=0.3)

    generator(0, plan, 3, 0.0, str(tmp_path / "out.json"))

    result = json.loads((tmp_path / "out.json").read_text())
    assert len(result["rows"]) == 60 and {row[2] for row in result["rows"]} == {200}
    assert [len(s.requests) for s in servers] == [30, 30]  # ports alternate, as before
    assert sum(s.connections for s in servers) == result["connections"]["connects"] <= 2 * 3
