"""Where a command's input comes from: files, node folders, cluster folders.

    fixtures/iptables/                       a root of fixture sets
      eks-nodeport-workshop/                 a fixture set = one cluster
        ip-10-11-28-53/                      a node folder
          iptables-save.txt                  the node's rules (primary: complete, exact)
          iptables-nat.txt                   other captures of the same state
          iptables-nat-L.txt

With no PATH: ``--fixtures DIR``, else ``$KPSIM_FIXTURES``, else ``./fixtures/iptables``,
else the samples packaged inside kpsim, so a fresh install answers at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kpsim.errors import UsageError

#: The file a node folder's rules are read from when several captures sit together:
#: iptables-save is complete (all tables, policies, exact options); listings lose detail.
PRIMARY_NAMES = ("iptables-save.txt", "iptables-save", "rules.save", "ip6tables-save.txt")
CAPTURE_SUFFIXES = (".txt", ".save", ".rules", ".log", ".md", "")


@dataclass(frozen=True, slots=True)
class NodeSource:
    """One node's captures: ``primary`` feeds trace/simulate, all feed ``show``."""

    name: str
    primary: Path
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class FixtureSet:
    """The nodes one command looks at, and how they were chosen (shown to the user)."""

    label: str
    origin: str
    nodes: tuple[NodeSource, ...]


def _is_capture(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix in CAPTURE_SUFFIXES


def _node_from_dir(path: Path) -> NodeSource | None:
    files = tuple(sorted(p for p in path.iterdir() if _is_capture(p)))
    if not files:
        return None
    primary = next((path / n for n in PRIMARY_NAMES if (path / n).is_file()), files[0])
    return NodeSource(path.name, primary, files)


def _nodes_in(path: Path) -> tuple[NodeSource, ...]:
    """A folder is a node folder, a cluster folder of node folders, or a root of sets."""
    own = _node_from_dir(path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if own is not None and not subdirs:
        return (own,)
    nodes = tuple(n for n in (_node_from_dir(d) for d in subdirs) if n is not None)
    if nodes:
        return nodes
    clusters = [d for d in subdirs if _nodes_in_quiet(d)]
    if len(clusters) == 1:
        return _nodes_in(clusters[0])
    if len(clusters) > 1:
        names = ", ".join(str(c) for c in clusters)
        raise UsageError(f"{path} holds several fixture sets ({names}): pass one of them")
    return (own,) if own is not None else ()


def _nodes_in_quiet(path: Path) -> bool:
    try:
        return bool(_nodes_in(path))
    except UsageError:
        return True


def resolve_paths(paths: Sequence[str]) -> FixtureSet:
    """Files become one node each; folders expand as described in the module doc."""
    nodes: list[NodeSource] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            nodes.append(NodeSource(path.stem, path, (path,)))
        elif path.is_dir():
            found = _nodes_in(path)
            if not found:
                raise UsageError(f"{path}: no rule captures found in this folder")
            nodes.extend(found)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return FixtureSet(", ".join(paths), "paths given", tuple(nodes))


def packaged_fixtures() -> Path:
    """The sample fixtures inside the installed package (or the source tree)."""
    package = Path(__file__).resolve().parents[1]  # kpsim/, this module is kpsim/inputs/
    for candidate in (package / "_fixtures", package.parents[1] / "fixtures" / "iptables"):
        if candidate.is_dir():
            return candidate
    raise UsageError("kpsim's packaged sample fixtures are missing: reinstall kpsim")


def default_set(
    fixtures_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> FixtureSet:
    """The fixture set used when no PATH is given (see module doc for the order)."""
    env = os.environ if env is None else env
    here = Path() if cwd is None else cwd  # relative paths read better in every message
    if fixtures_dir:
        root, origin = Path(fixtures_dir), "--fixtures"
    elif env.get("KPSIM_FIXTURES"):
        root, origin = Path(env["KPSIM_FIXTURES"]), "$KPSIM_FIXTURES"
    elif (here / "fixtures" / "iptables").is_dir():
        root, origin = here / "fixtures" / "iptables", "./fixtures/iptables"
    else:
        root, origin = packaged_fixtures(), "kpsim's packaged samples"
    if not root.is_dir():
        raise UsageError(f"{root}: fixture folder not found ({origin})")
    nodes = _nodes_in(root)
    if not nodes:
        raise UsageError(f"{root}: no rule captures found ({origin})")
    common = os.path.commonpath([str(n.primary.parent) for n in nodes])
    return FixtureSet(_display(Path(common)), origin, nodes)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def select(paths: Sequence[str], fixtures_dir: str | None = None) -> FixtureSet:
    return resolve_paths(paths) if paths else default_set(fixtures_dir)
