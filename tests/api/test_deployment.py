"""Scale-out: two gunicorn web processes that share only the database (and Redis) serve the model
trained elsewhere, and share one rate-limit budget and one sign-in throttle (docs/deployment.md)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from domain.db import session_scope
from domain.serving.next_purchase_runs import train_next_purchase
from domain.serving.training import train_model
from tests.api.helpers import bearer, most_active
from tests.api.processes import free_port, status, stop, until, web_process
from tests.redis_server import RedisServer

#: Seconds between a web process's checks for a newer model run in these tests (model.reload_interval).
RELOAD_INTERVAL = 0.2
#: The stated time for a new model to be served everywhere: one reload interval plus loading it (fetch,
#: verify, rebuild the data), here with a wide margin for a shared, loaded machine.
SERVED_WITHIN = RELOAD_INTERVAL + 30
#: The stated time for an order or event written through one process to reach another's picks: its
#: freshness check (``ModelStore``, every second) reloads the customer's rows; here with a margin for a
#: shared, loaded machine (docs/deployment.md, stated times).
FRESH_WITHIN = 1 + 9
#: Customers whose rankings a web process makes ahead after each model load (api.precomputed_customers):
#: enough for the customers these tests ask about, fewer than the sample's ~700 (0.3 s CPU per load).
PRECOMPUTED = 50


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def _two_processes(settings, tmp_path: Path, **env: str) -> tuple[list[subprocess.Popen[bytes]], list[int]]:  # type: ignore[no-untyped-def]
    """Two web processes, each with its own instance and artifact folder: the database is all they share."""
    ports = [free_port(), free_port()]
    workers = []
    for n, port in enumerate(ports):
        own = tmp_path / f"host{n}"
        workers.append(
            web_process(
                settings,
                port,
                GIFTREC_SERVER_INSTANCE_DIR=str(own / "instance"),
                GIFTREC_MODEL_ARTIFACT_DIR=str(own / "models"),
                GIFTREC_API_PRECOMPUTED_CUSTOMERS=str(PRECOMPUTED),
                **env,
            )
        )
    return workers, ports


def _served_version(port: int, admin: dict[str, str]) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health/ready", headers=admin)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.load(resp)
    except (urllib.error.HTTPError, OSError):
        return None
    version = body["checks"]["model"].get("version")
    return None if version is None else str(version)


@pytest.mark.slow
def test_a_model_trained_elsewhere_is_served_by_both_web_processes(app, keys, trained, tmp_path):
    ctx = app.extensions["giftrec"]
    admin = bearer(keys["admin"])
    workers, ports = _two_processes(
        ctx.settings, tmp_path, GIFTREC_MODEL_RELOAD_INTERVAL=str(RELOAD_INTERVAL)
    )
    try:
        until(lambda: all(_served_version(p, admin) for p in ports), 120)
        first = {_served_version(p, admin) for p in ports}
        assert len(first) == 1
        with session_scope(ctx.sessions) as session:  # train in a third place: this test's process
            run = train_model(session, ctx.settings)
            assert run.status == "succeeded", run.error
            version = run.version
        assert first != {version}
        took = until(lambda: all(_served_version(p, admin) == version for p in ports), SERVED_WITHIN)
        assert took <= SERVED_WITHIN
        assert not any((tmp_path / f"host{n}" / "models").exists() for n in (0, 1)), "nothing on their disks"
        customer = f"/v1/customers/{trained}/recommendations?n=5"
        assert all(status(f"http://127.0.0.1:{p}{customer}", bearer(keys["server"])) == 200 for p in ports)
    finally:
        stop(workers)


def _call(port: int, path: str, headers: dict[str, str], body: object = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={**headers, "Content-Type": "application/json"} if data else headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status), json.load(resp)
    except urllib.error.HTTPError as exc:
        return int(exc.code), {}


@pytest.mark.slow
def test_a_write_through_one_web_process_reaches_the_picks_of_the_other_and_a_new_model_both(
    app, keys, trained, redis_url, tmp_path
):
    """Two gunicorn processes sharing only the database and Redis: an order recorded through one is out of
    the customer's picks served by the other within the freshness interval, and so is a purchase event
    recorded through the other (for another customer, so that the two waits run at once and neither
    write moves the other's picks); a model trained in a third place is then served by both, which still
    leave out what was bought. Each wait polls against a deadline (the stated time plus a margin)."""
    ctx = app.extensions["giftrec"]
    admin, server = bearer(keys["admin"]), bearer(keys["server"])
    workers, ports = _two_processes(
        ctx.settings,
        tmp_path,
        GIFTREC_MODEL_RELOAD_INTERVAL=str(RELOAD_INTERVAL),
        GIFTREC_API_RATE_LIMIT_STORAGE=redis_url,
    )
    buyer, visitor = most_active(ctx.sessions, 2)
    assert buyer == trained

    def picks(port: int, customer: str) -> list[str]:
        code, body = _call(port, f"/v1/customers/{customer}/recommendations?n=10", server)
        assert code == 200, code
        return [item["sku"] for item in body["items"]]

    def each_in_the_other() -> bool:
        """Both waits at once: neither customer's picks change but by their own write."""
        return first not in picks(ports[1], buyer) and second not in picks(ports[0], visitor)

    try:
        until(lambda: all(_served_version(p, admin) for p in ports), 120)
        # what the other process offers each customer first, before the writes
        first, second = picks(ports[1], buyer)[0], picks(ports[0], visitor)[0]
        assert first in picks(ports[0], buyer) and second in picks(ports[1], visitor)  # the same data
        # a quantity well above any earlier return of the product: bought, net of returns, either way
        line = {"sku": first, "quantity": 10_000, "unit_price": "1.00"}
        order = {"order_id": "TWO-PROCESSES-1", "customer_id": buyer, "lines": [line]}
        code, created = _call(ports[0], "/v1/orders", server, order)
        assert code == 201 and created["created"], (code, created)
        assert first not in picks(ports[0], buyer), "the writing process: at once"
        event = {"id": "two-processes-1", "type": "purchase", "sku": second, "customer_id": visitor}
        code, recorded = _call(ports[1], "/v1/events", server, {"events": [{**event, "quantity": 10_000}]})
        assert code == 200 and recorded["recorded"] == 1, (code, recorded)
        assert second not in picks(ports[1], visitor), "the writing process: at once"
        assert until(each_in_the_other, FRESH_WITHIN) <= FRESH_WITHIN
        # a new model, trained in a third place (this test's process) on the rows both wrote
        with session_scope(ctx.sessions) as session:
            run = train_model(session, ctx.settings)
            assert run.status == "succeeded", run.error
            version = run.version
        until(lambda: all(_served_version(p, admin) == version for p in ports), SERVED_WITHIN)
        for port in ports:
            assert first not in picks(port, buyer) and second not in picks(port, visitor)
    finally:
        stop(workers)


def _ranker_version(port: int, admin: dict[str, str]) -> str | None:
    """The next-purchase ranker the process serves (its readiness check also starts its look)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health/ready", headers=admin)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            check = json.load(resp)["checks"]["next_purchase"]
    except (urllib.error.HTTPError, OSError):
        return None
    return None if check.get("version") is None else str(check["version"])


@pytest.mark.slow
def test_a_next_purchase_ranker_trained_elsewhere_is_served_by_both_web_processes(
    app, keys, trained, tmp_path
):
    """The ranker is trained in a third place (this test's process); both web processes load it from the
    database within the stated time and answer from it, without fitting it themselves."""
    ctx = app.extensions["giftrec"]
    admin = bearer(keys["admin"])
    workers, ports = _two_processes(
        ctx.settings, tmp_path, GIFTREC_MODEL_RELOAD_INTERVAL=str(RELOAD_INTERVAL)
    )
    try:
        until(lambda: all(_live(p) for p in ports), 120)
        assert [_ranker_version(p, admin) for p in ports] == [None, None]  # nothing trained yet
        with session_scope(ctx.sessions) as session:
            run = train_next_purchase(session, ctx.settings)
            assert run.status == "succeeded", run.error
            version = run.version
        took = until(lambda: all(_ranker_version(p, admin) == version for p in ports), SERVED_WITHIN)
        assert took <= SERVED_WITHIN
        customer = f"/v1/customers/{trained}/next-purchase?n=5"
        assert all(status(f"http://127.0.0.1:{p}{customer}", bearer(keys["server"])) == 200 for p in ports)
    finally:
        stop(workers)


@pytest.mark.slow
def test_one_rate_limit_budget_holds_across_both_web_processes(app, keys, redis_url, tmp_path):
    """Requests alternated between the two processes run out at the limit, not at twice it. With the
    default per-process storage (memory://) each process would allow the whole budget."""
    limit = 10
    settings = app.extensions["giftrec"].settings
    workers, ports = _two_processes(
        settings, tmp_path, GIFTREC_API_RATE_LIMIT=f"{limit}/hour", GIFTREC_API_RATE_LIMIT_STORAGE=redis_url
    )
    server = bearer(keys["server"])
    try:
        until(lambda: all(_live(p) for p in ports), 120)
        answers = [
            status(f"http://127.0.0.1:{ports[i % 2]}/v1/bestsellers?n=3", server) for i in range(2 * limit)
        ]
        assert answers[:limit] == [200] * limit
        assert answers[limit:] == [429] * limit, answers
    finally:
        stop(workers)


_TOKEN = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def _failed_sign_in(port: int, opener: urllib.request.OpenerDirector) -> int:
    base = f"http://127.0.0.1:{port}/manage/login"
    with opener.open(base, timeout=30) as page:
        found = _TOKEN.search(page.read().decode())
    assert found
    form = urllib.parse.urlencode(
        {"csrf_token": found.group(1), "email": "nobody@example.com", "password": "wrong"}
    ).encode()
    try:
        with opener.open(base, data=form, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
def test_the_sign_in_throttle_holds_across_both_web_processes(app, redis_url, tmp_path):
    """Failed sign-ins of one account alternated between the processes are throttled after the account's
    allowance (5 in 15 minutes), not after twice it."""
    settings = app.extensions["giftrec"].settings
    workers, ports = _two_processes(settings, tmp_path, GIFTREC_API_RATE_LIMIT_STORAGE=redis_url)
    openers = [
        urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        for _ in ports
    ]
    try:
        until(lambda: all(_live(p) for p in ports), 120)
        answers = [_failed_sign_in(ports[i % 2], openers[i % 2]) for i in range(7)]
        assert answers == [401] * 5 + [429] * 2, answers
    finally:
        stop(workers)


def _live(port: int) -> bool:
    try:
        return status(f"http://127.0.0.1:{port}/health/live", {}) == 200
    except OSError:
        return False
