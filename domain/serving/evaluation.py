"""Offline evaluation of a data file: read it with the import's cleaning rules, run recommender.evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domain.customers.sources import Format, OrderLine, read_order_lines
from domain.errors import InvalidInput
from recommender.evaluation import Candidate, EvaluationResult, OrderHistory, evaluate, format_table

__all__ = ["evaluate_command", "evaluate_file", "history_from_lines"]


def history_from_lines(lines: Sequence[OrderLine]) -> OrderHistory:
    """Order lines (from `domain.customers.sources.read_order_lines`) as arrays; guests get the empty
    customer id."""
    n = len(lines)
    return OrderHistory(
        user_ids=np.array([line.customer_id or "" for line in lines], dtype=str) if n else np.array([], str),
        item_ids=np.array([line.sku for line in lines], dtype=str) if n else np.array([], str),
        quantities=np.fromiter((line.quantity for line in lines), dtype=np.float64, count=n),
        timestamps=np.array([line.ordered_at for line in lines], dtype="datetime64[s]"),
        is_return=np.fromiter((line.is_return for line in lines), dtype=bool, count=n),
    )


def evaluate_file(
    data: str | Path,
    fmt: Format,
    *,
    test_days: int = 30,
    k: int = 10,
    seed: int = 42,
    grids: Mapping[str, Sequence[Candidate]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Read `data` (raises `domain.errors.InvalidInput` for an unusable file) and evaluate every model.

    Rejected rows are left out exactly as `giftrec import` leaves them out.
    """
    parsed = read_order_lines(data, fmt)
    if progress is not None:
        counts = parsed.counts
        progress(
            f"read {counts.lines} lines ({counts.rejected} rejected, {counts.non_product_rows} non-product)"
        )
    return evaluate(
        history_from_lines(parsed.lines), test_days=test_days, k=k, seed=seed, grids=grids, progress=progress
    )


def evaluate_command(
    data: str | Path,
    fmt: Format,
    test_days: int = 30,
    k: int = 10,
    as_json: bool = False,
    *,
    grids: Mapping[str, Sequence[Candidate]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> str | dict[str, Any]:
    """What ``giftrec evaluate`` prints: the text table, or the JSON object when `as_json`.

    JSON shape: ``{"dataset", "cut", "k", "default", "tasks": {"next_purchases": {name: {"recall@k", ...,
    "customers"}}, "discovery": {...}}}``; the dataset is the file's name. `grids` narrows the search
    space (tests); the default is `recommender.evaluation.DEFAULT_GRIDS`.
    """
    if test_days <= 0:
        raise InvalidInput("test_days", f"must be a positive number of days, got {test_days}")
    if k <= 0:
        raise InvalidInput("k", f"must be a positive list length, got {k}")
    result = evaluate_file(data, fmt, test_days=test_days, k=k, grids=grids, progress=progress)
    dataset = Path(data).name
    return result.to_json(dataset) if as_json else format_table(result, dataset)
