"""Generated shops for offline evaluation: a luxury gift shop and a weekly-repeat shop, from one model.

The public files differ from the shops giftrec is for (the UCI file is a wholesaler; The Complete Journey a
grocery chain), so two profiles are generated from a documented model, seeded, in the generic order
format (``bench.shop_data generate``). Nothing here touches the database.

The model, per customer ``c`` (all draws from one ``numpy.random.Generator``):

- **Tastes.** Items belong to one of ``styles`` styles; a customer's taste is ``Dirichlet(taste_alpha)``
  over the styles (a small alpha: a few styles each). This is the structure collaborative filtering can
  find and popularity cannot.
- **When.** The customer arrives on a uniform day of the period and orders then; later orders follow a
  Poisson process of rate ``Gamma(rate_shape, orders_per_year / rate_shape) / 365`` per day, modulated by
  the season (Gaussian peaks of ``peaks``: Christmas, Valentine's day, Mother's day for gifts) and, with
  ``occasion_weight``, by one personal yearly occasion (a partner's birthday) of the customer; after each
  order the customer leaves with probability ``dropout`` (the "buy till you die" story of BG/NBD).
- **What.** An order has ``1 + Poisson(lines_per_order - 1)`` distinct items. Each line re-buys one of the
  customer's earlier items (in proportion to how often) with probability ``repeat_share`` once there is
  one; otherwise it is a new item: with probability ``gift_share`` for someone else (a fresh random
  taste), else from the customer's own taste; within the style, items are drawn by a Zipf (s = 1)
  popularity times a launch boost (an item launched during the period sells ``1 + launch_boost`` times
  more in its first weeks, decaying with a 45-day time constant; unlaunched items do not sell).
- **Quantities, prices, returns.** Quantity ``1 + Poisson(extra_units)``; each item has a log-normal price
  around ``price_median``; a line is returned (a later order with a negative quantity) with probability
  ``return_share``; ``guest_share`` of orders are guest orders (no customer: bestsellers only).

``luxury``: few orders per client (about 1.2 a year, most clients buy once or twice), long gaps, gifts
(a third of the new items are for someone else), strong December and February peaks, expensive items
that are rarely bought again. ``weekly``: about 45 orders a year of 8 lines, two thirds of them re-buys of
the customer's staples, no seasonal peak, cheap items.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["PROFILES", "GeneratedShop", "ShopProfile", "generate_shop", "write_generic_csv"]


@dataclass(frozen=True)
class ShopProfile:
    """The parameters of the generative model (see the module docstring)."""

    name: str
    customers: int
    items: int
    styles: int
    days: int
    start: dt.date
    orders_per_year: float
    rate_shape: float
    dropout: float
    lines_per_order: float
    repeat_share: float
    gift_share: float
    taste_alpha: float
    launch_share: float
    launch_boost: float
    #: (month, day, height): seasonal peaks of the order rate, 10 days wide.
    peaks: tuple[tuple[int, int, float], ...]
    occasion_weight: float
    extra_units: float
    price_median: float
    price_sigma: float
    return_share: float
    guest_share: float


PROFILES: dict[str, ShopProfile] = {
    "luxury": ShopProfile(
        name="luxury",
        customers=30_000,
        items=1_200,
        styles=24,
        days=730,
        start=dt.date(2024, 1, 1),
        orders_per_year=1.2,
        rate_shape=0.8,
        dropout=0.25,
        lines_per_order=1.3,
        repeat_share=0.05,
        gift_share=0.35,
        taste_alpha=0.15,
        launch_share=0.3,
        launch_boost=3.0,
        peaks=((12, 15, 4.0), (2, 10, 2.0), (5, 8, 1.5)),
        occasion_weight=3.0,
        extra_units=0.05,
        price_median=220.0,
        price_sigma=0.7,
        return_share=0.04,
        guest_share=0.1,
    ),
    "weekly": ShopProfile(
        name="weekly",
        customers=1_200,
        items=3_000,
        styles=30,
        days=365,
        start=dt.date(2025, 1, 1),
        orders_per_year=45.0,
        rate_shape=3.0,
        dropout=0.005,
        lines_per_order=8.0,
        repeat_share=0.65,
        gift_share=0.0,
        taste_alpha=0.2,
        launch_share=0.15,
        launch_boost=2.0,
        peaks=((12, 20, 0.5),),
        occasion_weight=0.0,
        extra_units=0.6,
        price_median=4.0,
        price_sigma=0.6,
        return_share=0.005,
        guest_share=0.03,
    ),
}

GENERIC_COLUMNS = ("customer_id", "order_id", "sku", "quantity", "unit_price", "ordered_at", "category")
#: Width (days) of a seasonal or personal peak, and the time constant of a launch boost.
PEAK_DAYS = 10.0
LAUNCH_DAYS = 45.0


@dataclass(frozen=True)
class GeneratedShop:
    """Order lines as parallel lists (one entry per line), and the profile that made them."""

    profile: ShopProfile
    customer_ids: list[str]
    order_ids: list[str]
    skus: list[str]
    quantities: list[int]
    prices: list[float]
    ordered_at: list[dt.datetime]
    styles: list[int]

    def __len__(self) -> int:
        return len(self.order_ids)

    def orders_per_customer(self) -> Counter[str]:
        """Sale orders per (non-guest) customer."""
        seen = {(c, o) for c, o in zip(self.customer_ids, self.order_ids, strict=True) if c}
        return Counter(c for c, o in seen if not o.startswith("R"))

    def summary(self) -> str:
        per = np.array(list(self.orders_per_customer().values()))
        return (
            f"{self.profile.name}: {len(self):,} lines, {len(set(self.order_ids)):,} orders, {per.size:,} "
            f"customers; orders per customer mean {per.mean():.2f}, median {np.median(per):.0f}, "
            f"one order only {np.mean(per == 1):.0%}"
        )


def _season(profile: ShopProfile, days: np.ndarray, start: dt.date) -> np.ndarray:
    """Relative order rate per day of the period: 1 plus the seasonal peaks."""
    rate = np.ones(days.size)
    dates = [start + dt.timedelta(days=int(d)) for d in days]
    doy = np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)
    for month, day, height in profile.peaks:
        peak = dt.date(2001, month, day).timetuple().tm_yday
        gap = np.abs(doy - peak)
        gap = np.minimum(gap, 365 - gap)
        rate += height * np.exp(-0.5 * (gap / PEAK_DAYS) ** 2)
    return rate


def generate_shop(profile: ShopProfile, *, customers: int | None = None, seed: int = 17) -> GeneratedShop:
    """Order lines of a shop drawn from `profile` (``customers`` overrides its number), reproducibly."""
    if customers is not None:
        profile = replace(profile, customers=customers)
    rng = np.random.default_rng(seed)
    n_items, n_styles, n_days = profile.items, profile.styles, profile.days
    style_of = rng.integers(0, n_styles, n_items)
    zipf = 1.0 / rng.permutation(np.arange(1, n_items + 1))
    price = np.round(profile.price_median * rng.lognormal(0.0, profile.price_sigma, n_items), 2).clip(0.5)
    launched = rng.random(n_items) < profile.launch_share
    launch_day = np.where(launched, rng.integers(0, n_days, n_items), -10_000)
    # Item weights per week of the period (launches move them), as a cumulative table per style.
    weeks = np.arange(0, n_days + 7, 7)
    age = weeks[:, None] - launch_day[None, :]
    weight = zipf[None, :] * np.where(age < 0, 0.0, 1.0 + profile.launch_boost * np.exp(-age / LAUNCH_DAYS))
    members = [np.flatnonzero(style_of == s) for s in range(n_styles)]
    cdf = [np.cumsum(weight[:, m], axis=1) for m in members]

    def new_item(style: int, day: int) -> int:
        table = cdf[style][min(day // 7, len(weeks) - 1)]
        if table[-1] <= 0:  # nothing of this style on sale yet: any item on sale
            style = int(rng.integers(0, n_styles))
            return new_item(style, day) if cdf[style][min(day // 7, len(weeks) - 1)][-1] > 0 else 0
        return int(members[style][np.searchsorted(table, rng.random() * table[-1], side="right")])

    season = _season(profile, np.arange(n_days), profile.start)
    out = GeneratedShop(profile, [], [], [], [], [], [], [])
    order_no = 0

    def add(customer: str, order: str, item: int, qty: int, day: int, minute: int) -> None:
        at = dt.datetime.combine(profile.start, dt.time(9)) + dt.timedelta(days=day, minutes=minute)
        out.customer_ids.append(customer)
        out.order_ids.append(order)
        out.skus.append(f"SKU-{item:05d}")
        out.quantities.append(qty)
        out.prices.append(float(price[item]))
        out.ordered_at.append(at)
        out.styles.append(int(style_of[item]))

    for c in range(profile.customers):
        taste = rng.dirichlet(np.full(n_styles, profile.taste_alpha))
        rate = rng.gamma(profile.rate_shape, profile.orders_per_year / profile.rate_shape) / 365.0
        first = int(rng.integers(0, n_days))
        intensity = season[first:].copy()
        if profile.occasion_weight:
            occasion = int(rng.integers(0, 365))
            gap = np.abs((np.arange(first, n_days) - occasion) % 365)
            gap = np.minimum(gap, 365 - gap)
            intensity += profile.occasion_weight * np.exp(-0.5 * (gap / PEAK_DAYS) ** 2)
        expected = rate * intensity.sum()
        later = np.sort(
            first + rng.choice(intensity.size, rng.poisson(expected), p=intensity / intensity.sum())
        )
        days = [first, *[int(d) for d in later if d > first]]
        guest = rng.random() < profile.guest_share
        customer = "" if guest else f"C{c:06d}"
        history: list[int] = []
        for day in days:
            order_no += 1
            order = f"S{order_no:07d}"
            minute = int(rng.integers(0, 600))
            items: list[int] = []
            for _ in range(1 + rng.poisson(profile.lines_per_order - 1)):
                if history and rng.random() < profile.repeat_share:
                    item = history[int(rng.integers(0, len(history)))]
                else:
                    gift = rng.random() < profile.gift_share
                    mix = rng.dirichlet(np.full(n_styles, 0.3)) if gift else taste
                    item = new_item(int(rng.choice(n_styles, p=mix)), day)
                if item not in items:
                    items.append(item)
            for item in items:
                qty = 1 + int(rng.poisson(profile.extra_units))
                add(customer, order, item, qty, day, minute)
                if rng.random() < profile.return_share and day + 14 < n_days and customer:
                    add(customer, f"R{order_no:07d}", item, -qty, day + 14, minute)
            history.extend(items)
            if guest or rng.random() < profile.dropout:
                break
    return out


def write_generic_csv(shop: GeneratedShop, path: Path) -> None:
    """The lines in giftrec's generic order format (gzip when `path` ends in ``.gz``), in time order."""
    order = sorted(range(len(shop)), key=lambda i: (shop.ordered_at[i], shop.order_ids[i]))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(GENERIC_COLUMNS)
        for i in order:
            writer.writerow(
                [
                    shop.customer_ids[i],
                    shop.order_ids[i],
                    shop.skus[i],
                    shop.quantities[i],
                    f"{shop.prices[i]:.2f}",
                    shop.ordered_at[i].isoformat(),
                    f"style {shop.styles[i]}",
                ]
            )
