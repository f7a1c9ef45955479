"""The benchmarks' shared helpers (fast, no benchmark run)."""

from __future__ import annotations

from pathlib import Path

from bench._common import in_workdir
from domain.leftovers import held_temp_folder


def test_a_temporary_workdir_outlives_a_sweep_of_its_own_prefix():
    """bench_swap fetches artifacts into ``held_temp_folder(prefix)``, which first removes the folders of
    that prefix no live process holds: its own temporary workdir had the same prefix, so it was removed
    under it (the database with it: "unable to open database file" in the second part)."""
    prefix = "giftrec-bench-test-common-"
    seen: list[bool] = []

    def setup(workdir: str) -> None:
        (Path(workdir) / "bench.db").write_text("")

    def measure(workdir: str) -> None:
        with held_temp_folder(prefix=prefix) as other:
            assert other != Path(workdir)
        seen.append((Path(workdir) / "bench.db").exists())

    in_workdir(None, prefix, setup, measure)
    assert seen == [True]
