"""`giftrec train --tune`: the blend chosen on the validation window, per task, baselines included."""

# ruff: noqa: F811  (pytest fixtures imported from tests.domain.serving.fixtures are redefined as arguments)

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import Settings, load_settings
from domain.customers.interactions import InteractionRows, SalesRows
from domain.models import ModelRun
from domain.serving.model_store import ModelStore
from domain.serving.served import settings_blends
from domain.serving.training import train_model
from domain.serving.tuning import report_lines, tune_blends
from recommender.evaluation import Metrics
from recommender.next_purchase_choice import LEARNED, choose_among
from tests.domain.serving.fixtures import clock, imported, imported_rows, sample_slice, settings  # noqa: F401

END = dt.datetime(2024, 6, 30)
DAY = np.timedelta64(86400, "s")


def _tune_settings(**model: object) -> Settings:
    base = {"factors": 16, "iterations": 10, "num_threads": 1, "tune_min_customers": 50, "tune_knn_k": 50}
    return load_settings(environ={}, model={**base, **model})


def _rows(users: list[int], items: list[int], days: list[float]) -> tuple[InteractionRows, SalesRows]:
    """Purchases (one unit each) `days` before END."""
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    ts = (np.datetime64(END, "s") - (np.asarray(days) * 86400).astype("timedelta64[s]")).astype(
        "datetime64[s]"
    )
    kinds = np.full(u.size, "purchase", dtype="U8")
    ones = np.ones(u.size)
    return InteractionRows(u, i, kinds, ones, ts), SalesRows(u, i, ones, ts)


def _trending_shop(seed: int = 7) -> tuple[InteractionRows, SalesRows]:
    """Pure popularity that moves: every purchase is drawn from the shop's bestsellers of the moment, the
    same for everyone (no customer has tastes of their own); a new set of items leads every 20 days."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 600, 200
    users, items, days = [], [], []
    for user in range(n_users):
        for _ in range(rng.integers(6, 12)):
            day = float(rng.uniform(0, 200))
            era = int(day // 20)
            # Zipf-like weights over the era's own 20 items, plus a flat tail over everything.
            if rng.random() < 0.85:
                item = era * 20 + min(int(rng.zipf(1.6)) - 1, 19)
            else:
                item = int(rng.integers(n_items))
            users.append(user)
            items.append(item % n_items)
            days.append(day)
    return _rows(users, items, days)


def _grouped_shop(seed: int = 11) -> tuple[InteractionRows, SalesRows]:
    """A planted low-rank structure: 8 groups of customers, each buying only its own 25 items, all items
    equally popular overall; a customer rarely buys the same item twice."""
    rng = np.random.default_rng(seed)
    n_groups, per_group, n_users = 8, 25, 800
    users, items, days = [], [], []
    for user in range(n_users):
        group = user % n_groups
        picks = rng.choice(per_group, size=int(rng.integers(8, 14)), replace=False)
        for item in picks:
            users.append(user)
            items.append(group * per_group + int(item))
            days.append(float(rng.uniform(0, 120)))
    return _rows(users, items, days)


def test_on_pure_popularity_data_the_popularity_baseline_is_chosen() -> None:
    rows, sales = _trending_shop()
    tuning = tune_blends(rows, sales, _tune_settings(tune_validation_days=10), anchor=END)
    assert tuning.status == "tuned"
    for task in ("next_purchases", "discovery"):
        best = tuning.ranking[task][0]
        assert best.name.startswith("popularity"), (task, best)
        assert best.is_baseline
        assert tuning.blends[task] == best.blend
        assert best.blend["cf_weight"] == best.blend["knn_weight"] == 0.0


def test_on_a_planted_low_rank_structure_the_collaborative_model_is_chosen() -> None:
    rows, sales = _grouped_shop()
    tuning = tune_blends(rows, sales, _tune_settings(), anchor=END)
    assert tuning.status == "tuned"
    for task in ("next_purchases", "discovery"):
        best = tuning.ranking[task][0]
        assert best.blend["cf_weight"] > 0 or best.blend["knn_weight"] > 0, (task, best)
        baseline = next(s for s in tuning.ranking[task] if s.name.startswith("popularity"))
        # Beyond noise: the group structure at least doubles what popularity finds.
        assert best.metrics.recall > 2 * baseline.metrics.recall, (task, best, baseline)


def test_too_little_data_to_validate_keeps_the_configured_blends() -> None:
    rows, sales = _grouped_shop()
    settings = _tune_settings(tune_min_customers=100_000)
    tuning = tune_blends(rows, sales, settings, anchor=END)
    assert tuning.status == "default"
    assert "fewer than model.tune_min_customers = 100000" in tuning.reason
    assert tuning.blends == settings_blends(settings)
    assert tuning.record()["tasks"] == {}


def _with_min_customers(settings: Settings, n: int) -> Settings:
    return dataclasses.replace(settings, model=dataclasses.replace(settings.model, tune_min_customers=n))


def _train_tuned(sessions: sessionmaker[Session], settings: Settings) -> ModelRun:
    with sessions.begin() as session:
        tuned = train_model(session, settings, tune=True)
        assert tuned.status == "succeeded", tuned.error
    return tuned


def test_the_tuned_blends_are_served_and_refitted_nightly(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    settings = _with_min_customers(settings, 5)
    tuned = _train_tuned(sessions, settings)
    record = tuned.metrics["tuning"]
    assert record["status"] == "tuned" and tuned.params["served"]["source"] == "tuned"
    blends = tuned.params["served"]["blends"]
    for task in ("next_purchases", "discovery"):
        entry = record["tasks"][task]
        assert entry["chosen"]["blend"] == blends[task]
        assert entry["runner_up"]["recall@10"] <= entry["chosen"]["recall@10"]

    # What serving loads from the artifact is the tuned blend, for both kinds of picks.
    store = ModelStore(settings, sessions, background=False)
    loaded = store.current().model
    assert loaded is not None
    for key, value in blends["next_purchases"].items():
        assert loaded.model.params[key] == value
    for key, value in blends["discovery"].items():
        assert loaded.discovery.params[key] == value

    # The nightly plain training re-fits the weekly choice.
    with sessions.begin() as session:
        refit = train_model(session, settings)
    assert refit.params["served"] == tuned.params["served"]
    assert refit.metrics["tuning"]["refit_of"] == tuned.version


def test_giftrec_model_list_says_when_the_safe_default_serves(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    from api import create_app
    from api.cli import cli

    settings = dataclasses.replace(
        settings, model=dataclasses.replace(settings.model, tune_min_customers=100_000)
    )
    app = create_app(settings)
    try:
        runner = app.test_cli_runner()
        trained = runner.invoke(cli, ["train", "--tune"])
        assert trained.exit_code == 0, trained.output
        assert "tuning: safe default (configured blends)" in trained.output
        listed = runner.invoke(cli, ["model", "list"])
        assert listed.exit_code == 0, listed.output
        assert "blends: safe default (configured), too little data to tune" in listed.output
        version = listed.output.split()[1]
        shown = runner.invoke(cli, ["model", "show", version])
        assert shown.exit_code == 0, shown.output
        assert '"status": "default"' in shown.output
    finally:
        app.extensions["giftrec"].close()


def test_giftrec_model_list_names_the_tuned_choices_and_their_runners_up(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    """Each task's chosen candidate and runner-up by what they are ("blend (own 1, ALS 0.3, ...)", not
    "blend"), and the next-purchase ranking chosen with them."""
    from api import create_app
    from api.cli import cli
    from domain.serving.tuning import candidate_label

    app = create_app(_with_min_customers(settings, 5))
    try:
        runner = app.test_cli_runner()
        trained = runner.invoke(cli, ["train", "--tune"])
        assert trained.exit_code == 0, trained.output
        listed = runner.invoke(cli, ["model", "list"])
        assert listed.exit_code == 0, listed.output
        with sessions() as session:
            record = session.scalars(select(ModelRun)).one().metrics["tuning"]
    finally:
        app.extensions["giftrec"].close()
    summary = next(line.strip() for line in listed.output.splitlines() if "blends: tuned" in line)
    for task in ("next_purchases", "discovery"):
        chosen, runner_up = record["tasks"][task]["chosen"], record["tasks"][task]["runner_up"]
        assert f"{task} {candidate_label(chosen)} {chosen['recall@10']:.4f}" in summary
        assert f"vs runner-up {candidate_label(runner_up)} {runner_up['recall@10']:.4f}" in summary
    assert "blend (" in summary  # the sample's winners are blends: their weights are shown
    assert f"next-purchase ranking {record['next_purchase_ranking']['chosen']}" in summary


def test_the_weekly_tune_model_job_tunes_and_the_nightly_train_model_job_keeps_its_choice(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    """The schedule of docs/quality.md: `tune-model` (scheduler.tune_cron, weekly) runs `train --tune`,
    `train-model` (nightly) re-fits what it chose. Too little data here, so the choice is the safe default."""
    import jobs.train_model
    import jobs.tune_model
    from jobs.context import JobContext
    from jobs.scheduler import build_scheduler

    settings = _with_min_customers(settings, 100_000)
    ctx = JobContext(settings, sessions, mailer=None)  # type: ignore[arg-type]  # no job here sends mail
    summary = jobs.tune_model.run(ctx)
    assert "(tuned): succeeded" in summary and "safe default: " in summary
    assert "fewer than model.tune_min_customers" in summary
    nightly = jobs.train_model.run(ctx)
    assert "(tuned)" not in nightly and "succeeded" in nightly
    with sessions() as session:
        tuned, refit = session.scalars(select(ModelRun).order_by(ModelRun.id)).all()
    assert tuned.params["served"]["source"] == refit.params["served"]["source"] == "default"
    assert refit.metrics["tuning"]["refit_of"] == tuned.version

    scheduler = build_scheduler(ctx, background=True)
    scheduler.scheduler.start(paused=True)  # jobs get their triggers' fields once added to a started one
    try:
        job = scheduler.scheduler.get_job("tune-model")
    finally:
        scheduler.shutdown()
    fields = {f.name: str(f) for f in job.trigger.fields}
    minute, hour, _, _, day_of_week = settings.scheduler.tune_cron.split()
    assert (fields["minute"], fields["hour"], fields["day_of_week"]) == (minute, hour, day_of_week)


def test_tuning_a_model_without_blends_is_refused_naming_the_setting(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    from domain.errors import InvalidInput

    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, algorithm="als"))
    with sessions.begin() as session, pytest.raises(InvalidInput) as caught:
        train_model(session, settings, tune=True)
    assert caught.value.field == "model.algorithm"


def test_the_next_purchase_ranking_chosen_by_tuning_is_what_the_endpoint_fits(
    sessions: sessionmaker[Session], settings: Settings, imported: None
) -> None:
    from domain.serving.next_purchase import fit_next_purchase, served_ranking
    from recommender.next_purchase_choice import LEARNED, BaselineRanker, ranking_candidates

    settings = _with_min_customers(settings, 5)
    tuned = _train_tuned(sessions, settings)
    choice = tuned.metrics["tuning"]["next_purchase_ranking"]
    assert choice["status"] == "tuned" and choice["chosen"] in ranking_candidates()
    assert tuned.params["served"]["next_purchase_ranking"] == choice["chosen"]
    # The learned ranker serves only with a lead beyond noise over the best baseline, which serves otherwise.
    learned_leads = choice["lead"] is not None and choice["lead"]["beyond_noise"]
    assert choice["chosen"] == (LEARNED if learned_leads else choice["best_baseline"]["name"])
    with sessions.begin() as session:
        refit = train_model(session, settings)  # the nightly training keeps the weekly choice
    assert refit.params["served"]["next_purchase_ranking"] == choice["chosen"]
    with sessions() as session:
        assert served_ranking(session) == choice["chosen"]
        fitted = fit_next_purchase(session)
    if choice["chosen"] == LEARNED:
        assert not isinstance(fitted.ranker, BaselineRanker)
    else:
        assert isinstance(fitted.ranker, BaselineRanker) and fitted.ranker.name == choice["chosen"]


def _hits(n: int, ones: slice) -> Metrics:
    hits = np.zeros(n)
    hits[ones] = 1.0
    recall = float(hits.mean())
    return Metrics(recall, recall / 10, recall, recall, recall, 0.1, n, per_customer_recall=hits)


def test_the_report_line_says_the_learned_ranker_led_within_noise_and_the_baseline_serves() -> None:
    # the learned ranker hits 204 of 400 customers (12 personal top-frequency misses), the baseline 200
    scored = [("personal top-frequency", _hits(400, slice(0, 200))), (LEARNED, _hits(400, slice(8, 212)))]
    record = {
        "status": "tuned",
        "k": 10,
        "tasks": {},
        "next_purchase_ranking": choose_among(scored, 400).record(10),
    }
    line = report_lines(record)[-1]
    assert line.startswith("next-purchase ranking: next-basket ranker led on validation, recall@10 0.5100")
    assert "; next-basket ranker minus personal top-frequency +0.0100, 95% CI [" in line
    assert line.endswith("], not beyond noise: personal top-frequency serves"), line
    far = [("personal top-frequency", _hits(400, slice(0, 200))), (LEARNED, _hits(400, slice(0, 300)))]
    record["next_purchase_ranking"] = choose_among(far, 400).record(10)
    line = report_lines(record)[-1]
    assert line.startswith("next-purchase ranking: next-basket ranker won on validation")
    assert line.endswith("], beyond noise: next-basket ranker serves"), line
