"""Shared helpers of the hand-run benchmarks: medians, percentiles, tables, child processes with peak RSS."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from domain.leftovers import held_temp_folder

__all__ = [
    "ChildResult",
    "buyers_and_skus",
    "machine_busy_seconds",
    "uci_history",
    "in_workdir",
    "machine_line",
    "measured_run",
    "median",
    "percentile",
    "print_table",
    "rss_mib",
    "run_child",
    "tree_cpu_seconds",
    "vm_hwm_mib",
]


def in_workdir(
    workdir: str | None, prefix: str, setup: Callable[[str], None], measure: Callable[[str], None]
) -> None:
    """``measure`` in ``workdir`` (kept; ``setup`` first when it holds no ``bench.db`` yet), or in a
    temporary folder set up for this run, held while it runs and removed after."""
    if workdir:
        if not (Path(workdir) / "bench.db").exists():
            Path(workdir).mkdir(parents=True, exist_ok=True)
            setup(workdir)
        measure(workdir)
        return
    # Held (domain.leftovers): a folder of the same prefix that a step of the benchmark makes with
    # held_temp_folder sweeps the ones no process holds, which removed this one while it was in use.
    with held_temp_folder(prefix) as tmp:
        setup(str(tmp))
        measure(str(tmp))


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of an empty sequence")
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (Linux), 0 where the file does not exist."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib() -> float:
    """Current resident memory of this process in MiB (VmRSS)."""
    return _status_kib("VmRSS") / 1024


def vm_hwm_mib() -> float:
    """Peak resident memory of this process so far in MiB (VmHWM)."""
    return _status_kib("VmHWM") / 1024


def machine_line() -> str:
    """Cores, memory, Python, date and load: the first line of every benchmark's output."""
    mem_kib = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            mem_kib = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load n/a"
    return (
        f"{os.cpu_count()} cores, {mem_kib / 1024 / 1024:.1f} GiB, Python {platform.python_version()} "
        f"{platform.machine()}, {dt.datetime.now().astimezone().isoformat(timespec='minutes')}, {load}"
    )


class ChildResult(dict[str, Any]):
    """The JSON object a child printed last, plus ``peak_rss_mib`` (its ru_maxrss from wait4) and
    ``cpu_seconds`` (its user + system time)."""


def measured_run(
    cmd: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    stderr: int | None = None,
) -> tuple[list[str], float, float, float]:
    """Run ``cmd`` in a fresh process: (its non-empty stdout lines, CPU s (user + system), wall s, peak
    RSS MiB). Exits the benchmark if the command fails.

    The CPU and the peak resident set size come from ``wait4`` on this child only, so each run's are its
    own (``resource.getrusage(RUSAGE_CHILDREN)`` would report the largest child so far). The child's
    stderr passes through unless ``stderr`` says otherwise (``subprocess.DEVNULL``).
    """
    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=stderr, cwd=cwd, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {' '.join(cmd)} failed with exit code {proc.returncode}")
    lines = [line for line in out.decode().splitlines() if line.strip()]
    return lines, usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024  # Linux reports KiB


def run_child(args: Sequence[str], *, cwd: str | Path | None = None) -> ChildResult:
    """Run ``python <args>`` in a fresh process (:func:`measured_run`); return its last stdout line
    (JSON) with its peak RSS (``peak_rss_mib``) and CPU (``cpu_seconds``)."""
    lines, cpu, _, rss = measured_run([sys.executable, *args], cwd=cwd)
    if not lines:
        raise SystemExit(f"benchmark child {' '.join(args)} printed nothing")
    result = ChildResult(json.loads(lines[-1]))
    result["peak_rss_mib"] = rss
    result["cpu_seconds"] = cpu
    return result


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a right-aligned plain-text table; floats get two decimals, large ints thousands separators."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for r in text:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


def uci_history(
    doc: str, argv: list[str] | None, default: str | None = None, *, other_formats: bool = False
) -> tuple[argparse.Namespace, Any]:
    """Parse ``DATA [--test-days N] [--k K]`` and read the UCI file with the import's cleaning rules.

    With `other_formats` a ``--format`` option (default ``online-retail``) also reads the import's other
    formats, such as ``generic`` (the generated shops of ``bench.shop_data generate``).
    Returns the arguments and the `OrderHistory`; exits with status 2 when the file does not exist.
    """
    from domain.customers.sources import read_order_lines
    from domain.serving.evaluation import history_from_lines

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("data", nargs="?" if default else None, default=default)
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--k", type=int, default=10)
    if other_formats:
        parser.add_argument("--format", default="online-retail", help="the import's file format")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"no such file: {args.data}", file=sys.stderr)
        raise SystemExit(2)
    fmt = getattr(args, "format", "online-retail")
    return args, history_from_lines(read_order_lines(args.data, fmt).lines)


def buyers_and_skus(session: Any, sku_limit: int | None = None) -> tuple[list[str], list[str]]:
    """The shop ids of every customer with an order (sorted), and the SKUs sold, most order lines first."""
    from sqlalchemy import func, select

    from domain.models import Customer, Order, OrderLine, Product

    customers = sorted(
        session.scalars(select(Customer.external_id).join(Order, Order.customer_id == Customer.id).distinct())
    )
    skus = list(
        session.scalars(
            select(Product.sku)
            .join(OrderLine, OrderLine.product_id == Product.id)
            .group_by(Product.sku)
            .order_by(func.count().desc())
            .limit(sku_limit)
        )
    )
    return customers, skus


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime + cutime + cstime in clock ticks) of a live process (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu_seconds(roots: Sequence[int]) -> float:
    """User + system CPU seconds of the processes ``roots`` and all their live descendants, each with its
    reaped children (Linux ``/proc``).

    A process that exited and was waited for is counted in its parent's ``cutime``/``cstime``: the
    difference of two samples is the tree's CPU between them, whether its children (PostgreSQL's
    backends, gunicorn's workers) lived throughout or came and went.
    """
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = _proc_stat(int(entry.name))
            if found is not None:
                stats[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    ticks, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        ticks += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle and iowait since boot (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(f) for f in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
