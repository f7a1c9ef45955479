"""A real Redis server of one test (Debian's redis-server) on a loopback port, nothing saved to disk; the
test may stop it and start it again on the same port (an outage and its end)."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, folder: Path) -> None:
        found = shutil.which("redis-server")
        assert found, "redis-server is not installed (.ci/run installs it)"
        self.binary, self.folder, self.port = found, folder, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.proc = subprocess.Popen(
            [*command, "--appendonly", "no"], cwd=self.folder, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self.pings():
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def pings(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def app_sharing(settings: Any, redis: RedisServer) -> Any:
    """The web app of ``settings`` with its rate-limit and sign-in counters in ``redis``."""
    from api import create_app

    api = dataclasses.replace(settings.api, rate_limit_storage=redis.url)
    return create_app(dataclasses.replace(settings, api=api))
