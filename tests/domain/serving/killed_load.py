"""A web process (``api.wsgi``, as gunicorn loads it) that stops while it loads the served model, for the
test to kill.

Usage: python -m tests.domain.serving.killed_load (the settings come from ``GIFTREC_*``)

The process starts its first model load as a serving process does; once the artifact's pieces are written
back into a temporary folder, before they are loaded, the child prints ``stopped`` and waits on its stdin,
which the test never closes: it is killed there with SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

from domain.serving import artifact_store


def _stop(folder: Path) -> NoReturn:
    print("stopped", flush=True)
    sys.stdin.read()  # until killed
    raise SystemExit("stdin closed: not killed")


def main() -> None:
    artifact_store.load_artifact = _stop  # type: ignore[assignment]
    from api.wsgi import app  # starts the first model load in a background thread

    app.extensions["giftrec"].services["model_store"].wait(600)
    raise SystemExit("the model loaded: it was not stopped")


if __name__ == "__main__":
    main()
