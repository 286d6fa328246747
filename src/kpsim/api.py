"""The library API: one call per stage, usable from a notebook as from the CLI.

select inputs ─▶ load (parse) ─▶ show / trace / simulate ─▶ render

>>> from kpsim import api
>>> loaded = api.load([])            # the default fixture set
>>> report = api.show(loaded)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kpsim import fixtures
from kpsim.fixtures import FixtureSet, NodeSource
from kpsim.model import Format, Ruleset
from kpsim.parse import load_file

# Each stage imports its machinery when called: a notebook's (or `kpsim show`'s) import
# of this module pulls in no trace, simulation or graph code (tests/test_cli_imports.py).
if TYPE_CHECKING:
    import numpy as np

    from kpsim.scenario import TraceReport, TraceRequest
    from kpsim.show import ShowReport
    from kpsim.simulate import SimReport, SimRequest


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

    @property
    def name(self) -> str:
        node = self.primary.metadata.get("node")
        return str(node) if node else self.source.name


@dataclass(frozen=True, slots=True)
class Loaded:
    fixture_set: FixtureSet
    nodes: tuple[LoadedNode, ...]


def load(
    paths: Sequence[str] = (),
    *,
    fixtures_dir: str | None = None,
    fmt: Format | None = None,
    strict: bool = False,
    all_files: bool = True,
) -> Loaded:
    """Parse every capture of the chosen nodes (or only their primary files)."""
    chosen = fixtures.select(paths, fixtures_dir)
    nodes = []
    with _collector_paused(freeze=True):
        for src in chosen.nodes:
            files = src.files if all_files else (src.primary,)
            rulesets = tuple(load_file(f, fmt=fmt, strict=strict) for f in files)
            nodes.append(LoadedNode(src, rulesets))
    return Loaded(chosen, tuple(nodes))


@contextmanager
def _collector_paused(*, freeze: bool = False) -> Iterator[None]:
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


def show(loaded: Loaded) -> ShowReport:
    """Summaries of every capture of every node loaded."""
    from kpsim.show import ShowReport, summarize

    with _collector_paused(freeze=True):
        inputs = tuple(summarize(rs, node.name) for node in loaded.nodes for rs in node.rulesets)
    return ShowReport(loaded.fixture_set.label, loaded.fixture_set.origin, inputs)


def trace(loaded: Loaded, request: TraceRequest) -> TraceReport:
    """Trace one connection on every loaded node (their primary captures)."""
    from kpsim.scenario import NodeInput, trace_nodes

    inputs = [NodeInput(node.name, node.primary) for node in loaded.nodes]
    return trace_nodes(inputs, request)


def simulate(
    loaded: Loaded,
    request: SimRequest,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> SimReport:
    """Many simulated connections through every loaded node, drawn as the kernel draws."""
    from kpsim.scenario import NodeInput
    from kpsim.simulate import simulate as run

    inputs = [NodeInput(node.name, node.primary) for node in loaded.nodes]
    return run(inputs, request, rng, progress)
