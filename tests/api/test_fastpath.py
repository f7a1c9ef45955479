"""The fast path in front of Flask (api/fastpath.py): the same answers as the Flask view, counted once."""

from __future__ import annotations

import contextlib
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
    for item in body.get("items", []):  # (a 412 carries the items too)
        rid = item.pop("recommendation_id")
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.\d+[csbn]", rid), rid
    return body


def _headers(resp):  # type: ignore[no-untyped-def]
    """Every header in order; the window's end, the request id (made per request) and the date only by
    presence."""
    return [
        (k, f"<{k}>" if k in ("X-RateLimit-Reset", "X-Request-ID", "Date") else v)
        for k, v in resp.headers.items()
    ]


def _flask_only(settings):  # type: ignore[no-untyped-def]
    return create_app(dataclasses.replace(settings, api=dataclasses.replace(settings.api, fast_path=False)))


@contextlib.contextmanager
def _limited(settings):  # type: ignore[no-untyped-def]
    """A test client of an app limited to 3 requests a minute per key, and a server key."""
    from domain.access import api_keys

    limited = create_app(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, rate_limit="3/minute"))
    )
    try:
        with limited.extensions["giftrec"].sessions() as session:
            _, key = api_keys.create_key(session, "server")
            session.commit()
        yield limited.test_client(), key
    finally:
        limited.extensions["giftrec"].close()


def _compare(app, flask_only, endpoint, requests):  # type: ignore[no-untyped-def]
    """Send each request to both apps and compare status, headers and body (recommendation ids aside);
    returns the statuses and the requests that reached the Flask view of ``endpoint`` in ``app``."""
    fast_client, flask_client = app.test_client(), flask_only.test_client()
    statuses, reached = [], []
    view = app.view_functions[endpoint]

    def counted(**kwargs):  # type: ignore[no-untyped-def]
        reached.append(f"{request.method} {request.full_path}")
        return view(**kwargs)

    app.view_functions[endpoint] = counted
    for method, path, headers in requests:
        ours = fast_client.open(path, method=method, headers=headers)
        theirs = flask_client.open(path, method=method, headers=headers)
        where = f"{method} {path}"
        assert ours.status_code == theirs.status_code, where
        assert _headers(ours) == _headers(theirs), where
        if method == "GET" and ours.status_code != 304:
            assert _without_ids(ours) == _without_ids(theirs), where
        statuses.append(ours.status_code)
    return statuses, reached


@pytest.mark.slow
def test_the_fast_path_answers_as_flask_does(app, settings, keys, trained):
    """Request by request, an app with the fast path and one without answer the same status, headers
    and body (recommendation ids aside): picks with filters, CORS for a widget at its origin, and every
    request the fast path hands on (schema errors, unknown customers, wrong keys, HEAD, non-ASCII)."""
    flask_only = _flask_only(settings)
    assert isinstance(app.wsgi_app.app, fastpath.FastPath)  # inside the observing door (api/observe.py)
    assert not isinstance(flask_only.wsgi_app.app, fastpath.FastPath)
    try:
        server, unsigned = bearer(keys["server"]), {"X-Api-Key": keys["widget"], "Origin": SHOP}
        widget = {**unsigned, **signed(app, keys["widget"], trained)}
        picks = f"/v1/customers/{trained}/recommendations"
        first = [
            a.test_client().get(f"{picks}?n=8", headers=server).get_json()["items"] for a in (app, flask_only)
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
        statuses, reached = _compare(app, flask_only, PICKS, requests)
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
            f"GET {picks}?n=3",  # the widget at another origin (403 from require, inside the view)
            f"GET {picks}?n=3",  # the email key
            f"GET {picks}?n=3",  # no key
            f"GET {picks}?n=3",  # an unknown key
            f"GET {picks}?n=3",  # a widget without the customer's signature
            f"GET {picks}?n=3",  # a widget with another customer's signature
            f"GET {picks}?n=0",
            f"GET {picks}?n=abc",
            f"GET {picks}?min_price=5&max_price=2",
            f"GET {picks}?min_price=nan",
            "GET /v1/customers/NOBODY/recommendations?n=3",
            "GET /v1/customers/Zoë/recommendations?",  # (a%2Fb is two segments: no route, Flask's 404)
            f"HEAD {picks}?n=3",
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
    with _limited(settings) as (client, key):
        paths = ["C1", "NOBODY", "C2", "C1"]
        responses = [client.get(f"/v1/customers/{c}/recommendations?n=1", headers=bearer(key)) for c in paths]
        assert [r.status_code for r in responses] == [200, 404, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
        assert responses[3].mimetype == "application/problem+json" and responses[3].headers["Retry-After"]


def test_a_failing_handler_is_logged_and_flask_answers(app, client, keys, shop, caplog):
    def broken(environ, segment):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"broken on {segment!r}")

    fastpath.route(
        app, "/v1/sessions/<anonymous_id>/recommendations", broken, "storefront.session_recommendations"
    )
    fastpath.route(app, "/v1/selections", broken, endpoint="unused")  # a rule without a variable
    with caplog.at_level(logging.ERROR, logger="api.fastpath"):
        resp = client.get("/v1/sessions/S1/recommendations?n=2", headers=bearer(keys["server"]))
        missing = client.get("/v1/selections", headers=bearer(keys["server"]))
    assert resp.status_code == 200 and len(resp.get_json()["items"]) == 2
    assert missing.status_code == 404  # Flask's answer: no such route
    assert "the fast path failed on /v1/sessions/S1/recommendations" in caplog.text
    assert "broken on 'S1'" in caplog.text
    assert "the fast path failed on /v1/selections" in caplog.text and "broken on ''" in caplog.text


def test_a_rule_has_at_most_one_variable_segment(app):
    def handler(environ, segment):  # type: ignore[no-untyped-def]
        return None

    for rule in ("/v1/<a>/<b>", "/v1/x<a>", "/v1/<a>x", "v1/<a>"):
        with pytest.raises(ValueError):
            fastpath.route(app, rule, handler, "storefront.similar")


@pytest.mark.slow
def test_similar_items_answer_as_flask_does(app, settings, keys, trained):
    """Similar items through both doors: parameters, CORS, wrong keys, schema errors, an unknown SKU,
    odd paths, HEAD and preflights; only what the fast path cannot answer reaches the view."""
    flask_only = _flask_only(settings)
    try:
        server, unsigned = bearer(keys["server"]), {"X-Api-Key": keys["widget"], "Origin": SHOP}
        # (asked of both apps: their rate-limit windows stay equal)
        best = [a.test_client().get("/v1/bestsellers?n=1", headers=server) for a in (app, flask_only)]
        sku = best[0].get_json()["items"][0]["sku"]
        similar = f"/v1/products/{sku}/similar"
        requests = [
            ("GET", f"{similar}?n=3", server),
            ("GET", similar, server),
            ("GET", f"{similar}?n=2&n=50&unknown=1", server),
            ("GET", f"{similar}?n=007", server),
            ("GET", f"{similar}?n=4", unsigned),  # a widget at its origin: no signature needed
            ("GET", f"{similar}?n=3", {"X-Api-Key": keys["widget"], "Origin": "https://other.example"}),
            ("GET", f"{similar}?n=3", bearer(keys["email"])),
            ("GET", f"{similar}?n=3", {}),
            ("GET", f"{similar}?n=3", bearer("gr_no_such_key")),
            ("GET", f"{similar}?n=0", server),
            ("GET", f"{similar}?n=101", server),
            ("GET", f"{similar}?n=abc", server),
            ("GET", f"{similar}?n=", server),
            ("GET", "/v1/products/NO-SUCH-SKU/similar?n=3", server),
            ("GET", "/v1/products/%C3%A9t%C3%A9/similar", server),
            ("GET", "/v1/products//similar", server),
            ("GET", f"{similar}/", server),
            ("HEAD", f"{similar}?n=3", server),
            ("OPTIONS", similar, {"Origin": SHOP, "Access-Control-Request-Method": "GET"}),
        ]
        statuses, reached = _compare(app, flask_only, "storefront.similar", requests)
        assert statuses == [200] * 5 + [403, 403, 401, 401] + [422] * 4 + [404, 404, 405, 404, 200, 204]
        assert reached == [
            f"GET {similar}?n=3",  # the widget at another origin
            f"GET {similar}?n=3",  # the email key
            f"GET {similar}?n=3",  # no key
            f"GET {similar}?n=3",  # an unknown key
            f"GET {similar}?n=0",
            f"GET {similar}?n=101",
            f"GET {similar}?n=abc",
            f"GET {similar}?n=",
            "GET /v1/products/NO-SUCH-SKU/similar?n=3",
            "GET /v1/products/été/similar?",
            f"HEAD {similar}?n=3",
        ]
    finally:
        flask_only.extensions["giftrec"].close()


@pytest.mark.slow
@pytest.mark.parametrize("listing", ["bestsellers", "new-arrivals"])
def test_cacheable_lists_answer_as_flask_does(app, settings, keys, trained, listing):
    """Bestsellers and new arrivals through both doors, with their caching headers (Cache-Control, the same
    weak ETag); a conditional or ranged request (304, 412) is Flask's."""
    flask_only = _flask_only(settings)
    try:
        server, widget = bearer(keys["server"]), {"X-Api-Key": keys["widget"], "Origin": SHOP}
        path = f"/v1/{listing}"
        first = [a.test_client().get(f"{path}?n=3", headers=server) for a in (app, flask_only)][0]
        category_of = {"bestsellers": "days=30&n=4", "new-arrivals": "n=4&category=NONE"}[listing]
        requests = [
            ("GET", f"{path}?n=3", server),
            ("GET", path, server),
            ("GET", f"{path}?{category_of}", server),
            ("GET", f"{path}?n=2&n=50&unknown=1", server),
            ("GET", f"{path}?category=caf%C3%A9+cr%C3%A8me", server),
            ("GET", f"{path}?n=3", widget),
            ("GET", f"{path}?n=3", {"X-Api-Key": keys["widget"], "Origin": "https://other.example"}),
            ("GET", f"{path}?n=3", {}),
            ("GET", f"{path}?n=3", {**server, "If-None-Match": first.headers["ETag"]}),
            ("GET", f"{path}?n=3", {**server, "If-None-Match": 'W/"other"'}),
            ("GET", f"{path}?n=3", {**server, "If-Match": '"other"'}),
            ("GET", f"{path}?n=0", server),
            ("GET", f"{path}?category=", server),
            ("GET", f"{path}?n=1e1", server),
            ("GET", f"{path}/", server),
            ("HEAD", f"{path}?n=3", server),
            ("OPTIONS", path, {"Origin": SHOP, "Access-Control-Request-Method": "GET"}),
        ]
        if listing == "bestsellers":
            requests += [("GET", f"{path}?days=0", server), ("GET", f"{path}?days=3651", server)]
        statuses, reached = _compare(app, flask_only, f"storefront.get_{listing.replace('-', '_')}", requests)
        expected = [200] * 6 + [403, 401, 304, 200, 412, 422, 422, 422, 404, 200, 204]
        assert statuses == expected + [422] * (len(requests) - len(expected))
        flask_answers = {6, 7, 8, 9, 10, 11, 12, 13, 15, *range(len(expected), len(requests))}
        assert reached == [
            f"{m} {p if '?' in p else p + '?'}" for i, (m, p, _) in enumerate(requests) if i in flask_answers
        ]
    finally:
        flask_only.extensions["giftrec"].close()


def test_a_request_to_a_read_is_counted_once_and_labelled_with_its_route(settings, sessions, trained):
    """An unknown SKU is counted by the fast path and then answered by Flask (counted once); the metrics
    name each fast answer by its Flask endpoint."""
    from prometheus_client import REGISTRY

    from domain.metrics import REQUEST_LATENCY

    with _limited(settings) as (client, key):

        def count(route: str, status: str) -> float:
            labels = {"route": route, "method": "GET", "status": status}
            return REGISTRY.get_sample_value(f"{REQUEST_LATENCY._name}_count", labels) or 0.0

        routes = ["storefront.get_bestsellers", "storefront.similar"]
        before = {r: count(r, "200") for r in routes}
        best = client.get("/v1/bestsellers?n=1", headers=bearer(key))
        sku = best.get_json()["items"][0]["sku"]
        responses = [best] + [
            client.get(f"/v1/products/{s}/similar?n=1", headers=bearer(key)) for s in ("NOBODY", sku, sku)
        ]
        assert [r.status_code for r in responses] == [200, 404, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
        assert {r: count(r, "200") - before[r] for r in routes} == {r: 1 for r in routes}


def _writes(tag: str, keys, app):  # type: ignore[no-untyped-def]
    """Write requests, each app's with its own ids (``tag``): the same answers from a shared database."""
    server, unsigned = bearer(keys["server"]), {"X-Api-Key": keys["widget"], "Origin": SHOP}
    widget = {**unsigned, **signed(app, keys["widget"], "C1")}
    json_type = {"Content-Type": "application/json"}

    def event(n: int, **fields):  # type: ignore[no-untyped-def]
        found = {"id": f"{tag}-e{n}", "type": "view", "sku": "MUG-1", "customer_id": "C1", **fields}
        return {k: v for k, v in found.items() if v is not None}

    def order(n: int, **fields):  # type: ignore[no-untyped-def]
        line = {"sku": "VASE-2", "quantity": 2, "unit_price": "32.00"}
        return {"order_id": f"{tag}-o{n}", "customer_id": "C2", "lines": [line], **fields}

    events, orders = "/v1/events", "/v1/orders"
    return [
        ("POST", events, server, {"events": [event(1), event(2, type="cart", customer_id="C2")]}),
        ("POST", events, server, {"events": [event(1), event(3)]}),  # one seen before: a duplicate
        ("POST", events, widget, {"events": [event(4)]}),
        ("POST", events, unsigned, {"events": [event(5, customer_id=None, anonymous_id=f"{tag}-anon")]}),
        ("POST", events, unsigned, {"events": [event(6)]}),  # no signature of C1: 401
        ("POST", events, widget, {"events": [event(7, type="purchase")]}),  # not a widget's kind
        ("POST", events, server, {"events": [event(8, sku="NO-SUCH-SKU")]}),
        ("POST", events, server, {"events": [event(9, type="wish")]}),  # the schema's 422
        ("POST", events, server, {"events": [event(n) for n in range(10, 1012)]}),  # over max_batch: 413
        ("POST", events, {}, {"events": [event(12)]}),
        ("POST", events, bearer(keys["email"]), {"events": [event(13)]}),
        ("POST", events, {**server, **json_type}, b'{"events": [}'),
        ("POST", events, {**server, "Content-Type": "text/plain"}, b'{"events": []}'),
        ("POST", orders, server, order(1)),
        ("POST", orders, server, order(1)),  # the same again: 200, not created
        ("POST", orders, server, order(1, lines=[{"sku": "MUG-1", "quantity": 1, "unit_price": "8.50"}])),
        ("POST", orders, server, order(2, customer_id=f"{tag}-new", kind="return")),
        ("POST", orders, server, order(3, lines=[])),
        ("POST", orders, widget, order(4)),
    ]


def test_writes_answer_as_flask_does(app, settings, keys, shop):
    """Event batches and orders: an app with the fast path and one without answer each write with the same
    status, headers and body, and store the same rows; only well-formed writes with a key allowed to make
    them skip Flask's view; a refused or failed one (a conflict, an unknown SKU, a widget key's purchase)
    reaches it and is answered there, nothing of it stored twice."""
    from sqlalchemy import func, select

    from domain.models import Customer, Event, Order

    flask_only = _flask_only(settings)
    clients = {"fast": app.test_client(), "flsk": flask_only.test_client()}  # tags of one length
    reached: list[str] = []
    for endpoint in ("storefront.post_events", "storefront.post_order"):
        view = app.view_functions[endpoint]

        def counted(view=view):  # type: ignore[no-untyped-def]
            reached.append(request.get_data(as_text=True)[:40])
            return view()

        app.view_functions[endpoint] = counted
    try:
        answers: dict[str, list[tuple[int, list, object]]] = {}
        for tag, client in clients.items():
            answers[tag] = []
            for method, path, headers, body in _writes(tag, keys, app):
                if isinstance(body, bytes):
                    resp = client.open(path, method=method, headers=headers, data=body)
                else:
                    resp = client.open(path, method=method, headers=headers, json=body)
                data = resp.get_data(as_text=True).replace(tag, "<tag>")
                answers[tag].append((resp.status, _headers(resp), data))
            if tag == "fast":
                fast_reached, reached = reached, []
        assert answers["fast"] == answers["flsk"]
        statuses = [int(status.split()[0]) for status, _, _ in answers["fast"]]
        assert statuses == [
            200,
            200,
            200,
            200,
            401,
            422,
            422,
            422,
            413,
            401,
            403,
            400,
            422,
            201,
            200,
            409,
            201,
            422,
            403,
        ]
        assert reached == []  # the app without the fast path has no view replaced
        # Only what the fast path handed on reached the view: the refused, failed and malformed writes.
        assert len(fast_reached) == 12, fast_reached
        with app.extensions["giftrec"].sessions() as session:
            for tag in clients:
                stored = session.execute(
                    select(Event.kind, Event.source, Event.customer_id.is_(None))
                    .where(Event.idempotency_key.like(f"{tag}-%"))
                    .order_by(Event.idempotency_key)
                ).all()
                orders = session.scalar(select(func.count()).where(Order.external_id.like(f"{tag}-%")))
                created = session.scalar(select(func.count()).where(Customer.external_id == f"{tag}-new"))
                answers[tag] = [stored, orders, created]  # type: ignore[list-item]
        assert answers["fast"] == answers["flsk"]
        assert len(answers["fast"][0]) == 5 and answers["fast"][1:] == [2, 1]  # type: ignore[arg-type]
    finally:
        flask_only.extensions["giftrec"].close()


def test_a_write_that_fails_after_its_commit_is_not_written_again(app, client, keys, shop, monkeypatch):
    """A failure once the fast path has committed (here: telling the store) is raised, as the view's own
    would be, and never handed to Flask's view, which would write the batch again; before the commit, a
    failure leaves nothing stored and Flask's view writes and answers."""
    from sqlalchemy import func, select

    from api import storefront
    from domain.models import Event

    reached = []
    view = app.view_functions["storefront.post_events"]
    app.view_functions["storefront.post_events"] = lambda: reached.append(1) or view()
    batch = {"events": [{"id": "late-1", "type": "view", "sku": "MUG-1", "customer_id": "C1"}]}

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the store is broken")

    monkeypatch.setattr(storefront, "_customer_changed", broken)
    with pytest.raises(RuntimeError, match="the store is broken"):
        client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert reached == []
    monkeypatch.setattr(storefront, "_record_events", broken)  # before the commit: Flask's turn
    batch["events"][0]["id"] = "early-1"
    with pytest.raises(RuntimeError, match="the store is broken"):
        client.post("/v1/events", json=batch, headers=bearer(keys["server"]))
    assert reached == [1]  # the view ran (and failed in its turn, with the same broken write)
    with app.extensions["giftrec"].sessions() as session:
        keys_stored = session.scalars(select(Event.idempotency_key).where(Event.idempotency_key.like("%-1")))
        assert sorted(keys_stored) == ["late-1"]
        assert session.scalar(select(func.count()).select_from(Event)) == 1
