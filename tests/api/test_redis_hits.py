"""The rate limit's Redis call on a connection per thread (api/redis_hits.py), with a real Redis."""

from __future__ import annotations

import gc
import os
import threading
import time

import redis
from prometheus_client import REGISTRY

from api.auth import HIT_SCRIPT
from api.redis_hits import RedisScriptCounter
from tests.api.test_keys import redis_limited


def _failures() -> float:
    return REGISTRY.get_sample_value("giftrec_rate_limit_storage_failures_total", {"limit": "api"}) or 0.0


def test_the_window_survives_a_script_flush_and_a_restart_between_requests(settings, sessions, redis_server):
    """The script is loaded again when Redis has lost it (NOSCRIPT), and a connection that a restarted
    Redis closed while no request ran is opened again within the same request (the client's retry):
    no request goes unlimited for either."""
    with redis_limited(settings, redis_server, "3/hour") as (client, headers, watcher):
        before = _failures()
        assert client.get("/v1/bestsellers", headers=headers).headers["X-RateLimit-Remaining"] == "2"
        watcher.script_flush()
        assert client.get("/v1/bestsellers", headers=headers).headers["X-RateLimit-Remaining"] == "1"
        redis_server.stop()
        redis_server.start()  # empty: the window starts again
        answer = client.get("/v1/bestsellers", headers=headers)
        assert answer.headers["X-RateLimit-Remaining"] == "2"
        assert _failures() == before


def test_each_thread_counts_on_its_own_connection_closed_when_the_thread_ends(redis_server):
    """Regression: the connections were taken from the storage's pool and kept there, so a server that
    starts a thread per request (Flask's development server, ``giftrec serve`` without gunicorn) would
    have left one open connection to Redis per request."""
    pool = redis.ConnectionPool.from_url(redis_server.url)
    counter = RedisScriptCounter(pool, HIT_SCRIPT)
    watcher = redis.Redis(port=redis_server.port)
    counts: list[int] = []
    connections: set[int] = set()
    together = threading.Barrier(4)

    def hit() -> None:
        for _ in range(50):
            counts.append(int(counter("window", 60)[0]))
        connections.add(id(counter._local.conn))
        # All four connections alive at once when their ids are taken: a thread that ended first would
        # free its connection, and a later one could be made at the same address (the same id).
        together.wait(timeout=30)

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 201)), "every hit counted once, one shared window"
    assert len(connections) == 4, "one connection per thread"
    gc.collect()
    deadline = time.monotonic() + 10
    while watcher.info("clients")["connected_clients"] > 1:  # the watcher's own
        assert time.monotonic() < deadline, "the ended threads' connections are still open"
        time.sleep(0.05)
    watcher.close()


def test_a_forked_child_never_uses_its_parents_connection(redis_server):
    """A worker forked from a process that already counted (gunicorn's preload) opens its own connection:
    two processes reading replies from one socket would take each other's answers."""
    pool = redis.ConnectionPool.from_url(redis_server.url)
    counter = RedisScriptCounter(pool, HIT_SCRIPT)
    assert int(counter("window", 60)[0]) == 1
    parents = counter._local.conn
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's clean-up
        try:
            fresh = getattr(counter._local, "conn", None) is None
            count = int(counter("window", 60)[0])
            mine = counter._local.conn is not parents
            os.write(write, f"{fresh} {count} {mine}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as answer:
        assert answer.read() == "True 2 True"
    assert int(counter("window", 60)[0]) == 3 and counter._local.conn is parents
