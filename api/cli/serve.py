"""`giftrec serve`: the web app under gunicorn (werkzeug if gunicorn is absent) plus the scheduler process."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from domain.logs import configure_logging

log = logging.getLogger(__name__)

#: gunicorn's longest request line (its default is 4094 bytes): every request the OpenAPI document allows
#: fits (api.schemas.MAX_EXCLUDE), else gunicorn answers an HTML 414 the document does not describe.
MAX_REQUEST_LINE = 8190


def _banner(host: str, port: int) -> None:
    ctx = current_app.extensions["giftrec"]
    base = f"http://{host}:{port}"
    lines = [
        f"giftrec is serving on {base}",
        *([f"  storefront demo   {base}/demo"] if ctx.settings.demo.enabled else []),
        f"  API docs          {base}/v1/docs   (spec: {base}/v1/openapi.json)",
        f"  health            {base}/health/ready",
        f"  database          {ctx.settings.database.url}",
    ]
    for hook in ctx.services.get("banner_hooks", []):
        lines.extend(hook(base))
    if sys.stdout.isatty():  # someone at a terminal reads it
        click.echo("\n".join(lines), err=False)
        sys.stdout.flush()
    else:  # a log collector reads every line as JSON
        log.info("serving on %s", base, extra={"banner": [line.strip() for line in lines]})


def _metrics_environment(instance_dir: str) -> dict[str, str]:
    """The children's environment, with ``PROMETHEUS_MULTIPROC_DIR`` (the operator's, else
    ``<instance>/metrics``) emptied: every worker counts into files there, /metrics adds them up, and
    counts of an earlier run must not be added to this one's (prometheus-client's rule). The scheduler's
    job runs go to the database instead (domain.job_runs), where /metrics reads them wherever it runs."""
    env = dict(os.environ)
    directory = env.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(os.path.abspath(instance_dir), "metrics")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = directory
    return env


def gunicorn_command(
    gunicorn: str, host: str, port: int, workers: int, access_log: str | None = "-"
) -> list[str]:
    """The gunicorn command line `giftrec serve` runs (benchmarks start the same); the access log goes
    to stdout unless ``access_log`` names a file, and nowhere when it is None."""
    # JSON lines, like every other line (api/gunicorn_conf.py)
    logged = [] if access_log is None else ["--access-logfile", access_log]
    return [
        gunicorn,
        "--workers",
        str(workers),
        "--bind",
        f"{host}:{port}",
        *logged,
        "--config",
        "python:api.gunicorn_conf",
        "--graceful-timeout",
        "5",
        "--limit-request-line",
        str(MAX_REQUEST_LINE),
        "api.wsgi:app",
    ]


@click.command("serve")
@click.option("--host", default=None, help="default: server.host")
@click.option("--port", type=int, default=None, help="default: server.port")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--with-scheduler/--without-scheduler", default=False, help="also run `giftrec scheduler`")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="gunicorn's access line for every request, on stdout (a load balancer that logs each request "
    "may make it redundant: it takes 2 to 6 %% of a web worker's CPU under load, docs/performance.md)",
)
@with_appcontext
def serve(host: str | None, port: int | None, workers: int, with_scheduler: bool, access_log: bool) -> None:
    """Serve the web app (and the scheduler in its own process) until interrupted."""
    settings = current_app.extensions["giftrec"].settings
    configure_logging(logging.INFO)  # the banner, when no terminal reads it
    host = host or settings.server.host
    port = port or settings.server.port
    _banner(host, port)
    env = _metrics_environment(settings.server.instance_dir)
    children: list[subprocess.Popen[bytes]] = []
    giftrec = shutil.which("giftrec", path=os.path.dirname(sys.executable)) or "giftrec"
    if with_scheduler:
        children.append(subprocess.Popen([giftrec, "scheduler"], env=env))
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    if gunicorn:
        web = gunicorn_command(gunicorn, host, port, workers, "-" if access_log else None)
    else:  # an install without the web server (it is a dependency): say so, never pose as N workers
        log.warning(
            "gunicorn is not installed: serving with Flask's development server, one process "
            "(--workers %d ignored); install giftrec's requirements for production",
            workers,
        )
        web = [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "api.wsgi:app",
            "run",
            "--host",
            host,
            "--port",
            str(port),
            "--no-reload",
        ]
    children.append(subprocess.Popen(web, env=env))

    def _stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        _stop()
        # The scheduler finishes the message it is sending (SMTP may take a few timeouts) before it exits,
        # and abandons a job still running after scheduler.stop_timeout itself; killing it earlier would
        # leave that message 'sending', later 'unknown'. The 10 s are its margin to release the lease.
        deadline = time.monotonic() + settings.scheduler.stop_timeout + 10.0
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    codes = [child.returncode for child in children]
    if any(code not in (0, -signal.SIGTERM, None) for code in codes):
        raise click.ClickException(f"a child process exited with {codes}")
