"""The reject file of an import: written aside during the import, moved into place when it commits.

An import runs in the caller's transaction, so the rows it rejected are only true of the database once
that transaction commits. :func:`publish_rejects_on_commit` writes the CSV (``line_no, kind, field,
reason, raw``) to a hidden file next to its target, then renames it into place from the session's
``after_commit`` hook of the root transaction; when that transaction ends any other way (an exception,
a failed commit, a rollback, a closed session) the hidden file is deleted. A savepoint's commit does not
count: only the outermost transaction makes the import real.
"""

from __future__ import annotations

import csv
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from domain.customers.parsing import Reject

log = logging.getLogger(__name__)

REJECT_COLUMNS = ("line_no", "kind", "field", "reason", "raw")


def default_reject_path(path: str | Path, instance_dir: str | Path = "instance") -> Path:
    return Path(instance_dir) / "rejects" / f"{Path(path).name}.rejects.csv"


def write_rejects(target: Path, rejects: Iterable[Reject]) -> None:
    """Write the reject CSV at once (no transaction): a reader never sees half a file."""
    partial = _write_aside(target, rejects)
    os.replace(partial, target)


def publish_rejects_on_commit(session: Session, target: Path, rejects: Iterable[Reject]) -> None:
    """Write the reject CSV aside now (``rejects`` is read once, in order); move it to ``target`` when the
    session's transaction commits."""
    root = session.get_transaction()
    if root is None:  # no transaction to wait for: the import wrote nothing
        write_rejects(target, rejects)
        return
    partial = _write_aside(target, rejects)
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        # Listeners stay for the session's life (one pair per session): removing one while SQLAlchemy
        # dispatches the event is not allowed.
        event.listen(session, "after_commit", _on_commit)
        event.listen(session, "after_transaction_end", _on_end)
    pending.append(_Pending(root, partial, target))


_PENDING = "giftrec.pending_rejects"


@dataclass
class _Pending:
    root: SessionTransaction
    partial: Path
    target: Path
    moved: bool = False


def _on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's commit: the import is not real yet
    current = session.get_transaction()
    for item in session.info.get(_PENDING, []):
        if item.root is current and not item.moved:
            os.replace(item.partial, item.target)
            item.moved = True


def _on_end(session: Session, transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    for item in [p for p in pending if p.root is transaction]:
        pending.remove(item)
        if not item.moved:
            item.partial.unlink(missing_ok=True)
            log.info("import rolled back: reject file %s not written", item.target)


def _write_aside(target: Path, rejects: Iterable[Reject]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(REJECT_COLUMNS)
            for r in rejects:
                writer.writerow((r.line_no, r.kind, r.field, r.reason, r.raw))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial
