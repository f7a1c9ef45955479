"""Real web processes for the tests that need several: gunicorn on loopback ports, HTTP without a client
library, and polling with a deadline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_process(settings: Any, port: int, **env: str) -> subprocess.Popen[bytes]:
    """One gunicorn web process on ``port``, sharing nothing with another but what ``settings`` and
    ``env`` (``GIFTREC_*`` variables) name: the database, and whatever else a test adds."""
    environ = dict(
        os.environ,
        GIFTREC_DATABASE_URL=settings.database.url,
        GIFTREC_SERVER_INSTANCE_DIR=settings.server.instance_dir,
        GIFTREC_SERVER_SECRET_KEY=settings.server.secret_key or "test",
        GIFTREC_MODEL_ARTIFACT_DIR=settings.model.artifact_dir,
    )
    environ.update(env)
    gunicorn = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    return subprocess.Popen([*gunicorn, "api.wsgi:app"], env=environ, stderr=subprocess.DEVNULL)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL whatever has not exited after 30 s: how fast gunicorn's graceful stop runs on
    a loaded machine is no test's business (it took over 10 s at load 20)."""
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=30)


def status(url: str, headers: dict[str, str], method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def until(check: Callable[[], Any], seconds: float) -> float:
    """Seconds until ``check()`` is true; AssertionError after ``seconds``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.1)
    return time.monotonic() - started
