"""recommender/ stays pure and domain/ never imports Flask: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after_import(package: str) -> set[str]:
    code = (
        f"import importlib, pkgutil, sys, {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_recommender_imports_neither_flask_nor_sqlalchemy():
    loaded = _loaded_after_import("recommender")
    assert "flask" not in loaded
    assert "sqlalchemy" not in loaded
    assert not loaded & {"api", "domain", "jobs"}


@pytest.mark.parametrize("package", ["domain", "config"])
def test_domain_and_config_never_import_flask(package):
    loaded = _loaded_after_import(package)
    assert "flask" not in loaded
    assert not loaded & {"api", "jobs"}
