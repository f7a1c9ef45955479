"""Erasure reaches serving at once: in this worker, in another worker process, in links and in training."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from domain.db import session_scope
from domain.models import Customer, ModelArtifactChunk, ModelRun
from domain.serving.model_runs import load_run_artifact
from domain.serving.training import is_stale, prune_artifacts, train_model
from tests.api.helpers import bearer
from tests.api.processes import free_port, status, stop, until, web_process


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


@pytest.mark.slow
def test_erasure_reaches_another_worker_process_within_seconds(app, keys, trained):
    """Two web processes on one database: erased through one, the other answers 404 within seconds
    (``ModelStore``'s freshness check, once a second), with no personal pick in between."""
    settings = app.extensions["giftrec"].settings
    ports = [free_port(), free_port()]
    workers = [web_process(settings, port) for port in ports]
    headers = bearer(keys["server"])
    try:
        urls = [f"http://127.0.0.1:{port}/v1/customers/{trained}/recommendations?n=5" for port in ports]

        def up() -> bool:
            try:
                return all(status(u, headers) == 200 for u in urls)
            except OSError:
                return False

        until(up, 60)
        gone = status(f"http://127.0.0.1:{ports[0]}/v1/customers/{trained}", headers, "DELETE")
        assert gone == 204
        assert status(urls[0], headers) == 404, "the erasing worker: at once"
        answers: list[int] = []

        def forgotten() -> bool:
            answers.append(status(urls[1], headers))
            return answers[-1] == 404

        until(forgotten, 3.0)
        assert set(answers) <= {200, 404}
    finally:
        stop(workers)
