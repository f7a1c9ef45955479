"""The generated shops have the profiles they claim: a luxury gift shop and a weekly-repeat shop."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from domain.customers.sources import read_order_lines
from domain.demo.shops import PROFILES, GeneratedShop, generate_shop, write_generic_csv


def _habits(shop: GeneratedShop) -> tuple[np.ndarray, float]:
    """Days between a customer's successive orders, and the share of sale lines re-buying their own item."""
    days: dict[str, set[object]] = defaultdict(set)
    seen: dict[str, set[str]] = defaultdict(set)
    repeats = lines = 0
    for customer, sku, qty, at in zip(
        shop.customer_ids, shop.skus, shop.quantities, shop.ordered_at, strict=True
    ):
        if not customer or qty < 0:
            continue
        days[customer].add(at.date())
        lines += 1
        repeats += sku in seen[customer]
        seen[customer].add(sku)
    gaps = [
        (later - earlier).days
        for dates in days.values()
        for earlier, later in zip(sorted(dates), sorted(dates)[1:], strict=False)
    ]
    return np.array(gaps), repeats / lines


def test_the_same_seed_gives_the_same_shop() -> None:
    one = generate_shop(PROFILES["luxury"], customers=300, seed=5)
    assert one == generate_shop(PROFILES["luxury"], customers=300, seed=5)
    assert one != generate_shop(PROFILES["luxury"], customers=300, seed=6)


def test_luxury_clients_order_rarely_with_long_gaps_and_seldom_buy_again() -> None:
    shop = generate_shop(PROFILES["luxury"], customers=3_000, seed=1)
    per_customer = np.array(list(shop.orders_per_customer().values()))
    gaps, rebuys = _habits(shop)
    assert np.median(per_customer) == 1 and per_customer.mean() < 2.5
    assert np.median(gaps) > 60
    assert rebuys < 0.1
    december = np.mean([at.month == 12 for at in shop.ordered_at])
    assert december > 1.5 / 12  # the Christmas peak: half as much again as a month of its own


def test_weekly_customers_come_back_within_days_for_their_staples() -> None:
    shop = generate_shop(PROFILES["weekly"], customers=60, seed=1)
    per_customer = np.array(list(shop.orders_per_customer().values()))
    gaps, rebuys = _habits(shop)
    assert np.median(per_customer) > 10
    assert np.median(gaps) <= 10
    assert rebuys > 0.4


def test_a_generated_shop_reads_as_a_generic_file_without_rejects(tmp_path: Path) -> None:
    shop = generate_shop(PROFILES["luxury"], customers=500, seed=2)
    path = tmp_path / "luxury.csv.gz"
    write_generic_csv(shop, path)
    result = read_order_lines(path, "generic")
    assert result.counts.rejected == 0 and result.counts.lines == len(shop)
    assert result.counts.return_lines == sum(q < 0 for q in shop.quantities) > 0
    assert result.counts.guest_rows == sum(not c for c in shop.customer_ids) > 0
