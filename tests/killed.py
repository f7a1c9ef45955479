"""Kill a real process with SIGKILL at the point where it stopped itself (see the ``killed_*`` helpers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kill_where_it_stops(module: str, args: list[str], env: dict[str, str] | None = None) -> None:
    """Run ``python -m module args``, wait for it to print ``stopped`` (it then waits on its stdin, which
    is never closed), and kill it there with SIGKILL."""
    with subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "stopped\n"  # it stopped where asked: kill it there
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait() == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
