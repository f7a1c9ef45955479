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


def test_the_serving_entry_point_sets_the_configured_switch_interval(tmp_path):
    """gunicorn's ``api.wsgi`` gives background threads ``server.switch_interval`` seconds with the GIL
    while a request thread waits (a fresh process: the interval is process-wide)."""
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}",
        GIFTREC_SERVER_INSTANCE_DIR=str(tmp_path / "instance"),
        GIFTREC_SERVER_SECRET_KEY="test",
        GIFTREC_SERVER_SWITCH_INTERVAL="0.0015",
    )
    out = subprocess.run(
        [sys.executable, "-c", "import sys, api.wsgi; print(sys.getswitchinterval())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(0.0015)


def test_the_serving_entry_point_freezes_what_it_made_at_start_up(tmp_path):
    """gunicorn's ``api.wsgi`` moves the objects made at start-up (modules, the app) out of the cyclic
    collector's generations: a full collection then walks only what was made since (under the deployment
    benchmark, a web worker's longest such pause: 132 to 236 ms before, at most 22 ms after)."""
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        GIFTREC_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}",
        GIFTREC_SERVER_INSTANCE_DIR=str(tmp_path / "instance"),
        GIFTREC_SERVER_SECRET_KEY="test",
    )
    out = subprocess.run(
        [sys.executable, "-c", "import gc, api.wsgi; print(gc.get_freeze_count())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(out.stdout.strip().splitlines()[-1]) > 50_000
