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


def _in_a_fresh_interpreter(code: str, tmp_path, **env: str) -> str:
    """The last line ``code`` prints in a new Python process (process-wide state: the switch interval,
    the collector, the imported modules), on an empty SQLite database in ``tmp_path``."""
    import os
    import subprocess
    import sys

    environ = dict(
        os.environ,
        GIFTREC_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}",
        GIFTREC_SERVER_INSTANCE_DIR=str(tmp_path / "instance"),
        GIFTREC_SERVER_SECRET_KEY="test",
        **env,
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def test_the_serving_entry_point_sets_the_configured_switch_interval(tmp_path):
    """gunicorn's ``api.wsgi`` gives background threads ``server.switch_interval`` seconds with the GIL
    while a request thread waits (a fresh process: the interval is process-wide)."""
    printed = _in_a_fresh_interpreter(
        "import sys, api.wsgi; print(sys.getswitchinterval())",
        tmp_path,
        GIFTREC_SERVER_SWITCH_INTERVAL="0.0015",
    )
    assert float(printed) == pytest.approx(0.0015)


def test_the_serving_entry_point_freezes_what_it_made_at_start_up(tmp_path):
    """gunicorn's ``api.wsgi`` moves the objects made at start-up (modules, the app) out of the cyclic
    collector's generations: a full collection then walks only what was made since (under the deployment
    benchmark, a web worker's longest such pause: 132 to 236 ms before, at most 22 ms after)."""
    assert (
        int(_in_a_fresh_interpreter("import gc, api.wsgi; print(gc.get_freeze_count())", tmp_path)) > 50_000
    )


def _heavy_imports_in_functions() -> set[str]:
    """Modules of scikit-learn, statsmodels, scipy.stats and scipy.optimize the project imports inside a
    function (where used, not at start-up)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    heavy = ("sklearn", "statsmodels", "scipy.stats", "scipy.optimize")
    found: set[str] = set()
    for package in ("api", "config", "domain", "jobs", "recommender"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    names = (
                        [inner.module or ""]
                        if isinstance(inner, ast.ImportFrom)
                        else [a.name for a in inner.names]
                        if isinstance(inner, ast.Import)
                        else []
                    )
                    found.update(n for n in names for h in heavy if n == h or n.startswith(h + "."))
    return found


def _modules_after(code: str, tmp_path) -> tuple[set[str], list[str]]:
    """The modules a fresh interpreter holds after ``code``, and the list ``code`` left in ``shown``."""
    import json

    printed = _in_a_fresh_interpreter(
        f"import json, sys\nshown = []\n{code}\nprint(json.dumps([sorted(sys.modules), shown]))", tmp_path
    )
    modules, shown = json.loads(printed)
    return set(modules), shown


def test_a_command_line_does_not_import_what_only_some_commands_use(tmp_path):
    """Every `giftrec` command builds the app: scikit-learn (with pandas), statsmodels, scipy.stats and
    scipy.optimize are imported where they are used, not by the app (about a second of CPU at every
    command's start, and in a training run beside a serving host's requests)."""
    loaded, _ = _modules_after("from api.cli.common import create_cli_app\ncreate_cli_app()", tmp_path)
    assert _heavy_imports_in_functions()  # the scan finds them
    assert not {m for m in loaded if m.split(".")[0] in ("sklearn", "statsmodels", "pandas")}
    assert "scipy.stats" not in loaded and "scipy.optimize" not in loaded


def test_the_serving_entry_point_imports_up_front_what_requests_import_where_used(tmp_path):
    """A serving process imports those modules before its freeze, so that no request waits for them:
    every module a function imports is in ``api.wsgi.SERVING_IMPORTS`` (or under one of its entries)."""
    loaded, serving = _modules_after("import api.wsgi\nshown = list(api.wsgi.SERVING_IMPORTS)", tmp_path)
    lazy = _heavy_imports_in_functions()
    missing = {m for m in lazy if not any(m == s or m.startswith(s + ".") for s in serving)}
    assert not missing, f"import them in api.wsgi.SERVING_IMPORTS: {sorted(missing)}"
    assert lazy <= loaded
