"""`giftrec` commands in forked children of one process that imported giftrec once.

Each child is a real process running the real command (its own database connections, its own SMTP
connections) that a test may kill with SIGKILL; forking skips the seconds of imports a fresh `giftrec`
costs, so a test can kill dozens. Protocol on stdin/stdout, one line each: ``run ARGS...`` answers the
child's pid; ``wait PID`` answers its wait status once it is gone.

Usage: python -m tests.jobs.forking_giftrec LOG_FILE
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import threading
import traceback

# No BLAS/OpenMP thread pools in the parent: a fork copies only the forking thread, and a child once hung
# on a lock of a pool thread it did not inherit. giftrec pins BLAS to one thread in its processes anyway.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import api  # noqa: E402
import domain  # noqa: E402
import jobs  # noqa: E402
import recommender  # noqa: E402
from api.cli import cli  # noqa: E402

#: Modules that do work when imported: api.wsgi builds an app, whose model store starts a thread.
_NOT_IMPORTED = {"api.wsgi"}


def _import_everything() -> None:
    """Import every giftrec module once, here: create_app imports most of them lazily (scikit-learn...).

    The parent must stay one thread: a fork copies only the forking thread, so a child forked while another
    thread held a lock (SQLite's allocator mutex, once) waits for it forever.
    """
    for package in (api, domain, jobs, recommender):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name not in _NOT_IMPORTED:
                importlib.import_module(module.name)
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        raise SystemExit(f"importing giftrec started threads, a fork could hang on their locks: {threads}")


def _child(args: list[str], log_file: str) -> None:
    out = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    code = 1
    try:
        cli.main(args=args, prog_name="giftrec")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()  # as Python would before exiting with 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    log_file = sys.argv[1]
    _import_everything()
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            pid = os.fork()
            if pid == 0:
                _child(args, log_file)
            print(pid, flush=True)
        elif command == "wait":
            print(os.waitpid(int(args[0]), 0)[1], flush=True)


if __name__ == "__main__":
    main()
