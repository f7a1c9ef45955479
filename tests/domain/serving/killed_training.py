"""`giftrec train` in a process of its own that stops while it stores the artifact, for the test to kill.

Usage: python -m tests.domain.serving.killed_training (the settings come from ``GIFTREC_*``)

The real command runs; once the first piece of the new artifact is written into ``model_artifact_chunks``
(the run's transaction still open), the child prints ``stopped`` and waits on its stdin, which the test
never closes: it is killed there with SIGKILL.
"""

from __future__ import annotations

import sys
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from api.cli import cli


def _stop() -> None:
    print("stopped", flush=True)
    sys.stdin.read()  # until killed
    raise SystemExit("stdin closed: not killed")


def main() -> None:
    def after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO model_artifact_chunks"):
            _stop()

    event.listen(Engine, "after_cursor_execute", after_execute)
    cli.main(args=["train"], prog_name="giftrec", standalone_mode=False)
    raise SystemExit("the training finished: it was not stopped")


if __name__ == "__main__":
    main()
