"""PostgreSQL stopped and started under a live app: 503 problems meanwhile, recovery without a restart."""

# ruff: noqa: F811  (the smtp_server fixture imported from tests.delivery_fixtures is redefined as an argument)

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from api import create_app
from domain import schema
from domain.access import api_keys
from domain.catalog import products
from domain.db import session_scope
from domain.models import Customer
from jobs import send_outbox
from jobs.__main__ import build_context
from tests.api.helpers import bearer
from tests.delivery_fixtures import free_port, smtp_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("GIFTREC_TEST_DATABASE_URL", "").startswith("postgresql"),
        reason="runs in the PostgreSQL pass (GIFTREC_TEST_DATABASE_URL): it restarts a server of its own",
    ),
]


class OwnServer:
    """A PostgreSQL server of this test's own (.ci/postgres.sh on another port), stopped and started."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="giftrec-pg-restart-")  # the postgres user must reach it
        self.env = os.environ | {"PGPORT": str(free_port()), "PGDATA_DIR": self.dir}
        out = subprocess.run(
            [str(ROOT / ".ci" / "postgres.sh"), "start"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.url = out.split("GIFTREC_TEST_DATABASE_URL=")[1].split()[0]
        self.pg_ctl = str(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1])

    def _ctl(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", self.pg_ctl, "-D", self.dir, "-w", *args]
        subprocess.run(command, check=True, capture_output=True)

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:  # the same data directory and options as .ci/postgres.sh
        options = f"-c listen_addresses=127.0.0.1 -p {self.env['PGPORT']} -k {self.dir} -c fsync=off"
        self._ctl("-l", f"{self.dir}/server.log", "-o", options, "start")

    def remove(self) -> None:
        subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "stop"], env=self.env, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    server = OwnServer()
    try:
        yield server
    finally:
        server.remove()


def test_the_api_answers_503_while_the_database_is_down_and_recovers_without_a_restart(
    settings, own_server, smtp_server
):
    schema.upgrade(own_server.url)
    settings = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=own_server.url)
    )
    app = create_app(settings)
    try:
        _outage_and_recovery(app, settings, own_server)
    finally:
        app.extensions["giftrec"].engine.dispose()


def _outage_and_recovery(app, settings, own_server) -> None:  # type: ignore[no-untyped-def]
    sessions = app.extensions["giftrec"].sessions
    with session_scope(sessions) as session:
        key = api_keys.create_key(session, "server", name="restart test")[1]
        products.upsert_product(
            session, "MUG-1", products.ProductInput(title="Mug", price=Decimal("8")), actor="t"
        )
        session.add(Customer(external_id="C1", name="Ann", email="ann@example.com"))
    client = app.test_client()

    def post(event_id: str):  # type: ignore[no-untyped-def]
        batch = {"events": [{"id": event_id, "type": "view", "sku": "MUG-1", "customer_id": "C1"}]}
        return client.post("/v1/events", json=batch, headers=bearer(key))

    assert post("before").status_code in (200, 201, 202)
    job = build_context(settings, sessions)
    own_server.stop()
    down = post("during")
    assert down.status_code == 503, down.get_data(as_text=True)
    assert down.mimetype == "application/problem+json"
    assert "database" in down.json["detail"] and down.headers["Retry-After"]
    # the load balancer's readiness check says so (docs/deployment.md, when a part dies)
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json["checks"]["database"] == "failing", ready.json
    with pytest.raises(Exception, match="(?i)connection|server"):  # a job run fails; the scheduler retries
        send_outbox.run(job)
    own_server.start()
    after = post("after")
    assert after.status_code in (200, 201, 202), after.get_data(as_text=True)
    assert client.get("/health/ready").json["checks"]["database"] == "ok"
    assert send_outbox.run(job).startswith("sent 0")  # the next run of the job works, same process
