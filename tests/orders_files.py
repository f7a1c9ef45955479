"""Small order files written for a test, in the generic format."""

from __future__ import annotations

from pathlib import Path


def three_customers_file(tmp_path: Path) -> Path:
    """Three customers of a generic file, cut at 2011-02-15 by a 15-day test window: "a" repeats x and
    discovers y after the cut, "b" repeats x, "c" buys nothing after it."""
    rows = [
        ("a", "o1", "x", "2011-01-01T10:00:00"),
        ("a", "o2", "x", "2011-01-15T10:00:00"),
        ("b", "o3", "x", "2011-01-16T10:00:00"),
        ("b", "o4", "y", "2011-01-17T10:00:00"),
        ("c", "o5", "y", "2011-01-20T10:00:00"),
        ("c", "o6", "x", "2011-01-21T10:00:00"),
        ("a", "o7", "x", "2011-02-20T10:00:00"),
        ("a", "o8", "y", "2011-03-01T10:00:00"),
        ("b", "o9", "x", "2011-03-02T10:00:00"),
    ]
    path = tmp_path / "orders.csv"
    lines = ["customer_id,order_id,sku,quantity,unit_price,ordered_at"]
    lines += [f"{c},{o},{s},1,9.99,{t}" for c, o, s, t in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
