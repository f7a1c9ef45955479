"""`giftrec train`, `model list|show|rollback|unpin|promote` and `evaluate`: the served models
(recommender and next-purchase ranker) and their quality."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from api.cli.common import transaction
from domain.customers.parsing import FORMATS
from domain.errors import DomainError


@click.command("train")
@with_appcontext
@click.option("--if-stale", is_flag=True, help="Skip when the serving model already covers the newest data.")
@click.option(
    "--tune",
    is_flag=True,
    help="First choose the served blends and the next-purchase ranking (the learned ranker or a simple"
    " baseline) on a validation window of the shop's data (docs/quality.md).",
)
@click.option(
    "--next-purchase",
    is_flag=True,
    help="Train the learned next-purchase ranker instead (the web processes load it, never fit it).",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Train on the data up to this instant (UTC) instead of now: a backtest beside `giftrec evaluate`.",
)
def train(if_stale: bool, tune: bool, next_purchase: bool, until: dt.datetime | None) -> None:
    """Train the configured model on the database, save its artifact and record the run.

    Without --tune the blends chosen by the last tuning that serves are re-fitted."""
    if next_purchase:
        if tune:
            raise click.UsageError("--tune chooses the recommender's blends; not with --next-purchase")
        _train_next_purchase(if_stale, until)
        return
    from domain.serving.training import is_stale, prune_artifacts, train_model
    from domain.serving.tuning import report_lines

    settings = current_app.extensions["giftrec"].settings
    with transaction() as session:
        if if_stale:
            stale, reason = is_stale(session, settings, now=until)
            if not stale:
                click.echo(f"skipped: {reason}")
                return
            click.echo(f"training: {reason}")
        try:
            run = train_model(session, settings, tune=tune, now=until)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        tuning = run.metrics.get("tuning") if tune else None
        summary = (
            f"{run.status}: model {run.version} ({run.algorithm}) on {run.n_users:,} customers x "
            f"{run.n_items:,} products, {run.n_interactions:,} interactions; data until {run.data_until}"
        )
        timing = _timings(run.metrics)
        error = run.error
    if error is not None:
        raise click.ClickException(f"training failed: {error}")
    with transaction() as session:  # only after the commit that recorded the new run
        prune_artifacts(session, settings)
    click.echo(summary)
    click.echo(f"  {timing}")
    for line in report_lines(tuning) if tuning is not None else []:
        click.echo(f"  {line}")


def _timings(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in metrics.items() if k.endswith("_seconds"))


def _train_next_purchase(if_stale: bool, until: dt.datetime | None) -> None:
    """`giftrec train --next-purchase`: fit the ranker, store its artifact, record the run, prune."""
    from domain.serving.next_purchase_runs import (
        is_next_purchase_stale,
        prune_next_purchase_artifacts,
        train_next_purchase,
    )

    settings = current_app.extensions["giftrec"].settings
    with transaction() as session:
        if if_stale:
            stale, reason = is_next_purchase_stale(session, now=until)
            if not stale:
                click.echo(f"skipped: {reason}")
                return
            click.echo(f"training: {reason}")
        run = train_next_purchase(session, settings, now=until)
        summary = (
            f"{run.status}: next-purchase ranker {run.version} on {run.n_customers:,} customers x "
            f"{run.n_items:,} products; data until {run.data_until}"
        )
        timing, error, note = _timings(run.metrics), run.error, run.metrics.get("note")
    if error is not None:
        raise click.ClickException(f"training failed: {error}")
    with transaction() as session:
        prune_next_purchase_artifacts(session, settings)
    click.echo(summary)
    click.echo(f"  {timing}")
    if note:
        click.echo(f"  {note}")


@click.group(cls=AppGroup)
def model() -> None:
    """Trained models: list the runs, roll back to an earlier one (pinned), unpin, promote."""


@model.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
def model_list(limit: int) -> None:
    """List model runs, then the next-purchase rankers, newest first; `*` marks what serving loads."""
    from domain.serving.training import list_runs, serving_run

    with transaction() as session:
        serving = serving_run(session)
        rows = [
            (
                "*" if serving is not None and r.id == serving.id else " ",
                r.version,
                r.algorithm,
                "rolled back" if r.is_rolled_back else "pinned" if r.is_pinned else r.status,
                "" if r.artifact_path or r.status != "succeeded" else "artifact pruned",
                f"{r.n_users}x{r.n_items}",
                str(r.data_until or ""),
                r.error or "",
                _served_summary(r.params, r.metrics),
            )
            for r in list_runs(session, limit=limit)
        ]
    if not rows:
        click.echo("no model runs: run `giftrec train`")
    for mark, version, algorithm, status, pruned, shape, until, error, served in rows:
        line = f"{mark} {version:<40} {algorithm:<11} {status:<11} {shape:<12} {until:<19} {pruned}{error}"
        click.echo(line.rstrip())
        if served:
            click.echo(f"    {served}")
    _list_next_purchase(limit)


def _list_next_purchase(limit: int) -> None:
    """The next-purchase rankers, newest first; `*` marks the one web processes load."""
    from domain.serving.next_purchase_runs import list_next_purchase_runs, serving_next_purchase_run

    with transaction() as session:
        serving = serving_next_purchase_run(session)
        runs = [
            (
                "*" if serving is not None and r.id == serving.id else " ",
                r.version,
                "rolled back" if r.is_rolled_back else "pinned" if r.is_pinned else r.status,
                "" if r.artifact_path or r.status != "succeeded" else "artifact pruned",
                f"{r.n_customers}x{r.n_items}",
                r.finished_at.isoformat(sep=" ", timespec="seconds") if r.finished_at else "",
                str(r.data_until or ""),
                r.error or "",
                _next_purchase_summary(r.metrics),
            )
            for r in list_next_purchase_runs(session, limit=limit)
        ]
    if not runs:  # a shop that never trained one: its answers come from the timing model
        return
    click.echo("next-purchase rankers (`giftrec train --next-purchase`):")
    for mark, version, status, pruned, shape, trained, until, error, summary in runs:
        line = f"{mark} {version:<40} {status:<11} {shape:<12} trained {trained:<19} data {until:<19} "
        click.echo(f"{line}{pruned}{error}".rstrip())
        if summary:
            click.echo(f"    {summary}")


def _next_purchase_summary(metrics: dict[str, Any]) -> str:
    """The fit's cost and, when it had too little history for the classifier, why."""
    if "fit_cpu_seconds" not in metrics:
        return ""
    text = f"fit {metrics['fit_cpu_seconds']} s CPU ({metrics.get('fit_seconds')} s wall)"
    if not metrics.get("classifier", True):
        text += f"; {metrics.get('note', 'no classifier')}"
    return text


def _served_summary(params: dict[str, Any], metrics: dict[str, Any]) -> str:
    """How the run's blends were chosen, in a few words, with the validation recall of each task."""
    from domain.serving.tuning import TUNE_K, candidate_label

    served = params.get("served") or {}
    tuning = metrics.get("tuning") or {}
    refit = f" (re-fit of the tuning in {tuning['refit_of']})" if tuning.get("refit_of") else ""
    if served.get("source") == "default":
        return (
            f"blends: safe default (configured), too little data to tune: {tuning.get('reason', '')}{refit}"
        )
    if served.get("source") != "tuned":
        return "blends: configured (not tuned)" if params.get("model", {}).get("repeat") is not None else ""
    k = tuning.get("k", TUNE_K)
    parts = []
    for task, entry in (tuning.get("tasks") or {}).items():
        chosen, runner = entry["chosen"], entry.get("runner_up")
        text = f"{task} {candidate_label(chosen)} {chosen[f'recall@{k}']:.4f}"
        if runner is not None:
            text += f" vs runner-up {candidate_label(runner)} {runner[f'recall@{k}']:.4f}"
        parts.append(text)
    ranking = tuning.get("next_purchase_ranking")
    if ranking is not None:
        parts.append(f"next-purchase ranking {ranking['chosen']}")
    return f"blends: tuned{refit}; validation recall@{k}: " + "; ".join(parts)


@model.command("show")
@click.argument("version")
def model_show(version: str) -> None:
    """One run: parameters, timings and, for a tuned run, the validation figures per task."""
    import json

    from domain.serving.training import find_run
    from domain.serving.tuning import report_lines

    with transaction() as session:
        try:
            run = find_run(session, version)
        except DomainError as exc:
            if not _show_next_purchase(session, version):
                raise click.ClickException(exc.message) from None
            return
        head = f"{run.version} ({run.algorithm}) {run.status}; data until {run.data_until}"
        params, metrics = dict(run.params), dict(run.metrics)
    click.echo(head)
    summary = _served_summary(params, metrics)
    if summary:
        click.echo(summary)
    tuning = metrics.pop("tuning", None)
    if tuning is not None:
        for line in report_lines(tuning):
            click.echo(f"  {line}")
    click.echo("params: " + json.dumps(params, indent=2, sort_keys=True))
    click.echo("metrics: " + json.dumps(metrics, indent=2, sort_keys=True))
    if tuning is not None:
        click.echo("tuning: " + json.dumps(tuning, indent=2, sort_keys=True))


def _show_next_purchase(session: Any, version: str) -> bool:
    """`model show` of a next-purchase ranker's run; False when ``version`` is not one."""
    import json

    from domain.serving.next_purchase_runs import find_next_purchase_run, serving_next_purchase_run

    run = find_next_purchase_run(session, version)
    if run is None:
        return False
    serving = serving_next_purchase_run(session)
    state = "serving" if serving is not None and serving.id == run.id else run.status
    click.echo(
        f"{run.version} (next-purchase ranker) {state}; trained at {run.finished_at}; "
        f"data until {run.data_until}"
    )
    if run.error:
        click.echo(f"error: {run.error}")
    summary = _next_purchase_summary(dict(run.metrics))
    if summary:
        click.echo(summary)
    click.echo("params: " + json.dumps(dict(run.params), indent=2, sort_keys=True))
    click.echo("metrics: " + json.dumps(dict(run.metrics), indent=2, sort_keys=True))
    return True


def _kind(session: Any, version: str | None, next_purchase: bool) -> Any:
    """The runs a command acts on: the ranker's when asked or when ``version`` is a ranker's, else the
    models'."""
    from domain.models import ModelRun, NextPurchaseRun
    from domain.serving.next_purchase_runs import find_next_purchase_run

    if next_purchase or (version is not None and find_next_purchase_run(session, version) is not None):
        return NextPurchaseRun
    return ModelRun


def _pinned_note(kind: Any) -> str:
    from domain.models import ModelRun
    from domain.serving.model_runs import RUN_KINDS

    flag = "" if kind is ModelRun else " --next-purchase"
    return f"pinned: newer {RUN_KINDS[kind][0]}s wait until `giftrec model unpin{flag}`"


def _named(run: Any) -> str:
    from domain.models import ModelRun
    from domain.serving.model_runs import RUN_KINDS

    algorithm = f" ({run.algorithm})" if isinstance(run, ModelRun) else ""
    return f"{RUN_KINDS[type(run)][0]} {run.version}{algorithm}"


NEXT_PURCHASE = click.option(
    "--next-purchase",
    is_flag=True,
    help="The next-purchase ranker's runs (`giftrec train --next-purchase`) instead of the models'.",
)


@model.command("rollback")
@click.argument("version", required=False)
@NEXT_PURCHASE
def model_rollback(version: str | None, next_purchase: bool) -> None:
    """Stop serving the current model (or ranker): back to the previous one, or to VERSION, pinned.

    Serving processes switch within `model.reload_interval` seconds, without a restart. Runs trained
    later (the nightly training) are not served until `giftrec model unpin` or `promote`.
    """
    from domain.serving.training import rollback

    with transaction() as session:
        kind = _kind(session, version, next_purchase)
        target = rollback(session, version, actor="cli", kind=kind)
        line = f"serving {_named(target)} from the next reload; {_pinned_note(kind)}"
    click.echo(line)


@model.command("unpin")
@NEXT_PURCHASE
def model_unpin(next_purchase: bool) -> None:
    """Release the pin of a rollback: the newest usable model (or ranker) serves again."""
    from domain.serving.training import unpin

    with transaction() as session:
        serving = unpin(session, actor="cli", kind=_kind(session, None, next_purchase))
        line = f"serving {_named(serving)} from the next reload" if serving else "nothing usable left"
    click.echo(line)


@model.command("promote")
@click.argument("version")
def model_promote(version: str) -> None:
    """Serve VERSION (a model's or a ranker's) again, even one rolled back; pinned if newer ones exist."""
    from domain.serving.training import promote

    with transaction() as session:
        kind = _kind(session, version, False)
        run = promote(session, version, actor="cli", kind=kind)
        pinned = f"; {_pinned_note(kind)}" if run.is_pinned else ""
        line = f"serving {_named(run)} from the next reload{pinned}"
    click.echo(line)


@click.command("evaluate")
@with_appcontext
@with_appcontext
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Orders file, e.g. ../shared/data/online_retail.csv.gz",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="online-retail",
    show_default=True,
)
@click.option("--test-days", type=int, default=30, show_default=True, help="Length of the test window.")
@click.option("--k", type=int, default=10, show_default=True, help="Cut-off of the ranking metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--simulate-rejections",
    "reject_share",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of customers whose reviewed selection lost a pick (simulated, deterministic): the served "
    "row is trained with these as negative feedback.",
)
@click.option(
    "--rejections-per-customer",
    "reject_per_customer",
    type=int,
    default=1,
    show_default=True,
    help="Picks removed in each simulated review.",
)
@click.option(
    "--tune",
    is_flag=True,
    help="Measure what `giftrec train --tune` would serve: blends and the next-purchase ranking chosen on"
    " the window before the test.",
)
def evaluate(
    data: str,
    fmt: str,
    test_days: int,
    k: int,
    as_json: bool,
    reject_share: float,
    reject_per_customer: int,
    tune: bool,
) -> None:
    """Offline evaluation: temporal split, what `giftrec train` serves against the baselines, two tasks."""
    import json

    from domain.serving.evaluation import evaluate_command

    try:
        result = evaluate_command(
            data,
            fmt,  # type: ignore[arg-type]
            test_days,
            k,
            as_json,
            progress=lambda msg: click.echo(msg, err=True),
            settings=current_app.extensions["giftrec"].settings,
            reject_share=reject_share,
            reject_per_customer=reject_per_customer,
            tune=tune,
        )
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(result, indent=2) if as_json else result)
