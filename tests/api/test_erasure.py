"""Erasure reaches serving at once: in this worker, in another worker process, in links and in training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import select

from domain.db import session_scope
from domain.models import Customer, ModelArtifactChunk, ModelRun
from domain.serving.model_runs import load_run_artifact
from domain.serving.training import is_stale, prune_artifacts, train_model
from tests.api.helpers import bearer


@pytest.mark.slow
def test_an_erased_customer_is_unknown_at_once_in_this_worker(client, keys, trained):
    """Regression: after DELETE the id kept resolving and the stored factors kept producing personal picks
    ("Because you bought ...") until the next training."""
    headers = bearer(keys["server"])
    before = client.get(f"/v1/customers/{trained}/recommendations?n=5", headers=headers)
    assert before.status_code == 200 and before.json["items"][0]["source"] == "collaborative"
    assert client.get(f"/v1/customers/{trained}/next-purchase", headers=headers).status_code == 200
    assert client.delete(f"/v1/customers/{trained}", headers=headers).status_code == 204
    for path in ("recommendations?n=5", "next-purchase"):
        after = client.get(f"/v1/customers/{trained}/{path}", headers=headers)
        assert after.status_code == 404, (path, after.json)
        assert after.mimetype == "application/problem+json"


@pytest.mark.slow
def test_the_next_training_forgets_an_erased_customer_and_prunes_older_artifacts(app, client, keys, trained):
    ctx = app.extensions["giftrec"]
    with ctx.sessions() as session:
        cid = session.scalars(select(Customer.id).where(Customer.external_id == trained)).one()
        old = session.scalars(select(ModelRun).order_by(ModelRun.id.desc())).first()
        assert old is not None and old.artifact_path
        assert cid in load_run_artifact(session, ctx.settings, old).user_index.ids.tolist()
    assert client.delete(f"/v1/customers/{trained}", headers=bearer(keys["server"])).status_code == 204
    with session_scope(ctx.sessions) as session:
        stale, reason = is_stale(session, ctx.settings)
        assert stale and "erased" in reason
        new = train_model(session, ctx.settings)
        assert new.status == "succeeded", new.error
    with session_scope(ctx.sessions) as session:  # after the commit that recorded the new run
        prune_artifacts(session, ctx.settings)
    with ctx.sessions() as session:
        new = session.get(ModelRun, new.id)
        assert cid not in load_run_artifact(session, ctx.settings, new).user_index.ids.tolist()
        assert session.get(ModelRun, old.id).artifact_path is None, "trained before the erasure: pruned"
        assert not session.scalars(
            select(ModelArtifactChunk).where(ModelArtifactChunk.version == old.version)
        ).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(settings, port: int) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """One gunicorn web process, sharing nothing with the other but the database."""
    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=settings.database.url,
        GIFTREC_SERVER_INSTANCE_DIR=settings.server.instance_dir,
        GIFTREC_SERVER_SECRET_KEY=settings.server.secret_key or "test",
        GIFTREC_MODEL_ARTIFACT_DIR=settings.model.artifact_dir,
    )
    gunicorn = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    return subprocess.Popen([*gunicorn, "api.wsgi:app"], env=env, stderr=subprocess.DEVNULL)


def _status(url: str, headers: dict[str, str], method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _until(check, seconds: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.slow
def test_erasure_reaches_another_worker_process_within_seconds(app, keys, trained):
    """Two web processes on one database: erased through one, the other answers 404 within seconds
    (``ModelStore``'s freshness check, once a second), with no personal pick in between."""
    settings = app.extensions["giftrec"].settings
    ports = [_free_port(), _free_port()]
    workers = [_worker(settings, port) for port in ports]
    headers = bearer(keys["server"])
    try:
        urls = [f"http://127.0.0.1:{port}/v1/customers/{trained}/recommendations?n=5" for port in ports]

        def up() -> bool:
            try:
                return all(_status(u, headers) == 200 for u in urls)
            except OSError:
                return False

        _until(up, 60)
        gone = _status(f"http://127.0.0.1:{ports[0]}/v1/customers/{trained}", headers, "DELETE")
        assert gone == 204
        assert _status(urls[0], headers) == 404, "the erasing worker: at once"
        answers: list[int] = []

        def forgotten() -> bool:
            answers.append(_status(urls[1], headers))
            return answers[-1] == 404

        _until(forgotten, 3.0)
        assert set(answers) <= {200, 404}
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=10)
