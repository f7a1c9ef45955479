"""The application class: what it changes about Flask."""

from __future__ import annotations

import functools

import pytest


def test_ensure_sync_answers_are_remembered_per_function(app):
    def view() -> str:
        return "ok"

    assert app.ensure_sync(view) is view
    assert app._sync[view] is view
    assert app.ensure_sync(view) is view
    # an unhashable callable is still answered, just not remembered
    unhashable = type(
        "Unhashable", (), {"__call__": lambda self: 1, "__eq__": lambda s, o: True, "__hash__": None}
    )()
    assert app.ensure_sync(unhashable) is unhashable
    for _ in range(app.SYNC_CACHE_MAX + 10):  # bounded
        app.ensure_sync(functools.partial(view))
    assert len(app._sync) <= app.SYNC_CACHE_MAX


def test_async_functions_are_still_refused_or_wrapped_as_flask_does(app):
    async def view() -> str:
        return "ok"

    try:
        import asgiref  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(view)
    else:
        assert app.ensure_sync(view)() == "ok"
