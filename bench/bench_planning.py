"""Time selection planning: N customers with M important dates (seeded) in a temporary SQLite database.

Usage (from the repository root)::

    timeout 1800 .venv/bin/python bench/bench_planning.py [--customers 100000] [--dates 300000]
        [--day 2011-03-01] [--no-model]

Generates a catalogue, two years of orders, recipients with important dates (some 29 February, one-off,
stopped, with their own lead time), customers in a dozen time zones (5% VIP) and opt-ins to 8 March for
10% of them (all generated, seeded), trains the configured model on the orders as the nightly
``train_model`` job would (so planning scores collaborative picks; ``--no-model`` leaves it out), then
runs ``plan_due_selections`` for `--day` at 06:00 UTC (the first run ever: it also
catches up every reminder of the past lead window), then for the next day (a steady-state day), each
in its own transaction, and prints a table. Nothing is timed during generation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select  # noqa: E402

import domain.models as m  # noqa: E402
from bench._common import machine_line  # noqa: E402
from config import load_settings  # noqa: E402
from domain import schema  # noqa: E402
from domain.db import make_engine, make_session_factory, session_scope  # noqa: E402
from domain.reminders.selections import plan_due_selections  # noqa: E402
from domain.serving.training import train_model  # noqa: E402

ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Moscow",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Asia/Dubai",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Honolulu",
    "Asia/Kolkata",
]
WORDS = "heart candle garden tea vintage silver rose lantern wooden glass jewel scarf wine book clock".split()
INTERESTS = WORDS + ["cooking", "travel", "music", "golf"]
KINDS = ["birthday", "wedding_anniversary", "name_day", "company_anniversary", "custom"]


def _chunked_insert(session, model, rows, size=20_000):  # type: ignore[no-untyped-def]
    for start in range(0, len(rows), size):
        session.execute(insert(model), rows[start : start + size])


def generate(session, rng: random.Random, n_customers: int, n_dates: int, n_products: int, day: dt.date):  # type: ignore[no-untyped-def]
    now = dt.datetime(2011, 1, 1)
    session.execute(
        insert(m.User), [{"id": 1, "email": "am@example.com", "name": "AM", "password_hash": "x"}]
    )
    _chunked_insert(
        session,
        m.Product,
        [
            {
                "id": i + 1,
                "sku": f"SKU{i:06d}",
                "title": " ".join(rng.sample(WORDS, 3)).upper(),
                "category": f"category-{i % 30}",
                "price": round(rng.lognormvariate(3.0, 0.9), 2) + 0.5,
                "is_active": rng.random() > 0.03,
                "in_stock": rng.random() > 0.05,
                "delivery_days": rng.randint(1, 5),
                "tags": rng.sample(["for-her", "for-him", "kids", "luxury", "eco"], 2),
                "created_at": now,
                "updated_at": now,
            }
            for i in range(n_products)
        ],
    )
    _chunked_insert(
        session,
        m.Customer,
        [
            {
                "id": i + 1,
                "external_id": f"C{i:07d}",
                "time_zone": rng.choice(ZONES),
                "is_vip": rng.random() < 0.05,
                "account_manager_id": 1,
                "reminder_lead_days": 10 if rng.random() < 0.03 else None,
                "email_consent": True,
                "created_at": now,
            }
            for i in range(n_customers)
        ],
    )
    n_recipients = max(1, n_dates * 2 // 3)
    _chunked_insert(
        session,
        m.Recipient,
        [
            {
                "id": i + 1,
                "customer_id": (i % n_customers) + 1,
                "name": "R",
                "relationship_": "friend",
                "gender": rng.choice(["female", "male", None]),
                "interests": rng.sample(INTERESTS, 2),
                "budget_min": 20 if rng.random() < 0.1 else None,
                "budget_max": 80 if rng.random() < 0.1 else None,
                "created_at": now,
            }
            for i in range(n_recipients)
        ],
    )
    dates = []
    for i in range(n_dates):
        once = rng.random() < 0.05
        month, dom = (2, 29) if rng.random() < 0.004 else (rng.randint(1, 12), rng.randint(1, 28))
        dates.append(
            {
                "id": i + 1,
                "recipient_id": (i % n_recipients) + 1,
                "kind": rng.choice(KINDS),
                "month": month,
                "day": dom,
                "year": day.year if once else None,
                "recurrence": "once" if once else "yearly",
                "feb29_rule": rng.choice(["feb28", "mar1"]),
                "lead_days": 3 if rng.random() < 0.02 else None,
                "is_stopped": rng.random() < 0.02,
                "created_at": now,
            }
        )
    _chunked_insert(session, m.ImportantDate, dates)
    _chunked_insert(
        session,
        m.OccasionOptIn,
        [
            {"customer_id": c, "occasion_code": "march_8", "created_at": now}
            for c in rng.sample(range(1, n_customers + 1), n_customers // 10)
        ],
    )
    orders, lines = [], []
    start = dt.datetime.combine(day, dt.time()) - dt.timedelta(days=730)
    for o in range(n_customers):
        orders.append(
            {
                "id": o + 1,
                "external_id": f"O{o:08d}",
                "customer_id": rng.randint(1, n_customers),
                "kind": "sale",
                "ordered_at": start + dt.timedelta(minutes=rng.randint(0, 730 * 1440 - 1)),
                "created_at": now,
            }
        )
        for line_no, pid in enumerate(rng.sample(range(1, n_products + 1), 3), start=1):
            lines.append(
                {
                    "order_id": o + 1,
                    "line_no": line_no,
                    "product_id": pid,
                    "quantity": rng.randint(1, 4),
                    "unit_price": round(rng.lognormvariate(3.0, 0.9), 2) + 0.5,
                }
            )
    _chunked_insert(session, m.Order, orders)
    _chunked_insert(session, m.OrderLine, lines)
    return len(orders), len(lines)


def temporary_database(tmp: str):  # type: ignore[no-untyped-def]
    """A migrated SQLite database in `tmp`: (engine, session factory, settings with artifacts in `tmp`)."""
    url = f"sqlite:///{Path(tmp) / 'bench.db'}"
    schema.upgrade(url)
    engine = make_engine(url)
    settings = load_settings(environ={}, database={"url": url}, model={"artifact_dir": tmp})
    return engine, make_session_factory(engine), settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--dates", type=int, default=300_000)
    parser.add_argument("--products", type=int, default=3_000)
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2011, 3, 1))
    parser.add_argument("--seed", type=int, default=2011)
    parser.add_argument(
        "--no-model", action="store_true", help="plan without a trained model (no collaborative scores)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        engine, sessions, settings = temporary_database(tmp)
        t0 = time.perf_counter()
        with session_scope(sessions) as s:
            n_orders, n_lines = generate(
                s, random.Random(args.seed), args.customers, args.dates, args.products, args.day
            )
        print(
            f"generated {args.customers:,} customers, {args.dates:,} dates, {args.products:,} products, "
            f"{n_orders:,} orders / {n_lines:,} lines in {time.perf_counter() - t0:.1f} s"
        )
        if not args.no_model:
            t0, c0 = time.perf_counter(), time.process_time()
            with session_scope(sessions) as s:
                run = train_model(s, settings, now=dt.datetime.combine(args.day, dt.time(5, 0)))
            print(
                f"trained {settings.model.algorithm} ({run.status}, run {run.id}) as the nightly job would, "
                f"in {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU: planning "
                "scores its collaborative picks"
            )
        print(machine_line())
        header = f"{'run':<22}{'customers':>10}{'dates':>10}{'due':>8}{'selections':>12}{'picks':>9}"
        print(header + f"{'seconds':>10}{'CPU s':>8}{'selections/s':>14}")
        for label, day in (("first run (catch-up)", args.day), ("next day", args.day + dt.timedelta(days=1))):
            now = dt.datetime.combine(day, dt.time(6, 0), tzinfo=dt.UTC)
            started, cpu = time.perf_counter(), time.process_time()
            with session_scope(sessions) as s:
                summary = plan_due_selections(s, settings, now)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rate = summary.selections / seconds
            print(
                f"{label + ' ' + day.isoformat():<22}{args.customers:>10,}{args.dates:>10,}{summary.due:>8,}"
                f"{summary.selections:>12,}{summary.picks:>9,}{seconds:>10.2f}{cpu:>8.2f}{rate:>14,.0f}"
            )
        with session_scope(sessions) as s:
            by_source = s.execute(
                select(m.SelectionPick.source, func.count()).group_by(m.SelectionPick.source)
            ).all()
            with_model = s.scalar(
                select(func.count())
                .select_from(m.GiftSelection)
                .where(m.GiftSelection.model_run_id.is_not(None))
            )
        print(
            "picks by source: "
            + ", ".join(f"{src} {n:,}" for src, n in sorted(by_source))
            + f"; selections scored with a model run: {with_model:,}"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
