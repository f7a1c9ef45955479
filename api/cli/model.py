"""`giftrec train`, `model list|rollback` and `evaluate`: the served model and its quality."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from api.cli.common import transaction
from domain.errors import DomainError


@click.command("train")
@with_appcontext
@click.option("--if-stale", is_flag=True, help="Skip when the serving model already covers the newest data.")
def train(if_stale: bool) -> None:
    """Train the configured model on the database, save its artifact and record the run."""
    from domain.serving.training import is_stale, prune_artifacts, train_model

    settings = current_app.extensions["giftrec"].settings
    with transaction() as session:
        if if_stale:
            stale, reason = is_stale(session, settings)
            if not stale:
                click.echo(f"skipped: {reason}")
                return
            click.echo(f"training: {reason}")
        run = train_model(session, settings)
        summary = (
            f"{run.status}: model {run.version} ({run.algorithm}) on {run.n_users:,} customers x "
            f"{run.n_items:,} products, {run.n_interactions:,} interactions; data until {run.data_until}"
        )
        timing = ", ".join(f"{k} {v}" for k, v in run.metrics.items() if k.endswith("_seconds"))
        error = run.error
    if error is not None:
        raise click.ClickException(f"training failed: {error}")
    with transaction() as session:  # only after the commit that recorded the new run
        prune_artifacts(session, settings)
    click.echo(summary)
    click.echo(f"  {timing}")


@click.group(cls=AppGroup)
def model() -> None:
    """Trained models: list the runs, roll back to an earlier one (pinned), unpin, promote."""


@model.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
def model_list(limit: int) -> None:
    """List model runs, newest first; `*` marks the one serving processes load."""
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
            )
            for r in list_runs(session, limit=limit)
        ]
    if not rows:
        click.echo("no model runs: run `giftrec train`")
    for mark, version, algorithm, status, pruned, shape, until, error in rows:
        line = f"{mark} {version:<40} {algorithm:<11} {status:<11} {shape:<12} {until:<19} {pruned}{error}"
        click.echo(line.rstrip())


@model.command("rollback")
@click.argument("version", required=False)
def model_rollback(version: str | None) -> None:
    """Stop serving the current model: back to the previous one, or to VERSION, pinned.

    Serving processes switch within `model.reload_interval` seconds, without a restart. Models trained
    later (the nightly training) are not served until `giftrec model unpin` or `promote`.
    """
    from domain.serving.training import rollback

    with transaction() as session:
        target = rollback(session, version, actor="cli")
        line = (
            f"serving model {target.version} ({target.algorithm}) from the next reload; pinned: "
            "newer models wait until `giftrec model unpin`"
        )
    click.echo(line)


@model.command("unpin")
def model_unpin() -> None:
    """Release the pin of a rollback: the newest usable model serves again."""
    from domain.serving.training import unpin

    with transaction() as session:
        serving = unpin(session, actor="cli")
        line = f"serving model {serving.version} from the next reload" if serving else "no usable model"
    click.echo(line)


@model.command("promote")
@click.argument("version")
def model_promote(version: str) -> None:
    """Serve VERSION again (even one rolled back); pinned if newer models exist."""
    from domain.serving.training import promote

    with transaction() as session:
        run = promote(session, version, actor="cli")
        pinned = "; pinned: newer models wait until `giftrec model unpin`" if run.is_pinned else ""
        line = f"serving model {run.version} from the next reload{pinned}"
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
    type=click.Choice(["online-retail", "generic"]),
    default="online-retail",
    show_default=True,
)
@click.option("--test-days", type=int, default=30, show_default=True, help="Length of the test window.")
@click.option("--k", type=int, default=10, show_default=True, help="Cut-off of the ranking metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def evaluate(data: str, fmt: str, test_days: int, k: int, as_json: bool) -> None:
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
        )
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(result, indent=2) if as_json else result)
