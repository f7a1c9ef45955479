"""The API rate limit's one Redis call per request, on a redis-py connection each thread keeps.

redis-py's client runs a good deal of Python around every command: the pool's fork check and lock, a
``poll`` of the borrowed connection to see that it is clean, the connection-count and latency metrics
hooks, the retry wrapper and the response callbacks; a registered script adds its own call. Measured
in-process (docs/performance.md), that was most of the CPU of the rate limit's EVALSHA. This keeps what
the client does for correctness and drops the rest:

- the same ``Connection`` class: connect, authentication, protocol handshake, command packing and the
  reply parser (hiredis when installed), and its disconnect after any failed send or read;
- EVALSHA, and SCRIPT LOAD once when Redis answers NOSCRIPT (a restarted Redis), as a registered
  script does;
- a connection that Redis closed while it sat idle is replaced within the call, as the pool's check
  does (limits' client makes no retries). The pool finds that before it sends; this finds it when the
  call fails, so a connection lost after Redis ran the script but before its reply arrived counts that
  request's hit twice: one request more against the key's budget, once, when Redis goes away.

What it leaves out is the pool's sharing: each thread holds one connection, made with the storage
pool's settings, for as long as it lives (a web worker's threads are a fixed set), so no lock and no
check is needed per call; it is closed when its thread ends. A forked child forgets the parent's
connections (two processes must never share a socket).
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from typing import Any

from redis import exceptions

#: Every counter of this process: a forked child must not use its parent's sockets.
_COUNTERS: weakref.WeakSet[RedisScriptCounter] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for counter in list(_COUNTERS):
        counter.forget()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


class _Closer:
    """A thread's slot marker: freed with the thread's slot (nothing else refers to it)."""

    __slots__ = ("__weakref__",)


class RedisScriptCounter:
    """Run one Lua ``script`` (one key, one argument) with EVALSHA on the calling thread's connection.

    ``pool`` is a redis-py ``ConnectionPool`` (the rate-limit storage's): each thread makes one
    connection with its class and settings, once, and keeps it.
    """

    def __init__(self, pool: Any, script: str) -> None:
        self.pool = pool
        self.script = script.encode()
        self.sha = hashlib.sha1(self.script).hexdigest()
        self._local = threading.local()
        _COUNTERS.add(self)

    def forget(self) -> None:
        """Drop every thread's connection without closing it (after a fork: the parent's sockets)."""
        self._local = threading.local()

    def __call__(self, key: str, arg: int) -> Any:
        """The script's reply for ``key`` and ``arg``; raises redis-py's errors as the client would."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Made with the pool's settings but not lent by it: when the thread ends, its connection is
            # dropped and closed (a server that starts a thread per request must not leave a socket each).
            conn = self._local.conn = self.pool.connection_class(**self.pool.connection_kwargs)
            # Closed explicitly when the thread's slot is dropped: the connection itself may sit in a
            # reference cycle, freed later by the collector, which closes its socket without a word.
            self._local.closer = closer = _Closer()
            weakref.finalize(closer, conn.disconnect)
        kept = conn.is_connected
        try:
            return self._call(conn, key, arg)
        except exceptions.ConnectionError:
            # redis-py disconnected it. A kept connection may have been closed by Redis while it sat idle (a
            # restart, Redis's idle timeout): the pool notices that before it lends a connection, with a
            # poll per command; this notices it here, and tries once more on a new connection. A new
            # connection that fails is Redis down: the error goes to the caller, one per request.
            if not kept:
                raise
            return self._call(conn, key, arg)

    def _call(self, conn: Any, key: str, arg: int) -> Any:
        conn.send_command("EVALSHA", self.sha, 1, key, arg)
        try:
            return conn.read_response()
        except exceptions.NoScriptError:  # a new or restarted Redis: load the script once, then again
            conn.send_command("SCRIPT", "LOAD", self.script)
            conn.read_response()
            conn.send_command("EVALSHA", self.sha, 1, key, arg)
            return conn.read_response()
