"""The fast path in front of Flask (api/fastpath.py): the same answers as the Flask view, counted once."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from flask import Response, request

from api import create_app, fastpath
from tests.api.helpers import SHOP, bearer, signed

PICKS = "storefront.customer_recommendations"


def _without_ids(resp):  # type: ignore[no-untyped-def]
    """The JSON body with each recommendation id replaced by its shape (ids are random per response)."""
    body = resp.get_json()
    for item in body.get("items", []) if resp.status_code == 200 else []:
        rid = item.pop("recommendation_id")
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.\d+[csbn]", rid), rid
    return body


def _headers(resp):  # type: ignore[no-untyped-def]
    """Every header in order; the window's end and the request id (made per request) only by presence."""
    return [
        (k, f"<{k}>" if k in ("X-RateLimit-Reset", "X-Request-ID") else v) for k, v in resp.headers.items()
    ]


@pytest.mark.slow
def test_the_fast_path_answers_as_flask_does(app, settings, keys, trained):
    """Request by request, an app with the fast path and one without answer the same status, headers
    and body (recommendation ids aside): picks with filters, CORS for a widget at its origin, and every
    request the fast path hands on (schema errors, unknown customers, wrong keys, HEAD, non-ASCII)."""
    flask_only = create_app(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, fast_path=False))
    )
    assert isinstance(app.wsgi_app.app, fastpath.FastPath)  # inside the observing door (api/observe.py)
    assert not isinstance(flask_only.wsgi_app.app, fastpath.FastPath)
    try:
        server, unsigned = bearer(keys["server"]), {"X-Api-Key": keys["widget"], "Origin": SHOP}
        widget = {**unsigned, **signed(app, keys["widget"], trained)}
        picks = f"/v1/customers/{trained}/recommendations"
        fast_client, flask_client = app.test_client(), flask_only.test_client()
        first = [
            c.get(f"{picks}?n=8", headers=server).get_json()["items"] for c in (fast_client, flask_client)
        ]
        top = [item["sku"] for item in first[0]]
        requests = [
            ("GET", f"{picks}?n=8", server),
            ("GET", f"{picks}?n=10&min_price=2&max_price=5&exclude={top[0]},{top[1]}", server),
            ("GET", f"{picks}?n=5&max_price=1.5&exclude=+{top[2]}%20", server),
            ("GET", f"{picks}?n=4&category=BAG", server),
            ("GET", f"{picks}?n=2&n=50&unknown=1", server),
            ("GET", f"{picks}", widget),
            ("GET", f"{picks}?n=3", {"X-Api-Key": keys["widget"], "Origin": "https://other.example"}),
            ("GET", f"{picks}?n=3", bearer(keys["email"])),
            ("GET", f"{picks}?n=3", {}),
            ("GET", f"{picks}?n=3", bearer("gr_no_such_key")),
            ("GET", f"{picks}?n=3", unsigned),
            ("GET", f"{picks}?n=3", {**unsigned, **signed(app, keys["widget"], "SOMEONE-ELSE")}),
            ("GET", f"{picks}?n=0", server),
            ("GET", f"{picks}?n=abc", server),
            ("GET", f"{picks}?min_price=5&max_price=2", server),
            ("GET", f"{picks}?min_price=nan", server),
            ("GET", f"{picks}?category=%C3%A9t%C3%A9", server),
            (
                "GET",
                "/v1/customers/NOBODY/recommendations?n=3",
                {**unsigned, **signed(app, keys["widget"], "NOBODY")},
            ),
            ("GET", "/v1/customers/Zo%C3%AB/recommendations", server),
            ("GET", "/v1/customers/a%2Fb/recommendations", server),
            ("GET", "/v1/customers//recommendations", server),
            ("GET", f"{picks}/", server),
            ("HEAD", f"{picks}?n=3", server),
            ("OPTIONS", picks, {"Origin": SHOP, "Access-Control-Request-Method": "GET"}),
        ]
        statuses, reached = [], []
        view = app.view_functions[PICKS]

        def counted(customer_id):  # type: ignore[no-untyped-def]
            reached.append(request.full_path)
            return view(customer_id=customer_id)

        app.view_functions[PICKS] = counted
        for method, path, headers in requests:
            ours = fast_client.open(path, method=method, headers=headers)
            theirs = flask_client.open(path, method=method, headers=headers)
            where = f"{method} {path}"
            assert ours.status_code == theirs.status_code, where
            assert _headers(ours) == _headers(theirs), where
            if method == "GET":
                assert _without_ids(ours) == _without_ids(theirs), where
            statuses.append(ours.status_code)
        assert statuses == [200] * 6 + [403, 403, 401, 401, 401, 403] + [422] * 4 + [
            200,
            404,
            404,
            404,
            405,
            404,
            200,
            204,
        ]
        # In the app with the fast path, only what it hands on reached the view: a key it may not use,
        # schema errors, a customer it does not know, a non-ASCII path and HEAD. No well-formed request did.
        assert reached == [
            f"{picks}?n=3",  # the widget at another origin (403 from require, inside the view)
            f"{picks}?n=3",  # the email key
            f"{picks}?n=3",  # no key
            f"{picks}?n=3",  # an unknown key
            f"{picks}?n=3",  # a widget without the customer's signature
            f"{picks}?n=3",  # a widget with another customer's signature
            f"{picks}?n=0",
            f"{picks}?n=abc",
            f"{picks}?min_price=5&max_price=2",
            f"{picks}?min_price=nan",
            "/v1/customers/NOBODY/recommendations?n=3",
            "/v1/customers/Zoë/recommendations?",  # (a%2Fb is two segments: no route, Flask's 404)
            f"{picks}?n=3",  # HEAD
        ]
    finally:
        flask_only.extensions["giftrec"].close()


def test_well_formed_picks_skip_flask_and_the_rest_reach_it(app, client, keys, shop):
    """With the Flask view replaced, a well-formed request is still answered (by the fast path); a
    malformed one, an unknown customer or a missing key reach Flask's view or guard."""
    app.view_functions[PICKS] = lambda customer_id: Response("flask", status=299)
    server = bearer(keys["server"])
    fast = client.get("/v1/customers/C1/recommendations?n=2&min_price=1", headers=server)
    assert fast.status_code == 200 and len(fast.get_json()["items"]) == 2
    assert fast.headers["X-RateLimit-Remaining"] and fast.headers["Vary"] == "Origin"
    for path, headers in (
        ("/v1/customers/C1/recommendations?n=abc", server),
        ("/v1/customers/NOBODY/recommendations", server),
        ("/v1/customers/C1/recommendations?n=1&max_price=-1", server),
        ("/v1/customers/C1/recommendations", {}),  # the key is checked inside the (replaced) view
        ("/v1/customers/C1/recommendations", bearer(keys["email"])),
    ):
        assert client.get(path, headers=headers).status_code == 299, path


def test_a_request_is_counted_once_whichever_door_answers(settings, sessions, shop):
    """The fast path counts a request, then hands an unknown customer to Flask, whose guard must not
    count it again: with 3 a minute, the fourth request is the first refused."""
    limited = create_app(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, rate_limit="3/minute"))
    )
    try:
        with limited.extensions["giftrec"].sessions() as session:
            from domain.access import api_keys

            _, key = api_keys.create_key(session, "server")
            session.commit()
        client = limited.test_client()
        paths = ["C1", "NOBODY", "C2", "C1"]
        responses = [client.get(f"/v1/customers/{c}/recommendations?n=1", headers=bearer(key)) for c in paths]
        assert [r.status_code for r in responses] == [200, 404, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
        assert responses[3].mimetype == "application/problem+json" and responses[3].headers["Retry-After"]
    finally:
        limited.extensions["giftrec"].close()


def test_a_failing_handler_is_logged_and_flask_answers(app, client, keys, shop, caplog):
    def broken(environ, segment):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"broken on {segment}")

    fastpath.route(app, "/v1/products/", "/similar", broken, endpoint="storefront.similar")
    with caplog.at_level(logging.ERROR, logger="api.fastpath"):
        resp = client.get("/v1/products/MUG-1/similar?n=2", headers=bearer(keys["server"]))
    assert resp.status_code == 200 and len(resp.get_json()["items"]) == 2
    assert "the fast path failed on /v1/products/MUG-1/similar" in caplog.text
    assert "broken on MUG-1" in caplog.text
