"""Reading captures: ``load`` (a path, paths or the fixture set) into ``Loaded``, and
``node`` to pick one of its nodes by name — what every other API call starts from."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kpsim.formats import load_captures, parse_captures
from kpsim.inputs import fixtures
from kpsim.inputs.fixtures import FixtureSet, NodeSource
from kpsim.model import Family, Format, Ruleset

# Each stage imports its machinery when called: a notebook's (or `kpsim show`'s) import
# of this module pulls in no trace, simulation or graph code (tests/test_cli_imports.py).
if TYPE_CHECKING:
    pass


@dataclass(frozen=True, slots=True)
class LoadedNode:
    """A node's captures, parsed; ``primary`` is the one traces use."""

    source: NodeSource
    rulesets: tuple[Ruleset, ...]

    @property
    def primary(self) -> Ruleset:
        for rs in self.rulesets:
            if rs.path == str(self.source.primary):
                return rs
        return self.rulesets[0]

    def primary_for(self, dest: str | None) -> Ruleset:
        """The primary file's capture of ``dest``'s family (IPv4 when no destination is
        given: a NodePort on the node's own address), when the file holds both."""
        want = Family.IPV6 if dest is not None and ":" in dest else Family.IPV4
        own = [rs for rs in self.rulesets if rs.path == str(self.source.primary)]
        return next((rs for rs in own if rs.family is want), self.primary)

    @property
    def name(self) -> str:
        node = self.primary.metadata.get("node")
        return str(node) if node else self.source.name


@dataclass(frozen=True, slots=True)
class Loaded:
    fixture_set: FixtureSet
    nodes: tuple[LoadedNode, ...]


def load(
    paths: str | Path | Sequence[str | Path] = (),
    *,
    fixtures_dir: str | None = None,
    fmt: Format | None = None,
    strict: bool = False,
    all_files: bool = True,
    lazy: bool = False,
) -> Loaded:
    """Parse every capture of the chosen nodes (or only their primary files). ``paths``:
    one path (str or Path) or a list of them; none: the fixture set (``fixtures_dir``).
    ``lazy``: build a clean iptables-save's chains when first read (a trace reads a few
    of them; the answers are the same, ``formats.iptables.lazy``)."""
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    chosen = fixtures.select([str(p) for p in given], fixtures_dir)
    nodes = []
    with collector_paused(freeze=True):
        for src in chosen.nodes:
            files = src.files if all_files else (src.primary,)
            rulesets = tuple(rs for f in files for rs in _captures(src, f, fmt, strict, lazy))
            nodes.append(LoadedNode(src, rulesets))
    return Loaded(chosen, tuple(nodes))


def _captures(
    src: NodeSource, file: Path, fmt: Format | None, strict: bool, lazy: bool = False
) -> tuple[Ruleset, ...]:
    """A file's captures; a stream's (stdin, a pipe) from the text read when chosen."""
    if src.text is not None and file == src.primary:
        return parse_captures(src.text, str(file), fmt=fmt, strict=strict, lazy=lazy)
    return load_captures(file, fmt=fmt, strict=strict, lazy=lazy)


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """The cyclic GC off while a stage builds acyclic data (``freeze``: then moved out
    of its sight for good).

    The model is immutable, acyclic and lives as long as the command. Collecting while
    it is built rescans everything built so far (0.26 s on a 10,000-service dump,
    measured); without the freeze, later full collections re-scan millions of objects
    and make later stages ~10× slower (1.0 s → 0.1 s). ``show`` builds ~1M summary
    objects as long-lived as the model: without the freeze, the first collection after
    the pause would scan them all (0.03 s, measured)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze:
            gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


def node(loaded: Loaded, wanted: str | None) -> LoadedNode:
    """The first node, or the one named (full or short name), as ``trace --node``."""
    from kpsim.errors import UsageError

    if wanted is None:
        return loaded.nodes[0]
    for candidate in loaded.nodes:
        if wanted in (candidate.name, candidate.name.split(".")[0], candidate.source.name):
            return candidate
    names = ", ".join(n.name for n in loaded.nodes)
    raise UsageError(f"--node {wanted}: no such node (nodes: {names})")


def raw_text(chosen: LoadedNode, rs: Ruleset) -> str | None:
    """A capture's text as read (lint looks at lines the parser skips); None when gone."""
    if chosen.source.text is not None and rs.path == str(chosen.source.primary):
        return chosen.source.text
    try:
        return Path(rs.path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
