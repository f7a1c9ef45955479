"""Benchmark: the CPU a `giftrec` command spends before it does its work, and a training run in all.

Run from the repository root, by hand (never by the test suite)::

    timeout 600 .venv/bin/python -m bench.bench_cli_start [--rounds 7]

Every `giftrec` command builds the app first (``api.cli.common.create_cli_app``: its imports and
``create_app``). A scheduled job run by the command line, or ``giftrec train`` on a host that also
serves, pays that beside the requests. Set up once, not measured: a temporary SQLite database, migrated,
with the bundled sample imported. Then, each in a fresh child process, ``--rounds`` times (alternating):

- ``start-up``: build the app, nothing else (``create_cli_app()``);
- ``giftrec model list``: a command that only reads a few rows;
- ``giftrec train``: a whole training run on the sample (start-up, read, fit, store).

Printed per row: the median child CPU (user + system, from ``wait4``), its wall time and peak resident
memory, and which of scikit-learn, statsmodels, scipy.stats and pandas the start-up imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import machine_line, measured_run, print_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "online_retail_sample.csv.gz"
HEAVY = ("sklearn", "statsmodels", "scipy.stats", "pandas")
START_UP = (
    "import json, sys\n"
    "from api.cli.common import create_cli_app\n"
    "create_cli_app()\n"
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
)


def _giftrec() -> str:
    return str(Path(sys.executable).with_name("giftrec"))


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(CPU s, wall s, peak RSS MiB, last stdout line) of one child."""
    lines, cpu, wall, rss = measured_run(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    return cpu, wall, rss, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="giftrec-cli-start-") as tmp:
        env = dict(
            os.environ,
            GIFTREC_DATABASE_URL=f"sqlite:///{Path(tmp) / 'giftrec.db'}",
            GIFTREC_SERVER_INSTANCE_DIR=str(Path(tmp) / "instance"),
            GIFTREC_MODEL_ARTIFACT_DIR=str(Path(tmp) / "instance" / "models"),
            GIFTREC_SERVER_SECRET_KEY="bench",
        )
        print("setup (not measured): migrate, import the bundled sample...", flush=True)
        for step in (["db", "upgrade"], ["import", "orders", str(SAMPLE), "--format", "online-retail"]):
            subprocess.run([_giftrec(), *step], env=env, check=True, capture_output=True)
        cases = {
            "start-up (create_cli_app)": [sys.executable, "-c", START_UP],
            "giftrec model list": [_giftrec(), "model", "list"],
            "giftrec train": [_giftrec(), "train"],
        }
        runs: dict[str, list[tuple[float, float, float, str]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, cmd in cases.items():
                runs[name].append(_run(cmd, env))
    rows = []
    for name, results in runs.items():
        imported = json.loads(results[-1][3]) if name.startswith("start-up") else None
        rows.append(
            [
                name,
                statistics.median(r[0] for r in results),
                statistics.median(r[1] for r in results),
                statistics.median(r[2] for r in results),
                "-" if imported is None else (", ".join(imported) or "none of them"),
            ]
        )
    print(f"\nmedians of {args.rounds} rounds, each a fresh process")
    print_table(["command", "CPU s", "wall s", "peak RSS MiB", f"imported of {', '.join(HEAVY)}"], rows)


if __name__ == "__main__":
    main()
