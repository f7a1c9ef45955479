"""The reject file of an import: written aside during the import, moved into place when it commits.

An import runs in the caller's transaction, so the rows it rejected are only true of the database once
that transaction commits. :func:`publish_rejects_on_commit` writes the CSV (``line_no, kind, field,
reason, raw``) to a hidden file next to its target, then renames it into place from the session's
``after_commit`` hook of the root transaction; when that transaction ends any other way (an exception,
a failed commit, a rollback, a closed session) the hidden file is deleted. A savepoint's commit does not
count: only the outermost transaction makes the import real.

A process killed between writing the hidden file and its commit (``kill -9``, a lost host) cannot delete
it: :func:`remove_stale_partials`, called by the next import of the same target, does. Each hidden file is
held by its import until it is moved or deleted (:mod:`domain.leftovers`), so one an import of the same
file running at the same time still holds is left alone.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from domain.customers.parsing import Reject
from domain.leftovers import Held, hold_new, remove_if_stale

log = logging.getLogger(__name__)

REJECT_COLUMNS = ("line_no", "kind", "field", "reason", "raw")


def default_reject_path(path: str | Path, instance_dir: str | Path = "instance") -> Path:
    return Path(instance_dir) / "rejects" / f"{Path(path).name}.rejects.csv"


def write_rejects(target: Path, rejects: Iterable[Reject]) -> None:
    """Write the reject CSV at once (no transaction): a reader never sees half a file."""
    aside = _write_aside(target, rejects)
    try:
        os.replace(aside.path, target)
    finally:
        aside.release()


def remove_stale_partials(target: Path) -> list[Path]:
    """Delete the hidden files of ``target`` that no live import holds (left by a killed one); returns
    them. Those an import running at the same time is writing or waiting to publish are left alone."""
    names = glob.glob(f".{glob.escape(target.name)}.*.partial", root_dir=target.parent)
    removed = [target.parent / name for name in names if remove_if_stale(target.parent / name)]
    if removed:
        log.warning("removed %d reject file(s) left by a killed import: %s", len(removed), removed)
    return removed


def publish_rejects_on_commit(session: Session, target: Path, rejects: Iterable[Reject]) -> None:
    """Write the reject CSV aside now (``rejects`` is read once, in order); move it to ``target`` when the
    session's transaction commits."""
    root = session.get_transaction()
    if root is None:  # no transaction to wait for: the import wrote nothing
        write_rejects(target, rejects)
        return
    aside = _write_aside(target, rejects)
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        # Listeners stay for the session's life (one pair per session): removing one while SQLAlchemy
        # dispatches the event is not allowed.
        event.listen(session, "after_commit", _on_commit)
        event.listen(session, "after_transaction_end", _on_end)
    pending.append(_Pending(root, aside, target))


_PENDING = "giftrec.pending_rejects"


@dataclass
class _Pending:
    root: SessionTransaction
    aside: Held
    target: Path
    moved: bool = False


def _on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's commit: the import is not real yet
    current = session.get_transaction()
    for item in session.info.get(_PENDING, []):
        if item.root is current and not item.moved:
            try:
                os.replace(item.aside.path, item.target)
                item.moved = True
            finally:
                item.aside.release()


def _on_end(session: Session, transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    for item in [p for p in pending if p.root is transaction]:
        pending.remove(item)
        if not item.moved:
            item.aside.path.unlink(missing_ok=True)
            item.aside.release()
            log.info("import rolled back: reject file %s not written", item.target)


def _write_aside(target: Path, rejects: Iterable[Reject]) -> Held:
    """Write the CSV to a new hidden file next to ``target``, held until it is moved or deleted."""
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = hold_new(lambda: _new_partial(target))
    try:
        with aside.path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(REJECT_COLUMNS)
            for r in rejects:
                writer.writerow((r.line_no, r.kind, r.field, r.reason, r.raw))
    except BaseException:
        aside.path.unlink(missing_ok=True)
        aside.release()
        raise
    return aside


def _new_partial(target: Path) -> Path:
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    partial.touch(exist_ok=False)
    return partial
