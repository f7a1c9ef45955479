"""Request ids and JSON logs (api/observe.py): every response carries the id, every log line too."""

from __future__ import annotations

import io
import json
import logging
import re

from api import observe
from tests.api.helpers import bearer

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_the_load_balancers_request_id_is_echoed_and_a_missing_one_is_made(app, client, keys, shop):
    given = client.get("/health/live", headers={"X-Request-ID": "lb-7f3a.2:9"})
    assert given.headers["X-Request-ID"] == "lb-7f3a.2:9"
    made = [client.get("/health/live").headers["X-Request-ID"] for _ in range(2)]
    assert all(HEX32.fullmatch(rid) for rid in made) and made[0] != made[1]
    # Not something to paste into logs or headers as is: too long, or characters outside the set.
    for bad in ("x" * 129, "a b", 'a"b', "a\u00e9"):
        rid = client.get("/health/live", headers={"X-Request-ID": bad.encode("utf-8").decode("latin-1")})
        assert HEX32.fullmatch(rid.headers["X-Request-ID"]), bad


def test_problem_responses_and_the_fast_path_carry_the_request_id(app, client, keys, shop):
    unknown = client.get(
        "/v1/customers/NOPE/recommendations", headers={**bearer(keys["server"]), "X-Request-ID": "r-1"}
    )
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"
    assert unknown.headers["X-Request-ID"] == "r-1"
    invalid = client.get(
        "/v1/customers/C1/recommendations?n=0", headers={**bearer(keys["server"]), "X-Request-ID": "r-2"}
    )
    assert invalid.status_code == 422 and invalid.headers["X-Request-ID"] == "r-2"
    unauthorized = client.get("/v1/bestsellers", headers={"X-Request-ID": "r-3"})
    assert unauthorized.status_code == 401 and unauthorized.headers["X-Request-ID"] == "r-3"
    answered = client.get(
        "/v1/customers/C1/recommendations?n=2", headers={**bearer(keys["server"]), "X-Request-ID": "r-4"}
    )
    assert answered.status_code == 200 and answered.headers["X-Request-ID"] == "r-4"
    assert answered.headers.getlist("X-Request-ID") == ["r-4"]


def test_log_lines_are_json_with_the_request_id(app, client):
    stream = io.StringIO()
    handler = observe.json_handler(stream)
    logger = logging.getLogger("tests.observe")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @app.get("/test-log")
    def _log_something():  # type: ignore[no-untyped-def]
        logger.info("inside the request")
        return {"ok": True}

    try:
        client.get("/test-log", headers={"X-Request-ID": "abc-123"})
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "inside the request" and inside["request_id"] == "abc-123"
    assert inside["level"] == "INFO" and inside["logger"] == "tests.observe" and inside["time"]
    assert outside["request_id"] is None and outside["level"] == "WARNING"
