"""The package's layers, read from its own imports: no import circle, and no import that runs
from a lower layer back up (docs/architecture.md). The imports are parsed with `ast` from every
module of the package, the lazy ones inside functions and the type-only ones included, so a new
module or a new import is checked without editing this file; only the layer of each stage is
named here."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "costmodel"

#: the stages from the bottom up; a module belongs to the longest prefix that names it
LAYERS = [
    ("costmodel.errors", "costmodel.moved", "costmodel.zoo"),
    ("costmodel.cost", "costmodel.formatting", "costmodel.formulas", "costmodel.symbolic"),
    ("costmodel.capture",),
    ("costmodel.analysis", "costmodel.train"),
    ("costmodel.views",),
    ("costmodel.report",),
    ("costmodel.cli", "costmodel.__main__", "costmodel.device", "costmodel.pytest_plugin",
     "costmodel.lint", "costmodel.latency", "costmodel.bench", "costmodel.budget",
     "costmodel.batch"),
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph() -> nx.DiGraph:
    """module -> the package's modules it imports."""
    names = module_names()
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target in names and target != name:
                    graph.add_edge(name, target)
    return graph


def layer_of(module: str) -> int:
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS)
               for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add its stage to LAYERS"
    return max(matches)[1]


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert graph.number_of_nodes() > 60
    assert graph.has_edge("costmodel.analysis", "costmodel.capture.trace")  # a top-level import
    assert graph.has_edge("costmodel.capture.load", "costmodel.capture.hf")  # a lazy one


def test_no_import_circle() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_no_import_runs_back_up_a_layer() -> None:
    # the package root is every module's parent: each submodule may read its __version__, and
    # it re-exports the public API by name, on first use
    upward = [f"{a} -> {b}" for a, b in import_graph().edges
              if "costmodel" not in (a, b) and layer_of(a) < layer_of(b)]
    assert not upward, "imports from a lower layer up: " + ", ".join(sorted(upward))


def test_every_module_has_a_layer() -> None:
    for module in set(module_names()) - {"costmodel"}:
        layer_of(module)


@pytest.mark.parametrize("old", ["costmodel.load", "costmodel.memory", "costmodel.report.ops_doc",
                                 "costmodel.kvcache", "costmodel.trace", "costmodel.measure"])
def test_documented_old_paths_still_import(old: str) -> None:
    from costmodel.moved import MOVED

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    if old in MOVED:
        assert module is importlib.import_module(MOVED[old])
        assert module.__spec__.name == MOVED[old]
        assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message)
                   for w in caught)


def test_old_attribute_import_is_the_new_object() -> None:
    from costmodel.capture.spec import InputSpec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from costmodel.load import InputSpec as old

    assert old is InputSpec


def test_analysis_moe_is_deprecated_for_the_view() -> None:
    import torch

    from costmodel import analyze
    from costmodel.views.moe import summarize
    from costmodel.zoo import mixtral_tiny

    with torch.device("meta"):
        model = mixtral_tiny()
    analysis = analyze(model)
    with pytest.warns(DeprecationWarning, match="views.moe.summarize"):
        old = analysis.moe
    new = summarize(analysis)
    assert (len(old.layers), old.total_params, old.active_params) == (2, new.total_params,
                                                                 new.active_params)
