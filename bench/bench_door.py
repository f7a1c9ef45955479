"""Benchmark: CPU per request of the API's door (rate limit in Redis, key check), in-process, not timed.

Run from the repository root (by hand; needs Debian's ``redis-server``)::

    .venv/bin/python -m bench.bench_door [--requests 20000] [--rounds 3]

Setup, not measured: a redis-server on a free loopback port, a migrated SQLite database in a temporary
folder with the bundled sample's products, one server key, and the app of ``create_app`` with its
rate limit in that Redis (a limit no request reaches). Measured in one thread with ``time.thread_time``
(this thread's CPU, system calls included; the neighbours' load moves it far less than wall time):

- the rate limit's Redis call alone (``HIT_SCRIPT``, one EVALSHA): through redis-py's client and pool
  as a registered script (the code before), with redis-py's pure-Python RESP3 parser and with hiredis's;
  and on the connection each thread keeps (``api.redis_hits``, the code now), with each parser. (The
  pure-Python parser rows still pack the command with hiredis when it is installed);
- the key check: the SHA-256 of the secret and its comparison (what every request paid before), and
  ``KeyCache.get`` now (a remembered secret);
- whole requests, ``GET /v1/bestsellers?days=30`` through the app's WSGI callable (the request id door,
  the fast path, the rate limit, the key, the cached list, the headers): with the rate limit's call as
  before (client, pool, pure-Python parser), as now, and with the in-process counter instead of Redis
  (what is left of the door without a network call: a floor, not an option with two web processes);
- whole writes, ``POST /v1/events`` with one view event of a customer (a new id each time: each call
  stores a row, in the SQLite file), through Flask's view (an app built with ``api.fast_path = false``
  on the same database) and through the fast path (the app as built): the same write, its statements
  and the store told, behind two doors (no model is trained here, so the store's own work after a
  write is left out of both).

Rounds alternate the variants; printed is each one's median over the rounds, in microseconds per call.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import machine_line, print_table

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "online_retail_sample.csv.gz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_us(call: Callable[[], Any], n: int) -> float:
    for _ in range(min(n // 10, 500)):  # warm: connections open, scripts loaded, lists kept
        call()
    started = time.thread_time()
    for _ in range(n):
        call()
    return 1e6 * (time.thread_time() - started) / n


def _app(workdir: str, redis_url: str) -> tuple[Any, Any, str]:
    import dataclasses

    from api import create_app
    from config import load_settings
    from domain import schema
    from domain.access import api_keys
    from domain.customers.imports import import_orders
    from domain.db import session_scope

    settings = load_settings(
        environ={},
        database={"url": f"sqlite:///{Path(workdir) / 'bench.db'}"},
        server={"instance_dir": str(Path(workdir) / "instance"), "secret_key": "bench"},
        model={"artifact_dir": str(Path(workdir) / "models")},
        api={"rate_limit": "1000000000/hour", "rate_limit_storage": redis_url},
    )
    schema.upgrade(settings.database.url)
    app = create_app(settings)
    ctx = app.extensions["giftrec"]
    with session_scope(ctx.sessions) as session:
        import_orders(session, str(SAMPLE), "online-retail", instance_dir=settings.server.instance_dir)
        _, key = api_keys.create_key(session, "server", name="bench_door")
    flask_only = create_app(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, fast_path=False))
    )
    return app, flask_only, key


def measure(redis_url: str, requests: int, rounds: int) -> None:
    import redis
    from redis.connection import _HiredisParser, _RESP3Parser
    from sqlalchemy import select

    from api.auth import HIT_SCRIPT, KeyRateLimit, SweptMemoryStorage
    from api.redis_hits import RedisScriptCounter
    from domain.access import api_keys
    from domain.models import Customer, Product

    with tempfile.TemporaryDirectory(prefix="bench_door_") as workdir:
        app, flask_only, key = _app(workdir, redis_url)
        ctx = app.extensions["giftrec"]
        limit: KeyRateLimit = ctx.services["rate_limit"]
        now_counter = limit._hit_script
        assert now_counter is not None, "the rate limit is not in Redis"

        def client(parser: Any) -> Any:
            return redis.Redis.from_url(redis_url, socket_timeout=5, parser_class=parser)

        # The code before: a script registered on limits' client, called through the client and its pool.
        scripts = {
            name: client(p).register_script(HIT_SCRIPT.encode())
            for name, p in (("python", _RESP3Parser), ("hiredis", _HiredisParser))
        }
        counters = {
            name: RedisScriptCounter(client(p).connection_pool, HIT_SCRIPT)
            for name, p in (("python", _RESP3Parser), ("hiredis", _HiredisParser))
        }
        counter_key = "bench-door-counter"

        def before(script: Any) -> Callable[[str, int], Any]:
            return lambda k, expiry: script([k], [expiry])

        secret = key
        keys = ctx.services["api_key_cache"]
        keys.get(secret)
        entry = keys._table[api_keys.key_prefix(secret)]  # the table's entry of the key

        environ_base = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/v1/bestsellers",
            "QUERY_STRING": "days=30",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "localhost",
            "HTTP_X_API_KEY": key,
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []

        def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(s)
            return None

        def request() -> None:
            body = app.wsgi_app(dict(environ_base), start_response)
            b"".join(body)
            close = getattr(body, "close", None)
            if close is not None:
                close()

        redis_storage, memory = limit.storage, SweptMemoryStorage()
        with ctx.sessions() as session:
            customer = session.scalar(select(Customer.external_id).order_by(Customer.id).limit(1))
            sku = session.scalar(select(Product.sku).order_by(Product.id).limit(1))
        written = itertools.count()

        def write(door: Any) -> Callable[[], None]:
            def run() -> None:
                event = {"id": f"bench-{next(written)}", "type": "view", "sku": sku, "customer_id": customer}
                payload = json.dumps({"events": [event]}).encode()
                environ = dict(
                    environ_base,
                    REQUEST_METHOD="POST",
                    PATH_INFO="/v1/events",
                    QUERY_STRING="",
                    CONTENT_TYPE="application/json",
                    CONTENT_LENGTH=str(len(payload)),
                )
                environ["wsgi.input"] = io.BytesIO(payload)
                body = door.wsgi_app(environ, start_response)
                b"".join(body)
                close = getattr(body, "close", None)
                if close is not None:
                    close()

            return run

        def whole(counter: Any) -> Callable[[], None]:
            def run() -> None:
                limit.storage, limit._hit_script = redis_storage, counter
                request()

            return run

        def in_memory() -> None:  # the floor: the same request with the in-process counter
            limit.storage = memory
            request()

        variants: dict[str, Callable[[], Any]] = {
            "Redis call: client + pool + Script, pure-Python parser (before)": lambda: scripts["python"](
                [counter_key], [3600]
            ),
            "Redis call: client + pool + Script, hiredis": lambda: scripts["hiredis"]([counter_key], [3600]),
            "Redis call: kept connection, pure-Python parser": lambda: counters["python"](counter_key, 3600),
            "Redis call: kept connection, hiredis (now)": lambda: counters["hiredis"](counter_key, 3600),
            "key check: SHA-256 + compare (before)": lambda: api_keys.check_secret(entry, secret),
            "key check: KeyCache.get, remembered (now)": lambda: keys.get(secret),
            "GET /v1/bestsellers, rate limit as before": whole(before(scripts["python"])),
            "GET /v1/bestsellers, rate limit now": whole(now_counter),
            "GET /v1/bestsellers, rate limit in the process (no Redis)": in_memory,
            "POST /v1/events (one view), through Flask's view": write(flask_only),
            "POST /v1/events (one view), through the fast path (now)": write(app),
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, call in variants.items():
                results[name].append(_cpu_us(call, requests))
        limit.storage, limit._hit_script = redis_storage, now_counter
        assert set(status) == {"200 OK"}, set(status)
        print(machine_line())
        print(f"{requests} calls per variant and round, {rounds} rounds; median CPU per call")
        print_table(
            ["variant", "us CPU/call", "rounds"],
            [
                (name, f"{statistics.median(v):.1f}", " ".join(f"{x:.1f}" for x in v))
                for name, v in results.items()
            ],
        )
        ctx.close()
        flask_only.extensions["giftrec"].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("needs Debian's redis-server")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench_door_redis_") as folder:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
        )
        try:
            import redis

            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(port=port, socket_connect_timeout=1).ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            measure(f"redis://127.0.0.1:{port}/0", args.requests, args.rounds)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
