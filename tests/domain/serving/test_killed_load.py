"""A web process killed while it loads the served model (SIGKILL of a real ``api.wsgi`` process): the next
serving process removes the temporary folder the killed one wrote the artifact back into."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import subprocess
import sys

from tests.domain.serving.fixtures import (  # noqa: F401
    imported,
    imported_rows,
    sample_slice,
    settings,
)
from tests.domain.serving.test_killed_training import _env, train_then_kill
from tests.killed import REPO

#: A serving process as gunicorn starts it (``api.wsgi``), waiting for its first model load.
SERVE_AND_LOAD = """
from api.wsgi import app
store = app.extensions["giftrec"].services["model_store"]
store.wait(600)
print(store.status()["version"])
"""


def test_a_web_process_killed_while_loading_the_model_leaves_no_copy_of_it_behind(
    sessions, settings, imported, tmp_path
):
    served, tmp = train_then_kill(sessions, settings, tmp_path, "tests.domain.serving.killed_load")

    next_process = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LOAD],
        cwd=REPO,
        env=_env(settings, tmp),
        capture_output=True,
        text=True,
    )
    assert next_process.returncode == 0, next_process.stderr
    assert next_process.stdout.split() == [served.version]
    # Regression: the killed process's folder (a copy of the model) stayed in the temporary folder for good.
    assert list(tmp.iterdir()) == []
