"""Column helpers shared by the model modules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Numeric, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import mapped_column


def utcnow() -> dt.datetime:
    """Naive UTC now: every *_at column stores naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def naive_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as naive UTC: an aware time is converted, a naive one is taken to be UTC already."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Naive UTC datetimes on every backend; aware values are converted to UTC on the way in."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else naive_utc(value)


Money = Annotated[Decimal, mapped_column(Numeric(12, 2))]
CreatedAt = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow, nullable=False)]
JsonDict = Annotated[dict[str, Any], mapped_column(JSON, default=dict, nullable=False)]
JsonList = Annotated[list[Any], mapped_column(JSON, default=list, nullable=False)]
Str20 = Annotated[str, mapped_column(String(20))]


def one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    """A CHECK that ``column`` holds one of ``values`` (portable across SQLite and PostgreSQL)."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)
