"""Reading captures: ``load`` (a path, paths or the fixture set) into ``Loaded``, and
``node`` to pick one of its nodes by name — what every other API call starts from."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
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


class Unconfirmed:
    """The checks a load left to be made (``load``'s ``confirm_later``: each one, that a
    capture read on demand has no jump out of it; True, passed), made once, and the load
    again with every check made as it reads (the whole reader where one fails)."""

    def __init__(self, checks: list[Callable[[], bool]], again: Callable[[], Loaded]) -> None:
        self._checks, self._again = checks, again
        self._passed: bool | None = None

    def passed(self) -> bool:
        if self._passed is None:
            self._passed = all(check() for check in self._checks)
        return self._passed

    def again(self) -> Loaded:
        return self._again()


@dataclass(frozen=True, slots=True)
class Loaded:
    fixture_set: FixtureSet
    nodes: tuple[LoadedNode, ...]
    #: What ``load(confirm_later=True)`` left to check: ``confirmed`` (or ``trace``,
    #: after its walk) makes the checks before an answer is trusted.
    unconfirmed: Unconfirmed | None = None


def load(
    paths: str | Path | Sequence[str | Path] = (),
    *,
    fixtures_dir: str | None = None,
    fmt: Format | None = None,
    strict: bool = False,
    all_files: bool = True,
    lazy: bool = False,
    confirm_later: bool = False,
) -> Loaded:
    """Parse every capture of the chosen nodes (or only their primary files). ``paths``:
    one path (str or Path) or a list of them; none: the fixture set (``fixtures_dir``).
    ``lazy``: build a clean iptables-save's chains when first read (a trace reads a few
    of them; the answers are the same, ``formats.iptables.lazy``). ``confirm_later``
    (with ``lazy``): a check the prescan's child is still making (that no jump leaves a
    capture) is left in ``unconfirmed``, to be made once the answer is computed:
    ``trace`` does, every other call first (``confirmed``)."""
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    chosen = fixtures.select([str(p) for p in given], fixtures_dir)
    later: list[Callable[[], bool]] | None = [] if lazy and confirm_later else None
    nodes = []
    with collector_paused(freeze=True):
        for src in chosen.nodes:
            files = src.files if all_files else (src.primary,)
            rulesets = tuple(
                rs for f in files for rs in _captures(src, f, fmt, strict, lazy, later)
            )
            nodes.append(LoadedNode(src, rulesets))
    if not later:
        return Loaded(chosen, tuple(nodes))

    def again() -> Loaded:
        return load(given, fixtures_dir=fixtures_dir, fmt=fmt, strict=strict,
                    all_files=all_files, lazy=lazy)  # fmt: skip

    return Loaded(chosen, tuple(nodes), Unconfirmed(later, again))


def confirmed(loaded: Loaded) -> Loaded:
    """``loaded`` once every check it left has passed; else loaded again, every check
    made as it reads (what a load without ``confirm_later`` gives)."""
    if loaded.unconfirmed is None or loaded.unconfirmed.passed():
        return loaded
    return loaded.unconfirmed.again()


def _captures(
    src: NodeSource,
    file: Path,
    fmt: Format | None,
    strict: bool,
    lazy: bool = False,
    later: list[Callable[[], bool]] | None = None,
) -> tuple[Ruleset, ...]:
    """A file's captures; a stream's (stdin, a pipe) from the text read when chosen."""
    if src.text is not None and file == src.primary:
        return parse_captures(src.text, str(file), fmt=fmt, strict=strict, lazy=lazy, later=later)
    return load_captures(file, fmt=fmt, strict=strict, lazy=lazy, later=later)


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
