"""Typed settings: one frozen dataclass per section, defaults inline."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatabaseSettings:
    #: SQLAlchemy URL. The default is a SQLite file under instance/ (relative to the working directory).
    url: str = "sqlite:///instance/giftrec.db"
    #: Log every SQL statement.
    echo: bool = False


@dataclass(frozen=True)
class ModelSettings:
    #: Name of the recommender giftrec trains and serves.
    algorithm: str = "hybrid"
    factors: int = 64
    iterations: int = 15
    #: ALS regularization and confidence scale, as tuned by `giftrec evaluate` (docs/quality.md).
    regularization: float = 0.1
    alpha: float = 2.0
    #: Hybrid blend for picks that may repeat past purchases (the "next purchases" task).
    repeat_weight: float = 1.0
    cf_weight: float = 0.3
    popularity_weight: float = 0.5
    #: Hybrid blend for picks that exclude past purchases (the "discovery" task).
    discovery_cf_weight: float = 1.0
    discovery_popularity_weight: float = 0.4
    #: implicit's own worker threads (0 = all cores). BLAS is always pinned to one thread.
    num_threads: int = 0
    #: implicit switches to CUDA wherever its GPU build finds a device: results would change between machines.
    use_gpu: bool = False
    random_state: int = 42
    #: Artifacts are stored in the database; this folder holds those of runs trained before that (read
    #: on the host that trained them until pruned).
    artifact_dir: str = "instance/models"
    #: How many successful artifacts to keep.
    keep_runs: int = 5
    #: Seconds between checks for a newer model run in serving processes.
    reload_interval: float = 30.0
    #: Share of one core a web process spends ranking a new model's customers while the old model serves
    #: (it sleeps the rest): the swap's burst of work, spread so that the requests beside it barely wait
    #: (docs/performance.md). 1 = as fast as it can; at 0.2 that ranking takes five times as long.
    swap_cpu_share: float = 0.2
    #: Seconds before a serving process tries again a model version that failed to load (a file system
    #: hiccup heals; a corrupt artifact fails again, and the previous run keeps serving meanwhile).
    load_retry_seconds: float = 300.0
    #: `giftrec train --tune`: the validation window (days before the newest interaction) the served
    #: blends are chosen on, the fewest customers buying in it for a choice (else the configured blends
    #: serve, and `giftrec model list` says so), and the item-kNN part's neighbours per item.
    tune_validation_days: int = 30
    tune_min_customers: int = 50
    tune_knn_k: int = 100


@dataclass(frozen=True)
class InteractionSettings:
    weight_purchase: float = 1.0
    weight_cart: float = 0.5
    weight_click: float = 0.25
    weight_view: float = 0.1
    #: Negative feedback: a pick an account manager removed or replaced takes this much (in purchases) off
    #: the customer-product cell in training; below zero the cell means "not wanted" to ALS (docs/quality.md).
    #: 0 turns it off.
    weight_rejected: float = 5.0
    #: lines | none | log1p | sqrt: lines counts each order line once whatever its quantity (what the
    #: offline evaluation chose: wholesalers' quantities drown the signal); the others damp quantities.
    quantity_damping: str = "lines"
    #: Half-life in days of the time decay; 0 turns decay off.
    half_life_days: float = 365.0
    #: Window in days for bestsellers.
    bestseller_days: int = 90
    #: Window in days for new arrivals.
    new_arrival_days: int = 60


@dataclass(frozen=True)
class ImportSettings:
    #: Largest order file `giftrec import orders` reads, in bytes (as stored: compressed for a .gz file).
    max_file_bytes: int = 2_147_483_648
    #: Largest decompressed size of a gzip order file, in bytes: a "gzip bomb" is refused while it is read.
    max_decompressed_bytes: int = 4_294_967_296
    #: Most data rows in one order file (the file is streamed: this bounds the time and disk an import
    #: takes, not its memory).
    max_rows: int = 20_000_000
    #: Data rows parsed and staged at a time: an import's memory grows with this, not with the file.
    chunk_rows: int = 20_000
    #: MiB of SQLite page cache for the import's connection, for its database and for its temporary one
    #: (the staging tables) each; SQLite's sorter (building indexes, ordering) may use as much again. On
    #: SQLite an import's peak memory is about 100 MiB plus three times this, whatever the file's length.
    sqlite_cache_mib: int = 16


@dataclass(frozen=True)
class ApiSettings:
    #: Rate limit per API key, e.g. "1200/minute" or "20/second" (the `limits` library syntax).
    rate_limit: str = "1200/minute"
    #: Storage for rate-limit counters; memory:// is per process.
    rate_limit_storage: str = "memory://"
    #: Seconds a call to a Redis rate-limit storage may take (connecting, then each answer): past it the
    #: request goes on unlimited and /health/ready says "degraded", rather than waiting on a Redis that
    #: accepts connections but never answers.
    rate_limit_storage_timeout: float = 0.5
    #: Seconds of Cache-Control max-age on bestsellers and new arrivals.
    cache_seconds: int = 300
    #: Maximum number of events in one POST /v1/events batch.
    max_batch: int = 1000
    #: Customers whose ranked picks each web worker keeps in memory (about 16 KB each, explanations
    #: included), so that their next request only filters; 0 ranks on every request.
    picks_cache_customers: int = 10000
    #: Customers (most interactions first) whose ranking each web worker makes, with the explanations of
    #: its first 50 products, in a background thread once a model is loaded (about 1.5 KB each), so that
    #: their first request only filters, as a kept ranking's does; 0 makes none.
    precomputed_customers: int = 100000
    #: Seconds at most a serving process answers "not ready" (/health/ready 503, its model check
    #: "warming") after its first load while it makes those rankings: a load balancer sends it requests
    #: once they are made, not while every first request ranks beside them. 0: ready at once.
    warm_up_seconds: float = 60.0
    #: Answer well-formed GET /v1/customers/{id}/recommendations requests before Flask's request machinery
    #: (the same responses, at a little over half the server CPU); false sends every request through Flask.
    fast_path: bool = True


@dataclass(frozen=True)
class MailSettings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    #: none | starttls | ssl
    smtp_security: str = "none"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout: float = 10.0
    from_address: str = "giftrec <reminders@example.com>"
    #: Attempts of a message without a deadline; a reminder is retried until its deadline instead.
    max_attempts: int = 5
    #: First retry delay in seconds; doubles each attempt, up to backoff_max_seconds. The same back-off
    #: spaces the probes of a paused queue.
    backoff_seconds: float = 60.0
    backoff_max_seconds: float = 1800.0
    #: A reminder's deadline is local midnight of its occasion minus this many hours: past it the email is
    #: cancelled, never sent late.
    deadline_margin_hours: float = 0.0
    #: At most one marketing email per customer in this many days (0 = no cap).
    frequency_cap_days: int = 3


@dataclass(frozen=True)
class ReminderSettings:
    lead_days: int = 7
    #: A missed reminder is still sent while the occasion is at least this many days away.
    catch_up_min_days: int = 2
    #: VIP selections wait for their account manager until this many days before the date.
    vip_cutoff_days: int = 3
    #: send | skip: what happens to a VIP selection nobody reviewed by the cut-off.
    vip_cutoff_policy: str = "send"
    #: The managers' Today page lists a client as lapsing after this many days without a purchase, or
    #: without a logged contact (call, message, meeting).
    lapsing_purchase_days: int = 90
    lapsing_contact_days: int = 30
    #: Days during which something the customer bought is not suggested again.
    recent_purchase_days: int = 90
    picks_per_tier: int = 3
    #: An order of a picked product within this many days after the reminder went out marks the
    #: selection purchased and records the gift for its recipient (never suggested to them again).
    attribution_days: int = 30
    #: Store-wide occasions customers can opt into: built-in codes, `mothers_day=uk|us|ru`, `code=MM-DD`.
    calendar: str = "new_year,valentines_day,feb_23,march_8,mothers_day=uk,fathers_day,christmas"


@dataclass(frozen=True)
class SchedulerSettings:
    train_cron: str = "0 3 * * *"
    #: Choosing the served blends (`giftrec train --tune`): weekly; the nightly training re-fits the choice.
    tune_cron: str = "0 2 * * 0"
    #: The next-purchase ranker (`giftrec train --next-purchase`): nightly, after the model's training.
    train_next_purchase_cron: str = "0 4 * * *"
    plan_cron: str = "0 6 * * *"
    send_cron: str = "*/5 * * * *"
    lifecycle_cron: str = "30 3 * * *"
    #: Seconds a scheduler's database lock stays valid without renewal.
    lock_ttl: int = 120
    timezone: str = "UTC"
    #: Seconds the scheduler gives its running jobs, after SIGTERM, to finish their current step (the
    #: message being sent); a job still running then is abandoned (lease released, exit status 1).
    stop_timeout: float = 60.0


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 5000
    #: Secret for sessions and signed links; generated into instance/ when empty.
    secret_key: str = ""
    #: Public base URL used in emails and click links.
    base_url: str = "http://127.0.0.1:5000"
    instance_dir: str = "instance"
    #: Seconds a thread of a web process under gunicorn may keep the GIL while another waits for it
    #: (sys.setswitchinterval; Python's default is 0.005). A request waits up to this long each time it
    #: needs the GIL back (after every database or Redis call) while a background thread computes: the
    #: model store's checks, the rebuild and the rankings made after a model swap.
    switch_interval: float = 0.005


@dataclass(frozen=True)
class DemoSettings:
    #: Serve the demo storefront page (/demo), which shows a real customer's picks: on for `make run`, off
    #: in production.
    enabled: bool = False
    #: API key that `make run` creates for the demo storefront ("" = generate one and keep it in instance/).
    api_key: str = ""
    #: Seed of the generated demo recipients and dates.
    seed: int = 20111209


#: The default segment table: the widely used R x F grid (every one of the 25 recency x frequency cells is
#: named, so nobody lands in "others"), with the segment names of the R package `rfm`; "lost" is the
#: grid's oldest hibernating row (R 1). See docs/lifecycle.md for the source and the alternatives.
DEFAULT_SEGMENTS = (
    "champions: r 5, f 4-5; "
    "loyal: r 3-4, f 4-5; "
    "potential_loyalist: r 4-5, f 2-3; "
    "new: r 5, f 1; "
    "promising: r 4, f 1; "
    "need_attention: r 3, f 3; "
    "about_to_sleep: r 3, f 1-2; "
    "cant_lose: r 1-2, f 5; "
    "at_risk: r 1-2, f 3-4; "
    "lost: r 1, f 1-2; "
    "hibernating: r 2, f 1-2"
)

_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_RANGE = re.compile(r"([rfm])\s*(\d)(?:\s*-\s*(\d))?")


def parse_cuts(text: str) -> tuple[float, float, float, float]:
    """Four non-decreasing numbers separated by commas: "30, 90, 180, 365"."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected four numbers separated by commas, got {text!r}") from None
    if len(values) != 4 or any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"expected four non-decreasing numbers separated by commas, got {text!r}")
    return values[0], values[1], values[2], values[3]


def parse_segments(text: str) -> tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], ...]:
    """The ordered rule table "name: r 4-5, f 1, m 2-5; ...": (name, r, f, m) inclusive score ranges, 1-5
    where a dimension is not named. Names are lower-case identifiers; the same name may appear twice (a
    segment that is not a box)."""
    rules = []
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, conditions = part.partition(":")
        name = name.strip()
        if not sep or not _RULE_NAME.fullmatch(name):
            raise ValueError(f"expected 'name: r 4-5, f 1' with a lower-case name, got {part.strip()!r}")
        ranges = {"r": (1, 5), "f": (1, 5), "m": (1, 5)}
        seen = set()
        for condition in conditions.split(","):
            if not condition.strip():
                continue
            match = _RANGE.fullmatch(condition.strip())
            if match is None:
                raise ValueError(f"segment {name}: expected 'r 4-5' or 'f 1', got {condition.strip()!r}")
            dim, low, high = match.group(1), int(match.group(2)), int(match.group(3) or match.group(2))
            if dim in seen or not 1 <= low <= high <= 5:
                raise ValueError(f"segment {name}: {condition.strip()!r} repeats a score or leaves 1-5")
            seen.add(dim)
            ranges[dim] = (low, high)
        rules.append((name, ranges["r"], ranges["f"], ranges["m"]))
    if not rules:
        raise ValueError("the segment table has no rule")
    return tuple(rules)


@dataclass(frozen=True)
class RfmSettings:
    #: fixed | quantile, per dimension. quantile: the data's quintiles (recency: the most recent fifth scores
    #: 5); it collapses when many customers share a value, as frequency does where most bought once.
    recency_scoring: str = "quantile"
    #: Days since the last purchase: up to the first cut scores 5, ..., beyond the fourth 1 (when fixed).
    recency_cuts: str = "30, 90, 180, 365"
    frequency_scoring: str = "fixed"
    #: Purchase days: up to the first cut scores 1, ..., above the fourth 5 (1, 2, 3, 4-5, 6+ purchases).
    frequency_cuts: str = "1, 2, 3, 5"
    monetary_scoring: str = "quantile"
    #: Total spend in the shop's currency: up to the first cut scores 1, ..., above the fourth 5 (when fixed).
    monetary_cuts: str = "100, 250, 500, 1000"
    #: Ordered rules "name: r 4-5, f 1, m 2-5; ...": the first match wins, no match is "others".
    segments: str = DEFAULT_SEGMENTS
    #: Customer lifetime value: days ahead and the yearly discount rate of future spend.
    clv_horizon_days: int = 365
    clv_discount_rate: float = 0.1
    #: Days of segment moves GET /v1/customers/{id}/segment returns.
    history_days: int = 180

    def cuts(self, dimension: str) -> tuple[float, float, float, float]:
        """The fixed cut points of ``recency``, ``frequency`` or ``monetary``."""
        value: str = getattr(self, f"{dimension}_cuts")
        return parse_cuts(value)

    def segment_rules(self) -> tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], ...]:
        return parse_segments(self.segments)


_LIFETIME = re.compile(r"([^:;]+?)\s*:\s*(\d+)\s*-\s*(\d+)")


def parse_lifetimes(text: str) -> tuple[tuple[str, int, int], ...]:
    """Product lifetimes per category "bags: 540-720; wallets: 365-540": (category, first day, last day) of
    the window in which a replacement offer may go, in days after the purchase. Empty = none."""
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        match = _LIFETIME.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"expected 'category: 540-720', got {part.strip()!r}")
        low, high = int(match.group(2)), int(match.group(3))
        if not 0 < low <= high:
            raise ValueError(f"{match.group(1)}: the window must be 0 < first <= last days, got {low}-{high}")
        out.append((match.group(1).strip(), low, high))
    return tuple(out)


def parse_names(text: str) -> tuple[str, ...]:
    """Comma-separated lower-case names ("loyal, champions"); empty = none."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if not _RULE_NAME.fullmatch(name):
            raise ValueError(f"expected lower-case names separated by commas, got {name!r}")
    return names


#: The trigger rules, in the order they are evaluated; each has ``<name>_*`` keys in TriggerSettings.
TRIGGERS = ("replacement", "running_out", "winback", "new_arrivals", "abandoned_cart", "review_request")


@dataclass(frozen=True)
class TriggerSettings:
    """Trigger emails (docs/triggers.md): one rule per trigger, each on/off, with its audience (RFM segments,
    empty = everyone), timing, template and per-customer cooldown in days; then the control groups."""

    #: Master switch: no trigger is evaluated when off.
    enabled: bool = True
    #: replacement: a category's lifetime reached since the customer's last purchase in it.
    replacement_enabled: bool = True
    replacement_audience: str = ""
    #: "category: first-last; ..." days after the last purchase of the category (e.g. bags 540-720).
    replacement_lifetimes: str = "bags: 540-720"
    #: Lifetimes learned from the data: per category, the customers' repurchase intervals within it (the
    #: middle half, quartile to quartile) when at least this many were observed; else the configured one.
    #: 0 = never learn.
    replacement_min_intervals: int = 20
    replacement_template: str = "replacement"
    replacement_cooldown_days: int = 180
    #: running out: the next-purchase model's expected repurchase date minus this many days.
    running_out_enabled: bool = True
    running_out_audience: str = ""
    running_out_days_before: int = 5
    #: Only products the customer has bought on at least this many days (consumables they rebuy).
    running_out_min_purchases: int = 2
    running_out_template: str = "running_out"
    running_out_cooldown_days: int = 14
    #: win-back: a customer moved into one of these segments since the previous snapshot.
    winback_enabled: bool = True
    winback_audience: str = "at_risk, cant_lose"
    #: A discount code shown in the email ("" = none).
    winback_discount_code: str = ""
    winback_template: str = "winback"
    winback_cooldown_days: int = 90
    #: new arrivals: products first seen in the last this many days, personalised, for these segments.
    new_arrivals_enabled: bool = True
    new_arrivals_audience: str = "loyal, champions"
    new_arrivals_days: int = 14
    new_arrivals_template: str = "new_arrivals"
    new_arrivals_cooldown_days: int = 30
    #: abandoned cart: cart events with no purchase of those products for this many hours (and not older
    #: than abandoned_cart_max_hours: an old cart is forgotten, not abandoned).
    abandoned_cart_enabled: bool = True
    abandoned_cart_audience: str = ""
    abandoned_cart_hours: int = 24
    abandoned_cart_max_hours: int = 96
    abandoned_cart_template: str = "abandoned_cart"
    abandoned_cart_cooldown_days: int = 7
    #: review request: an order the shop marked delivered at most review_request_max_delivery_days after it
    #: was ordered (a late one gets no request), review_request_delay_days after the delivery, and no later
    #: than review_request_window_days after that (a delivery posted long after the fact asks nothing).
    review_request_enabled: bool = True
    review_request_audience: str = ""
    review_request_max_delivery_days: int = 5
    review_request_delay_days: int = 3
    review_request_window_days: int = 7
    review_request_template: str = "review_request"
    review_request_cooldown_days: int = 14
    #: Products in a trigger email (per tier for replacement).
    picks: int = 3
    #: VIP clients' trigger emails wait this many hours for their account manager (reminders.vip_cutoff_policy
    #: then applies).
    vip_review_hours: int = 48
    #: Global holdout (no trigger email at all) and per-trigger control: shares of customers, drawn by a hash
    #: of (customer, trigger, period), the period being the calendar quarter of eligibility.
    holdout_share: float = 0.1
    control_share: float = 0.1
    #: The campaign report says "too few to tell" when the treated or the control group is smaller.
    min_group_size: int = 30

    def audience(self, trigger: str) -> tuple[str, ...]:
        value: str = getattr(self, f"{trigger}_audience")
        return parse_names(value)

    def lifetimes(self) -> tuple[tuple[str, int, int], ...]:
        return parse_lifetimes(self.replacement_lifetimes)

    def is_on(self, trigger: str) -> bool:
        return self.enabled and bool(getattr(self, f"{trigger}_enabled"))


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    interactions: InteractionSettings = field(default_factory=InteractionSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    reminders: ReminderSettings = field(default_factory=ReminderSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    rfm: RfmSettings = field(default_factory=RfmSettings)
    triggers: TriggerSettings = field(default_factory=TriggerSettings)
