"""A real import in a process of its own that stops at a chosen point for the test to kill it.

Usage: python -m tests.domain.customers.killed_import DATABASE_URL FILE REJECTS STAGE

STAGE ``staging``: stop while the file is being staged (after its second chunk is written); ``commit``:
stop when everything is written and the transaction is about to commit. At that point the child prints
``stopped`` and waits on its stdin, which the test never closes: it is killed there with SIGKILL.
"""

from __future__ import annotations

import sys

from sqlalchemy import event

from config import ImportSettings
from domain.customers.imports import import_orders
from domain.customers.parsing import Chunk
from domain.customers.staging import Staging
from domain.db import make_engine, make_session_factory, session_scope


def _stop() -> None:
    print("stopped", flush=True)
    sys.stdin.read()  # until killed
    raise SystemExit("stdin closed: not killed")


def main() -> None:
    url, path, rejects, stage = sys.argv[1:5]
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    staged = 0
    add = Staging.add

    def add_and_count(self: Staging, chunk: Chunk) -> None:
        # Counted here, not from the statements: on PostgreSQL the chunks go in with COPY, which
        # SQLAlchemy's cursor events do not see.
        nonlocal staged
        staged += 1
        if staged == 3 and stage == "staging":
            _stop()  # two chunks are in the staging table, the third is about to be written
        add(self, chunk)

    Staging.add = add_and_count  # type: ignore[method-assign]
    with session_scope(sessions) as session:
        if stage == "commit":
            event.listen(session, "before_commit", lambda _session: _stop())
        import_orders(
            session, path, "online-retail", reject_path=rejects, limits=ImportSettings(chunk_rows=500)
        )
    raise SystemExit("the import committed: it was not stopped")


if __name__ == "__main__":
    main()
