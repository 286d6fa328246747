"""The layout keeps its promises (docs/architecture.md): one folder per stage, imports
flowing one way, each third-party library in its stage, no import cycles — annotations
and function-local imports included, since a cycle hidden behind TYPE_CHECKING is still
one a reader has to untangle.

Read from the source with ``ast``: no kpsim module is imported here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

from _paths import REPO

SRC = REPO / "src"
PACKAGE = SRC / "kpsim"

#: Stage → rank. A module may import its own stage or a stage of lower rank, never one
#: above it: cli → api → {render, inputs} → {verify, simulate, graph} → {kube, fetch} →
#: {formats, engine} → {model, errors}.
RANK = {
    "model": 0,
    "errors": 0,
    "formats": 1,
    "engine": 1,
    "kube": 2,
    "fetch": 2,
    "graph": 3,
    "simulate": 3,
    "verify": 3,
    "lint": 3,
    "diff": 3,
    "explain": 3,
    "render": 4,
    "inputs": 4,
    "api": 5,
    "cli": 6,
    "__main__": 7,
}
#: Same-rank imports that are part of the design: verify predicts with the sampler;
#: explain judges observed counts with simulate's statistics; diff and lint may share
#: what lint finds.
SIDEWAYS = {("verify", "simulate"), ("explain", "simulate"), ("diff", "lint")}
#: Third-party library → the stages that may import it (docs/architecture.md).
LIBRARIES = {
    "pyparsing": {"formats"},
    "networkx": {"graph"},
    "numpy": {"simulate", "verify", "api"},
    "scipy": {"simulate", "verify"},
    "boto3": {"fetch"},
    "botocore": {"fetch"},
    "rich": {"render", "cli"},
    "click": {"cli"},
    "matplotlib": {"render"},
}
MAX_LINES = 400
#: The only modules allowed at the top of the package; everything else is in a stage.
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with its line, wherever the import
    statement sits: top level, TYPE_CHECKING blocks, functions."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            yield node.module, node.lineno
            for alias in node.names:  # `from kpsim.kube import services`: a module
                yield f"{node.module}.{alias.name}", node.lineno


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def kpsim_edges() -> list[tuple[str, str, str]]:
    """(importer, imported kpsim module, where) for every import between kpsim modules."""
    known = modules()
    edges = []
    for name, path in known.items():
        for target, line in imports(path):
            if target in known and target != name:
                edges.append((name, target, f"{path.relative_to(REPO)}:{line}"))
    return edges


def test_every_module_belongs_to_a_ranked_stage() -> None:
    stray = sorted(
        p.name for p in PACKAGE.iterdir() if p.suffix == ".py" and p.name not in TOP_LEVEL
    )
    assert stray == [], "modules outside a stage folder"
    stages = {stage(m) for m in modules()} - {"__init__"}
    assert stages <= RANK.keys(), f"stages without a rank: {stages - RANK.keys()}"


def test_imports_flow_one_way() -> None:
    wrong = []
    for importer, target, where in kpsim_edges():
        a, b = stage(importer), stage(target)
        if a == b or "__init__" in (a, b):
            continue
        if RANK[b] < RANK[a] or (a, b) in SIDEWAYS:
            continue
        wrong.append(f"{where}: {importer} ({a}) imports {target} ({b})")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = nx.DiGraph((a, b) for a, b, _ in kpsim_edges())
    # a package's __init__ re-exporting its own modules is not a cycle a reader sees
    graph.remove_edges_from(
        [(a, b) for a, b in list(graph.edges) if b.startswith(a + ".") or a.startswith(b + ".")]
    )
    assert list(nx.simple_cycles(graph)) == []


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_each_library_stays_in_its_stage(library: str) -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line}"
        for name, path in modules().items()
        for target, line in imports(path)
        if target.split(".")[0] == library and stage(name) not in LIBRARIES[library]
    ]
    assert wrong == []


def test_modules_stay_small() -> None:
    sizes = {name: len(p.read_text().splitlines()) for name, p in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The rank rule and the cycle rule reject what they should, on a made-up import."""
    assert RANK["engine"] < RANK["kube"]  # kube → engine allowed, engine → kube not
    assert not (RANK["kube"] < RANK["engine"] or ("engine", "kube") in SIDEWAYS)
    bad = tmp_path / "bad.py"
    bad.write_text("from kpsim.kube import services\nif 0:\n    import numpy\n")
    assert [t for t, _ in imports(bad)] == ["kpsim.kube", "kpsim.kube.services", "numpy"]


def test_architecture_doc_matches_the_tree() -> None:
    """docs/architecture.md names every stage folder, and every module it names exists."""
    doc = (REPO / "docs/architecture.md").read_text()
    tree = doc.split("## The tree", 1)[1]
    folders = {p.name for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    assert {f for f in folders if f"{f}/" not in tree} == set()
    files = {p.name for p in PACKAGE.rglob("*.py")}
    named = set(re.findall(r"\b(\w+\.py)\b", tree))
    assert named - files == set()
    assert set(RANK) - {"__main__"} <= {s.rstrip("/").removesuffix(".py") for s in doc.split()}
