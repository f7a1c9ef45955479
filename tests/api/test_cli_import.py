"""`giftrec import orders` in each file format, through the command line."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.cli import cli
from domain.models import Customer, Order, OrderLine

DATA = Path(__file__).resolve().parents[1] / "data"


def test_a_complete_journey_file_imports_from_the_command_line(  # type: ignore[no-untyped-def]
    runner, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.csv"
    args = ["import", "orders", str(DATA / "complete_journey_rows.csv"), "--format", "complete-journey"]
    result = runner.invoke(cli, [*args, "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(OrderLine)) == 8
        assert session.scalar(select(func.count()).select_from(Order)) == 7
        assert sorted(session.scalars(select(Customer.external_id))) == ["900", "906"]
    assert len(rejects.read_text("utf-8").splitlines()) == 1 + 2  # header, the two rejected lines


def test_an_unknown_format_is_refused_with_the_formats_listed(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(cli, ["import", "orders", str(DATA / "generic_orders.csv"), "--format", "parquet"])
    assert result.exit_code == 2 and "complete-journey" in result.output
