"""API-key authentication, scopes, per-key origins (CORS) and per-key rate limits for the /v1 blueprints."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, request
from limits import RateLimitItem, parse
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, RedisStorage, Storage, storage_from_string

from api.errors import problem
from api.redis_hits import RedisScriptCounter
from config import ApiSettings, ConfigError
from domain.access import api_keys, identity
from domain.access.api_keys import KeyInfo
from domain.metrics import RATE_LIMIT_STORAGE_FAILURES
from domain.models._types import utcnow

if TYPE_CHECKING:
    from api.context import AppContext

log = logging.getLogger(__name__)

#: Verified keys are remembered this long, so the read path runs no SQL; a revoked key stops working
#: within this many seconds in every worker.
KEY_CACHE_SECONDS = 10.0
_CACHE_MAX = 10_000

#: What each scope may call; ``admin`` may call everything.
SCOPES = ("widget", "server", "email", "admin")

SECURITY: list[str | dict[str, list[Any]]] = [{"ApiKey": []}, {"Bearer": []}]
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
}
#: What the guard leaves in the request's WSGI environ for the rest of the request: itself, the accepted key
#: and the key's rate-limit window ((count, window end), or None when the counter store failed). Read from
#: the environ rather than through Flask's context proxies (``g``, ``current_app``): each proxy read costs
#: about as many CPU instructions as a dozen dict lookups, and the API's hot path made ten of them per
#: request.
ENV_GUARD = "giftrec.guard"
ENV_KEY = "giftrec.api_key"
#: The key the presented secret opens (None: no secret, or one that opens nothing), verified once.
ENV_VERIFIED = "giftrec.verified_key"
ENV_WINDOW = "giftrec.rate_limit"

ALLOWED_HEADERS = "Authorization, X-Api-Key, Content-Type, If-None-Match, X-Customer-Signature"
EXPOSED_HEADERS = "ETag, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage without its expiry timer thread.

    ``MemoryStorage`` starts a new ``threading.Timer`` whenever the previous one (10 ms) has ended, so
    under load every request pays for thread starts: measured here, about a third of the time of a
    cached ``/v1/bestsellers`` request. Fixed windows already expire lazily when read; stale keys are
    swept inline at most once a minute instead.
    """

    STORAGE_SCHEME = ["giftrec-memory"]
    SWEEP_SECONDS = 60.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    def hit(self, key: str, expiry: float) -> tuple[int, float]:
        """Count one request in ``key``'s fixed window: (count, window end in epoch seconds).

        What ``incr`` then ``get_expiry`` return, in one call: limits wraps each public storage method
        for its error handling (twice on a subclass such as this one), and ``incr`` calls ``get``, so
        the two calls were six wrapper calls per request. The window's rules are ``incr``'s: an expired
        window is dropped, and the first hit of a new one sets its end.
        """
        now = time.time()
        if self.expirations.get(key, 0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)
        self._MemoryStorage__schedule_expiry()
        with self.locks[key]:
            count = self.storage[key] = self.storage[key] + 1
            if count == 1:
                self.expirations[key] = now + expiry
        return count, self.expirations.get(key, now)

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - overrides the private hook
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


#: limits' fixed window in one Redis round trip: count the hit (the first one of a window sets its
#: expiry, as limits' own ``incr`` script does) and return the count with the window's time to live, which
#: limits reads with a second call (``get_expiry``).
HIT_SCRIPT = """
local count = redis.call("incrby", KEYS[1], 1)
if count == 1 then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {count, redis.call("ttl", KEYS[1])}
"""


def _storage_uri(uri: str) -> str:
    return "giftrec-memory://" if uri.rstrip("/") in ("memory:", "memory://") else uri


def open_storage(uri: str, timeout: float = ApiSettings.rate_limit_storage_timeout) -> Storage:
    """limits' storage for ``uri`` (``api.rate_limit_storage``). A Redis client gives up after ``timeout``
    seconds, to connect and then for each answer (``api.rate_limit_storage_timeout``): without it, a Redis
    that accepts connections but never answers held every limited request, and the readiness probe,
    for good. The callers treat the timeout as any other storage failure."""
    options: dict[str, float] = {}
    if urlsplit(uri).scheme.startswith(("redis", "valkey")):
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        storage = storage_from_string(uri, **options)
    except ConfigurationError as exc:  # unknown scheme, or its client library is not installed
        raise ConfigError("api.rate_limit_storage", str(exc)) from None
    if not isinstance(storage, Storage):
        raise ConfigError("api.rate_limit_storage", f"not a synchronous storage: {uri!r}")
    return storage


class KeyCache:
    """Every live key of the database in memory, by prefix: verifying a presented secret costs a hash and
    a dict lookup (the hash only the first time while the table is kept), never a query.

    The table is read again every ``ttl`` seconds, so a revoked key stops working within that time in every
    worker; and at most once every ``min_reload`` seconds when a well-formed secret names a prefix the table
    does not hold (a key created a moment ago by another process). Made-up secrets, however many, therefore
    cost no query beyond that. ``last_used_at`` of the keys used since the last read is written at the
    next read, in one statement.
    """

    def __init__(
        self,
        sessions: Callable[[], Any],
        ttl: float = KEY_CACHE_SECONDS,
        min_reload: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions, self.ttl, self.min_reload, self.clock = sessions, ttl, min_reload, clock
        self._table: dict[str, api_keys.KeyEntry] | None = None
        self._read_at = -math.inf
        self._used: set[int] = set()
        # secret -> the table's entry it was verified against (secrets that opened a key, so at most one
        # per live key): the same secret against the same entry object needs no hash again. A re-read
        # makes new entries, so a revoked (or changed) key is checked afresh and refused exactly as
        # without this memo; the identity check also holds when threads race a re-read. A lookup costs
        # a dict probe on the whole secret: a miss tells nothing about any key's hash.
        self._opened: dict[str, api_keys.KeyEntry] = {}
        self._lock = threading.Lock()

    def get(self, secret: str) -> KeyInfo | None:
        prefix = api_keys.key_prefix(secret)
        if prefix is None:
            return None
        now = self.clock()
        table = self._table
        if table is None or now >= self._read_at + self.ttl:
            table = self._read(now)
        entry = table.get(prefix)
        if entry is None and now >= self._read_at + self.min_reload:
            entry = self._read(now).get(prefix)
        if entry is not None and self._opened.get(secret) is entry:
            info: KeyInfo | None = entry.info
        else:
            info = api_keys.check_secret(entry, secret)
            if info is not None and entry is not None:
                if len(self._opened) >= _CACHE_MAX:
                    self._opened.clear()
                self._opened[secret] = entry
        if info is not None and info.id not in self._used:
            self._used.add(info.id)
        return info

    def _read(self, now: float) -> dict[str, api_keys.KeyEntry]:
        with self._lock:
            if self._table is not None and self._read_at >= now:  # another thread just read it
                return self._table
            used, self._used = self._used, set()
            with self.sessions() as session:
                api_keys.mark_used(session, sorted(used), utcnow())
                table = api_keys.key_table(session)
                session.commit()
            self._table, self._read_at, self._opened = table, self.clock(), {}
            return table

    def clear(self) -> None:
        """Forget the table: the next request reads it again (tests; a revocation in this process)."""
        with self._lock:
            self._table, self._opened = None, {}


# Headers are read from the WSGI environ: werkzeug's ``request.headers.get`` raises and catches an
# exception for each absent header, several times a request on the API's hot path.
def presented_key(environ: dict[str, Any]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-Api-Key`` (of a WSGI environ)."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return environ.get("HTTP_X_API_KEY", "").strip() or None


def request_origin(environ: dict[str, Any]) -> str | None:
    """The browser origin of a request: ``Origin``, else the origin of ``Referer`` (same-origin GETs)."""
    origin = environ.get("HTTP_ORIGIN")
    if origin and origin != "null":
        return origin
    referer = environ.get("HTTP_REFERER")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return None


def _origin_allowed(key: KeyInfo, origin: str | None) -> bool:
    if origin is None:
        return False
    try:
        normalized = api_keys.normalize_origin(origin)
    except Exception:  # noqa: BLE001 - a malformed Origin is simply not allowed
        return False
    return normalized in key.allowed_origins


def _unauthorized(detail: str) -> Response:
    return problem(
        401,
        "Unauthorized",
        detail,
        [{"field": "Authorization", "message": detail}],
        {"WWW-Authenticate": 'Bearer realm="giftrec"'},
    )


def guard_of(environ: dict[str, Any]) -> Guard:
    """The guard of the request's blueprint (see :func:`protect`)."""
    guard: Guard | None = environ.get(ENV_GUARD)
    if guard is None:
        raise RuntimeError("an API key is checked only on a blueprint given to api.auth.protect()")
    return guard


def verified_key(environ: dict[str, Any]) -> KeyInfo | None:
    """The key the request's secret opens, or None; verified once per request (the rate limit asks first)."""
    if ENV_VERIFIED in environ:
        found: KeyInfo | None = environ[ENV_VERIFIED]
        return found
    secret = presented_key(environ)
    key = guard_of(environ).keys.get(secret) if secret is not None else None
    environ[ENV_VERIFIED] = key
    return key


def authenticate(environ: dict[str, Any], *scopes: str) -> Response | None:
    """Check the request's key against ``scopes``; returns an error response, or None and keeps the key
    for :func:`current_key`."""
    if presented_key(environ) is None:
        return _unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key'")
    key = verified_key(environ)
    if key is None:
        return _unauthorized("the API key is unknown or revoked")
    if key.scope != "admin" and key.scope not in scopes:
        detail = f"a {key.scope} key cannot call this endpoint; it needs a {' or '.join(scopes)} key"
        return problem(403, "Forbidden", detail, [{"field": "Authorization", "message": detail}])
    if key.scope == "widget" and not _origin_allowed(key, request_origin(environ)):
        detail = "this widget key is not allowed from this origin (see `giftrec keys create --origin`)"
        return problem(403, "Forbidden", detail, [{"field": "Origin", "message": detail}])
    environ[ENV_KEY] = key
    return None


#: The signed identity, as a WSGI environ key (header) and as a query parameter (for a plain link or <img>).
ENV_SIGNATURE = "HTTP_" + identity.HEADER.upper().replace("-", "_")
SIGNATURE_PARAM = "customer_signature"


def presented_signature(environ: dict[str, Any]) -> str | None:
    """The customer signature of a request: the header, else the ``customer_signature`` query parameter."""
    found = environ.get(ENV_SIGNATURE)
    if found:
        return str(found)
    query = environ.get("QUERY_STRING", "")
    if SIGNATURE_PARAM in query:
        for name, _, value in (part.partition("=") for part in query.split("&")):
            if name == SIGNATURE_PARAM:
                return value or None
    return None


def check_customer(environ: dict[str, Any], customer_id: str) -> Response | None:
    """A personal request (a customer's picks, events in their name) by the accepted key: a widget key needs
    the shop's signature of that very customer (:mod:`domain.access.identity`); server and admin keys are
    the shop's own backend. Returns the 401/403 problem, or None."""
    key: KeyInfo = environ[ENV_KEY]
    if key.scope != "widget":
        return None
    try:
        identity.verify_customer(
            guard_of(environ).identity_secret(key.prefix),
            customer_id,
            presented_signature(environ),
            time.time(),
        )
    except identity.IdentityError as exc:
        title = "Unauthorized" if exc.status == 401 else "Forbidden"
        return problem(exc.status, title, exc.message, [{"field": exc.field, "message": exc.message}])
    return None


def require(*scopes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """View decorator: the key must have one of ``scopes`` (admin keys pass). Put it above ``@bp.input``
    so that a request without a valid key gets 401 before its body is looked at. The view's blueprint
    must be given to :func:`protect` (else every call is a RuntimeError: no rate limit, no CORS)."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {unknown}")

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            error = authenticate(request.environ, *scopes)
            if error is not None:
                return error
            return view(*args, **kwargs)

        wrapper.giftrec_scopes = scopes  # type: ignore[attr-defined]  # who may call it (tests/api)
        return wrapper

    return decorator


def current_key() -> KeyInfo:
    """The key that :func:`require` accepted for this request."""
    key: KeyInfo = request.environ[ENV_KEY]
    return key


def actor() -> str:
    key: KeyInfo | None = request.environ.get(ENV_KEY)
    return f"key:{key.prefix}" if key is not None else "anonymous"


def app_context(environ: dict[str, Any]) -> AppContext:
    """The app's :class:`api.AppContext`, for a view behind :func:`require` (no ``current_app`` read)."""
    return guard_of(environ).context


class KeyRateLimit:
    """``api.rate_limit`` per verified API key (per client address without a valid key), on `limits`'
    fixed window.

    `limits` is the engine under Flask-Limiter, with the same limit strings and storage URIs (memory,
    redis, memcached...). Its storage is called here directly, once per request of the protected
    blueprints: measured in-process, Flask-Limiter's own per-request bookkeeping (resolving limits,
    exemption scopes, the window again for the headers) cost about 0.5 ms of a 2 ms recommendations
    request, and its app-wide ``before_request`` about a fifth of every other request, limited or not.

    The response carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (epoch seconds); a request
    over the limit gets a 429 problem with ``Retry-After`` (seconds). If the storage fails (a remote
    counter store is down) requests are let through and the failure is logged: the limit protects the
    service, it must not take it down.
    """

    NAMESPACE = "giftrec-api"

    def __init__(
        self, limit: str, storage_uri: str, timeout: float = ApiSettings.rate_limit_storage_timeout
    ) -> None:
        self.item: RateLimitItem = parse(limit)
        self.storage = open_storage(_storage_uri(storage_uri), timeout)
        self._scheme = urlsplit(storage_uri).scheme or storage_uri
        self._expiry = self.item.get_expiry()
        self._failing = False
        self._limit = str(self.item.amount)
        self._counters: dict[str, str] = {}  # who -> the storage key of their window (bounded below)
        self._hit_script: RedisScriptCounter | None = None
        if isinstance(self.storage, RedisStorage):
            client: Any = self.storage.get_connection()
            self._hit_script = RedisScriptCounter(client.connection_pool, HIT_SCRIPT)

    def _counter(self, environ: dict[str, Any]) -> str:
        # Counted per key only once the secret is verified: made-up secrets under a real key's prefix are
        # counted against the client's address, never against that key.
        key = verified_key(environ) if ENV_GUARD in environ else None
        who = f"key:{key.prefix}" if key is not None else f"ip:{environ.get('REMOTE_ADDR') or 'unknown'}"
        found = self._counters.get(who)
        if found is None:
            if len(self._counters) >= _CACHE_MAX:
                self._counters.clear()
            found = self._counters[who] = self.item.key_for(self.NAMESPACE, who)
        return found

    def check(self, environ: dict[str, Any]) -> Response | None:
        """Count the request; a 429 problem over the limit, else None. The key's window is left in the
        environ for :meth:`headers`. A request is counted once, whichever door asks first: the fast path
        (:mod:`api.fastpath`) may count a request, then hand it on to Flask, whose guard asks again."""
        if ENV_WINDOW in environ:
            window = environ[ENV_WINDOW]
            if window is None:  # the storage failed on the first ask
                return None
            count, reset = window
        else:
            key = self._counter(environ)
            try:
                # limits' fixed window (FixedWindowRateLimiter.hit + get_window_stats): two storage calls,
                # or one for the in-process storage and for Redis (HIT_SCRIPT)
                storage = self.storage
                if isinstance(storage, SweptMemoryStorage):
                    count, reset = storage.hit(key, self._expiry)
                elif self._hit_script is not None:
                    assert isinstance(storage, RedisStorage)
                    count, ttl = self._hit_script(storage.prefixed_key(key), self._expiry)
                    count, reset = int(count), max(int(ttl), 0) + time.time()  # as limits' get_expiry
                else:
                    count = storage.incr(key, self._expiry)
                    reset = storage.get_expiry(key)
            except Exception:  # noqa: BLE001 - a counter store outage must not stop the API
                RATE_LIMIT_STORAGE_FAILURES.labels("api").inc()
                if not self._failing:
                    log.exception("rate-limit storage failed; requests are not limited until it recovers")
                self._failing = True
                environ[ENV_WINDOW] = None
                return None
            self._failing = False
            environ[ENV_WINDOW] = (count, reset)
        if count <= self.item.amount:
            return None
        retry = max(1, math.ceil(reset - time.time()))
        detail = f"this key may make {self.item}; retry in {retry} s"
        return problem(
            429,
            "Too Many Requests",
            detail,
            [{"field": "Authorization", "message": detail}],
            {"Retry-After": str(retry)},
        )

    def storage_status(self) -> dict[str, object]:
        """The readiness check of the counter store (``/health/ready``): its URI's scheme, never its
        address or password. Failing is not blocking: the process still serves (see :meth:`check`)."""
        if self.storage.check():
            return {"ok": True, "scheme": self._scheme}
        return {
            "ok": False,
            "blocking": False,
            "scheme": self._scheme,
            "error": "unreachable: API requests are not limited and failed sign-ins are counted in each "
            "web process until it answers again",
        }

    def headers(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        """The key's window, so a client can pace itself (none if the request was not counted)."""
        window = environ.get(ENV_WINDOW)
        if window is None:
            return []
        count, reset = window
        return [
            ("X-RateLimit-Limit", self._limit),
            ("X-RateLimit-Remaining", str(max(0, self.item.amount - count))),
            ("X-RateLimit-Reset", str(int(reset))),
        ]


def preflight(environ: dict[str, Any]) -> Response | None:
    """Answer CORS preflights for any origin: the real request is then checked against its key's origins."""
    if environ.get("REQUEST_METHOD") != "OPTIONS" or "HTTP_ACCESS_CONTROL_REQUEST_METHOD" not in environ:
        return None
    resp = Response(status=204)
    origin = environ.get("HTTP_ORIGIN")
    if origin:
        resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE"
    resp.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    resp.headers["Access-Control-Max-Age"] = "600"
    return resp


def cors_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """Browsers may read a response only if it went to a widget key bound to the calling origin."""
    key: KeyInfo | None = environ.get(ENV_KEY)
    origin = environ.get("HTTP_ORIGIN")
    if key is not None and key.scope in ("widget", "admin") and origin and _origin_allowed(key, origin):
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", EXPOSED_HEADERS)]
    return []


def _vary_on_origin(resp: Response) -> None:
    vary = resp.headers.getlist("Vary")  # getlist: no exception raised and caught for an absent header
    if not vary:
        resp.headers.add("Vary", "Origin")
    elif not any("origin" in v.lower() for v in vary):
        resp.headers["Vary"] = f"{', '.join(vary)}, Origin"


class Guard:
    """The hooks :func:`protect` gives each /v1 blueprint: one before and one after every request.

    Before: the guard puts itself in the environ (:func:`require` finds the key cache and the app there); a
    CORS preflight is answered (not counted, no key needed); any other request is counted against its
    key's window. After: ``Vary: Origin``, the window's headers and, for a widget key at one
    of its origins, the CORS headers. Headers are appended, not set: set() scans the list for each one,
    and none of these is there yet (``Vary`` excepted, which is joined to).
    """

    def __init__(self, context: AppContext, limit: KeyRateLimit, keys: KeyCache, server_secret: str) -> None:
        self.context, self.limit, self.keys = context, limit, keys
        self._server_secret = server_secret
        self._identity_secrets: dict[str, str] = {}

    def identity_secret(self, prefix: str) -> str:
        """The identity secret of the widget key ``prefix`` (derived once per key and process)."""
        found = self._identity_secrets.get(prefix)
        if found is None:
            if len(self._identity_secrets) >= _CACHE_MAX:
                self._identity_secrets.clear()
            found = self._identity_secrets[prefix] = identity.identity_secret(self._server_secret, prefix)
        return found

    def before(self) -> Response | None:
        environ = request.environ
        environ[ENV_GUARD] = self
        answered = preflight(environ)
        if answered is not None:
            return answered
        return self.limit.check(environ)

    def after(self, resp: Response) -> Response:
        environ = request.environ
        _vary_on_origin(resp)
        resp.headers.extend(self.headers(environ))
        return resp

    def headers(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        """What every protected response carries besides ``Vary: Origin``: the key's window and, for a
        widget key at one of its origins, the CORS headers."""
        return self.limit.headers(environ) + cors_headers(environ)


def protect(app: Flask, *blueprints: Blueprint) -> KeyRateLimit:
    """Give registered ``blueprints`` the API's guard: CORS preflights and headers, and the per-key rate
    limit from settings, one counter per key across all of them."""
    ctx = app.extensions["giftrec"]
    guard: Guard | None = ctx.services.get("api_guard")
    if guard is None:
        keys = ctx.services.setdefault("api_key_cache", KeyCache(ctx.sessions))
        api = ctx.settings.api
        limit = KeyRateLimit(api.rate_limit, api.rate_limit_storage, api.rate_limit_storage_timeout)
        guard = ctx.services["api_guard"] = Guard(ctx, limit, keys, str(app.secret_key))
        ctx.services["rate_limit"] = limit
        ctx.readiness_probes["rate_limit_storage"] = limit.storage_status
    for bp in blueprints:
        # The hooks of a registered blueprint live in the app's per-blueprint lists.
        before = app.before_request_funcs.setdefault(bp.name, [])
        if guard.before not in before:
            before.append(guard.before)
            app.after_request_funcs.setdefault(bp.name, []).append(guard.after)
    return guard.limit
