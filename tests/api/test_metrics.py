"""/metrics (api/metrics.py): Prometheus's text format, for server and admin keys only."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.db import session_scope
from domain.messaging.outbox import enqueue
from domain.messaging.pause import pause
from domain.models._types import utcnow
from tests.api.helpers import SHOP, bearer


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_only_server_and_admin_keys_read_the_metrics(client, keys):
    """Security rule: the figures tell how a shop is doing; a public widget key (or an email key) must not
    read them, nor a request without a key."""
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-Api-Key": keys["widget"], "Origin": SHOP}).status_code == 403
    assert client.get("/metrics", headers=bearer(keys["email"])).status_code == 403
    for scope in ("server", "admin"):
        resp = client.get("/metrics", headers=bearer(keys[scope]))
        assert resp.status_code == 200 and resp.mimetype == "text/plain", scope


def _queue(session, key: str, kind: str, due: dt.datetime):  # type: ignore[no-untyped-def]
    email = enqueue(
        session,
        dedupe_key=key,
        kind=kind,
        to_address="ann@example.com",
        subject="s",
        body_text="b",
        body_html=None,
        customer_id=None,
        not_before=due,
    )
    assert email is not None
    return email


def test_metrics_count_requests_sources_and_read_the_state(app, client, keys, trained):
    server = bearer(keys["server"])
    before = _samples(client.get("/metrics", headers=server).get_data(as_text=True))
    picks = client.get(f"/v1/customers/{trained}/recommendations?n=5", headers=server)
    assert picks.status_code == 200
    sources = [item["source"] for item in picks.get_json()["items"]]
    assert client.get("/v1/customers/NOPE/recommendations", headers=server).status_code == 404
    ctx = app.extensions["giftrec"]
    now = utcnow()
    with session_scope(ctx.sessions) as session:
        for i, kind in enumerate(("reminder", "reminder", "winback")):
            _queue(session, f"metrics-{i}", kind, now - dt.timedelta(hours=3 - i))
        pause(session, ctx.settings.mail, reason="SMTP login refused", now=now, by="test")
    after = _samples(client.get("/metrics", headers=server).get_data(as_text=True))

    route = "storefront.customer_recommendations"
    for status in ("200", "404"):
        name = "giftrec_http_request_duration_seconds_count"
        labels = {"route": route, "method": "GET", "status": status}
        assert _value(after, name, **labels) == _value(before, name, **labels) + 1, status
    for source in set(sources):
        name = "giftrec_recommendations_served_total"
        assert _value(after, name, source=source) - _value(before, name, source=source) == sources.count(
            source
        )
    loaded = ctx.services["model_store"].loaded_model()
    assert _value(after, "giftrec_model_info", version=loaded.version, algorithm=loaded.algorithm) == 1
    assert 0 <= _value(after, "giftrec_model_age_seconds") < 3600
    assert _value(after, "giftrec_outbox_messages", status="queued") == 3
    assert _value(after, "giftrec_outbox_messages", status="sent") == 0
    assert 3 * 3600 - 60 < _value(after, "giftrec_oldest_due_reminder_seconds") < 3 * 3600 + 60
    assert _value(after, "giftrec_mail_queue_paused") == 1


def test_similar_items_and_bestsellers_are_counted_by_source(client, keys, trained):
    """Similar items and bestsellers (the fast path's answers, as the recommendations above) count too."""
    server = bearer(keys["server"])
    before = _samples(client.get("/metrics", headers=server).get_data(as_text=True))
    best = client.get("/v1/bestsellers?n=4", headers=server)
    assert best.status_code == 200
    similar = client.get(f"/v1/products/{best.get_json()['items'][0]['sku']}/similar?n=3", headers=server)
    assert similar.status_code == 200
    sources = [item["source"] for resp in (best, similar) for item in resp.get_json()["items"]]
    assert {"bestsellers", "similar"} <= set(sources)
    after = _samples(client.get("/metrics", headers=server).get_data(as_text=True))
    name = "giftrec_recommendations_served_total"
    for source in set(sources):
        assert _value(after, name, source=source) - _value(before, name, source=source) == sources.count(
            source
        ), source


def test_the_oldest_due_reminder_is_a_queued_reminder_whose_time_has_come(app, client, keys):
    """Only a reminder counts (a trigger email's delay is not a missed occasion) and only one still queued (a
    sent or failed one waits for nothing); one queued for tomorrow is not late."""
    ctx = app.extensions["giftrec"]
    now = utcnow()
    queued = {  # dedupe key: (kind, hours since it became due, status)
        "due-reminder": ("reminder", 2, "queued"),
        "older-winback": ("winback", 9, "queued"),
        "older-sent-reminder": ("reminder", 8, "sent"),
        "older-failed-reminder": ("reminder", 7, "failed"),
        "future-reminder": ("reminder", -24, "queued"),
    }
    with session_scope(ctx.sessions) as session:
        for key, (kind, hours, status) in queued.items():
            _queue(session, key, kind, now - dt.timedelta(hours=hours)).status = status
    body = client.get("/metrics", headers=bearer(keys["server"])).get_data(as_text=True)
    waited = _value(_samples(body), "giftrec_oldest_due_reminder_seconds")
    assert 2 * 3600 - 60 < waited < 2 * 3600 + 60


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""


@pytest.mark.slow
def test_giftrec_serve_adds_up_the_metrics_of_all_its_workers(app, keys, tmp_path):
    """Under `giftrec serve` (gunicorn, two workers) any worker's /metrics counts the requests of both:
    prometheus-client's multiprocess mode in the directory serve prepares."""
    settings = app.extensions["giftrec"].settings
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left by an earlier run")  # serve starts it empty
    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=settings.database.url,
        GIFTREC_SERVER_INSTANCE_DIR=settings.server.instance_dir,
        GIFTREC_SERVER_SECRET_KEY=settings.server.secret_key or "test",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    giftrec = shutil.which("giftrec", path=os.path.dirname(sys.executable))
    assert giftrec is not None
    serve = subprocess.Popen(
        [giftrec, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if _get(f"{base}/health/live")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() - started < 60, "giftrec serve did not answer"
            time.sleep(0.2)
        sent = 1  # the probe that answered
        # Concurrent batches until both workers have answered some (which worker accepts is the kernel's
        # choice, not ours): then any scrape must count every request of both.
        while len({p.name for p in directory.glob("histogram_*.db")}) < 2:
            assert sent < 2000, "one worker took every request"
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: _get(f"{base}/health/live")[0], range(40)))
            assert statuses == [200] * 40
            sent += 40
        assert not (directory / "counter_1.db").exists()
        for _ in range(3):  # whichever worker answers the scrape
            status, body = _get(f"{base}/metrics", bearer(keys["server"]))
            assert status == 200
            count = _value(
                _samples(body),
                "giftrec_http_request_duration_seconds_count",
                route="health.live",
                method="GET",
                status="200",
            )
            assert count == sent
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


def test_the_scheduler_gauge_says_whether_a_scheduler_holds_a_live_lease(client, keys, sessions):
    """With both schedulers dead nothing is trained, planned or sent, and no request fails: this gauge is
    what an alert can watch (docs/deployment.md, when a part dies)."""
    from domain.locks import SCHEDULER_LOCK, acquire_lease

    def active() -> float:
        body = client.get("/metrics", headers=bearer(keys["server"])).get_data(as_text=True)
        return _value(_samples(body), "giftrec_scheduler_active")

    assert active() == 0  # no scheduler has ever run
    ttl = dt.timedelta(seconds=120)
    assert acquire_lease(sessions, SCHEDULER_LOCK, "host:1:abc", utcnow(), ttl)
    assert active() == 1
    # its holder died 10 minutes ago without releasing it: the lease has expired
    assert acquire_lease(sessions, SCHEDULER_LOCK, "host:1:abc", utcnow() - dt.timedelta(minutes=10), ttl)
    assert active() == 0


@pytest.mark.slow
def test_a_scheduler_in_another_process_shows_its_job_runs_on_the_webs_metrics(
    client, keys, settings, tmp_path
):
    """Regression: the scheduler counted its job runs in its own process (prometheus-client's registry, or
    its own multiprocess folder), which no web process reads when it runs elsewhere (another host, or its
    own `giftrec scheduler`): /metrics showed no job runs at all. A real scheduler, started apart from this
    web app and sharing only the database, catches up its jobs at start; the web's /metrics shows each run."""
    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=settings.database.url,
        GIFTREC_SERVER_INSTANCE_DIR=str(tmp_path / "scheduler-host"),
        GIFTREC_SERVER_SECRET_KEY="test",
        GIFTREC_MAIL_SMTP_PORT="9",  # nothing is queued; a catch-up send must not reach a real relay
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    headers = bearer(keys["server"])

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return _samples(client.get("/metrics", headers=headers).get_data(as_text=True))

    assert _value(scraped(), "giftrec_job_runs_total", job="plan-selections", outcome="ok") == 0
    with open(tmp_path / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen([sys.executable, "-m", "jobs"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while _value(samples := scraped(), "giftrec_job_runs_total", job="plan-selections", outcome="ok") < 1:
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler's catch-up run is not on /metrics"
            time.sleep(0.2)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=60)
    started = time.time()
    assert _value(samples, "giftrec_job_runs_total", job="plan-selections", outcome="failed") == 0
    assert _value(samples, "giftrec_job_duration_seconds_count", job="plan-selections") == 1
    assert _value(samples, "giftrec_job_duration_seconds_sum", job="plan-selections") > 0
    finished = _value(samples, "giftrec_job_last_success_timestamp_seconds", job="plan-selections")
    assert started - 120 < finished <= started
