"""The layout holds: layers import only downwards, no module imports itself round a circle, and
recommender/ stays pure (checked in a fresh interpreter). docs/architecture.md draws the same layers."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import grimp
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

PACKAGES = ("api", "config", "domain", "jobs", "recommender")

#: Top to bottom; each may import only what stands below it. api and jobs are independent doors.
PROJECT_LAYERS = (grimp.Layer("api", "jobs"), grimp.Layer("domain"), grimp.Layer("recommender"), "config")

#: domain/'s capabilities, top to bottom. catalog and access are independent of each other; the bottom
#: layer (models, db, errors, locks, logs, metrics, origin, schema) is shared by all and may use itself.
DOMAIN_LAYERS = (
    grimp.Layer("demo"),
    grimp.Layer("review"),
    grimp.Layer("lifecycle"),
    grimp.Layer("reminders"),
    grimp.Layer("serving"),
    grimp.Layer("customers"),
    grimp.Layer("messaging"),
    grimp.Layer("catalog", "access"),
    grimp.Layer("models", "db", "errors", "locks", "logs", "metrics", "origin", "schema", independent=False),
)


def _build() -> grimp.ImportGraph:
    # No cache: a cached graph can lag behind files just moved.
    return grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return _build()


def _illegal(graph: grimp.ImportGraph) -> list[str]:
    found = graph.find_illegal_dependencies_for_layers(layers=PROJECT_LAYERS)
    found |= graph.find_illegal_dependencies_for_layers(layers=DOMAIN_LAYERS, containers={"domain"})
    return sorted(
        f"{dep.importer} -> {dep.imported} (via {', '.join(sorted(r.heads))})"
        for dep in found
        for r in dep.routes
    )


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module: each is an import circle."""
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    edges = [
        (index[m], index[d])
        for m in modules
        for d in graph.find_modules_directly_imported_by(m)
        if d in index
    ]
    rows, cols = zip(*edges, strict=True) if edges else ((), ())
    adjacency = csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(modules), len(modules)))
    _, labels = connected_components(adjacency, directed=True, connection="strong")
    sizes = Counter(labels.tolist())
    return [
        [m for m, lab in zip(modules, labels, strict=True) if lab == label]
        for label, n in sizes.items()
        if n > 1
    ]


def test_every_layer_imports_only_the_layers_below(graph: grimp.ImportGraph) -> None:
    assert _illegal(graph) == []


def test_no_module_imports_itself_round_a_circle(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_checks_catch_an_upward_import_and_a_circle() -> None:
    """The two checks above can fail: an import added to a graph of its own is reported."""
    graph = _build()
    graph.add_import(importer="domain.catalog.snapshot", imported="domain.reminders.planning")
    assert any(line.startswith("domain.catalog -> domain.reminders") for line in _illegal(graph))
    graph.add_import(importer="domain.reminders.planning", imported="domain.catalog.snapshot")
    graph.add_import(importer="domain.messaging.signing", imported="domain.messaging.links")
    assert any({"domain.messaging.links", "domain.messaging.signing"} <= set(c) for c in _cycles(graph))
    graph.add_import(importer="recommender.base", imported="domain.db")
    assert any(line.startswith("recommender -> domain") for line in _illegal(graph))


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
