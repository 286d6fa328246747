"""The library API: one call per stage, usable from a notebook as from the CLI.

    fetch ─▶ fixtures ─▶ load (parse) ─▶ show / trace / graph / simulate / verify ─▶ render

One function per command: ``fetch_ssm``/``fetch_local``, ``load``, ``show``, ``trace``,
``graph``, ``simulate``, ``verify``. The CLI (kpsim.cli) only turns options into these calls.

>>> from kpsim import api
>>> loaded = api.load([])            # the default fixture set
>>> report = api.show(loaded)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from kpsim.formats import load_captures, parse_captures
from kpsim.inputs import fixtures
from kpsim.inputs.fixtures import FixtureSet, NodeSource
from kpsim.model import Family, Format, Ruleset

# Each stage imports its machinery when called: a notebook's (or `kpsim show`'s) import
# of this module pulls in no trace, simulation or graph code (tests/test_cli_imports.py).
if TYPE_CHECKING:
    import numpy as np

    from kpsim.diff import DiffReport
    from kpsim.explain.counters import CountersReport
    from kpsim.explain.simfit import ObservedFit
    from kpsim.explain.why import WhyReport
    from kpsim.fetch.aws import AwsClients
    from kpsim.fetch.local import LocalTarget
    from kpsim.fetch.model import FetchReport, FetchRequest, ProgressEvent
    from kpsim.graph.model import GraphView
    from kpsim.kube.scenario import TraceReport, TraceRequest
    from kpsim.kube.show import ShowReport
    from kpsim.lint import LintReport
    from kpsim.simulate.run import SimReport, SimRequest
    from kpsim.verify.predict import VerifyRequest
    from kpsim.verify.run import Probe, VerifyReport


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
    with _collector_paused(freeze=True):
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
    from kpsim.kube.show import ShowReport, summarize

    with _collector_paused(freeze=True):
        inputs = tuple(summarize(rs, node.name) for node in loaded.nodes for rs in node.rulesets)
    return ShowReport(loaded.fixture_set.label, loaded.fixture_set.origin, inputs)


def trace(loaded: Loaded, request: TraceRequest) -> TraceReport:
    """Trace one connection on every loaded node (their primary captures)."""
    from kpsim.kube.scenario import NodeInput, trace_nodes

    inputs = [NodeInput(node.name, node.primary_for(request.dest)) for node in loaded.nodes]
    return trace_nodes(inputs, request)


def simulate(
    loaded: Loaded,
    request: SimRequest,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> SimReport:
    """Many simulated connections through every loaded node, drawn as the kernel draws."""
    from kpsim.kube.scenario import NodeInput
    from kpsim.simulate.run import simulate as run

    inputs = [NodeInput(node.name, node.primary) for node in loaded.nodes]
    return run(inputs, request, rng, progress)


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


def graph(
    loaded: Loaded,
    chosen: LoadedNode,
    port: int | None = None,
    service: str | None = None,
    node_ips: Sequence[str] = (),
) -> GraphView:
    """The whole nat table, or one service's subgraph; with ``port``, the traced paths
    marked (most probable first). A port kpsim cannot trace still draws, with a note;
    what the capture lacks is a note too (``capture: …``)."""
    from kpsim.errors import TraceError
    from kpsim.graph import build
    from kpsim.graph.model import fraction_text, highlight
    from kpsim.kube.scenario import TraceRequest
    from kpsim.render.capture import capture_text

    rs = chosen.primary
    selector: str | int | None = port if port is not None else service
    g = build.flow_graph(rs) if selector is None else build.service_subgraph(rs, selector)
    gaps = capture_text(rs.capture)
    notes = [gaps] if gaps else []
    view = replace(build.graph_view(g, f"{chosen.name} ({rs.path})", notes), capture=rs.capture)
    if port is None:
        return view
    try:
        request = TraceRequest(port=port, node=chosen.name, node_ips=tuple(node_ips))
        report = trace(loaded, request)
    except TraceError as exc:
        unmarked = build.graph_view(g, view.title, [*notes, f"not highlighted: {exc}"])
        return replace(unmarked, capture=rs.capture)
    traced = report.nodes[0] if report.nodes else None
    if traced is None or not traced.outcomes:
        return view
    best = traced.outcomes[0]
    # Shares within the kernel's quantisation of the best one are a tie, not a winner:
    # every tied path gets the top mark (one merged path), none is singled out.
    quantum = Fraction(len(traced.outcomes), 2**31)
    top = best.outcome.probability
    tied = [o for o in traced.outcomes if top - o.outcome.probability <= quantum]
    rest = [o.outcome.path for o in traced.outcomes if top - o.outcome.probability > quantum]
    paths = [tuple(step for o in tied for step in o.outcome.path), *rest]
    if len(tied) > 1:
        notes.append(
            f"highlighted: trace of {traced.result.packet}; {len(tied)} outcomes tie at "
            f"≈ {float(top):.2%} each (equal up to the kernel's 2^-31 steps): all drawn "
            "as the most probable, none singled out"
        )
    else:
        notes.append(
            f"highlighted: trace of {traced.result.packet}; most probable: "
            f"{best.outcome.verdict.value} {best.destination} "
            f"(p = {fraction_text(best.outcome.probability)})"
        )
    notes += [n for n in traced.context_notes if n.startswith("no node address")]
    marked = highlight(view, paths)
    return replace(marked, notes=tuple(notes), capture=rs.capture)


def verify(loaded: Loaded, request: VerifyRequest, probe: Probe | None = None) -> VerifyReport:
    """Replay every loaded node's rules in the real kernel and compare with kpsim's answer
    (needs root; ``kpsim.verify.run.require_kernel`` says why not)."""
    from kpsim.kube.scenario import NodeInput
    from kpsim.verify.run import verify as run

    inputs = [NodeInput(x.name, x.primary) for x in loaded.nodes]
    label = f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})"
    return run(inputs, request, fixture_set=label, probe=probe)


def fetch_ssm(
    request: FetchRequest,
    clients: AwsClients,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> FetchReport:
    """Pull nodes' rules over SSM Run Command into verified fixtures (read-only commands
    only; ``kpsim.fetch.aws.make_clients`` builds ``clients`` from boto3's chain)."""
    from kpsim.fetch import fetch_ssm as run
    from kpsim.fetch.model import no_progress

    return run(request, clients, progress=progress or no_progress)


def fetch_local(
    request: FetchRequest,
    targets: Sequence[LocalTarget],
    progress: Callable[[ProgressEvent], None] | None = None,
) -> FetchReport:
    """Capture this machine, a network namespace, or nodes through kubectl."""
    from kpsim.fetch import fetch_local as run
    from kpsim.fetch.model import FetchReport, NodeResult, no_progress

    results: list[NodeResult] = []
    for target in targets:
        results += run(request, target, progress=progress or no_progress).results
    return FetchReport(tuple(results))


def generator(seed: int | None = None) -> tuple[int, np.random.Generator]:
    """A seeded random generator for ``simulate`` and the seed it used (a fresh one,
    printed by the CLI so a run can be repeated, when ``seed`` is None)."""
    import numpy as np

    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))  # type: ignore[operator]
    return seed, np.random.default_rng(seed)


def _raw_text(chosen: LoadedNode, rs: Ruleset) -> str | None:
    """A capture's text as read (lint looks at lines the parser skips); None when gone."""
    if chosen.source.text is not None and rs.path == str(chosen.source.primary):
        return chosen.source.text
    try:
        return Path(rs.path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def lint(loaded: Loaded, wanted: str | None = None, node_ips: Sequence[str] = ()) -> LintReport:
    """Findings over every loaded capture (or one node's, ``wanted``): black holes,
    services without endpoints, uneven cascades, dead and stale rules, partial captures,
    NodePorts that do not answer on the node's addresses (``node_ips`` add to metadata)."""
    from kpsim.lint import LintInput, lint_nodes

    nodes = loaded.nodes if wanted is None else (node(loaded, wanted),)
    ips = tuple(node_ips)
    inputs = [
        LintInput(n.name, rs, _raw_text(n, rs), ips) for n in loaded.nodes for rs in n.rulesets
    ]
    report = lint_nodes(inputs, f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})")
    if wanted is None:
        return report
    keep = {n.name for n in nodes}
    return replace(report, findings=tuple(f for f in report.findings if f.node in keep))


def diff(before: Loaded, after: Loaded) -> DiffReport:
    """What changed from ``before`` to ``after`` (two captures, or two snapshots of a
    fleet, matched node by node), by service, frontend and endpoint."""
    from kpsim.diff import DiffReport, compare, node_state, pair_nodes

    left = [node_state(n.name, n.primary) for n in before.nodes]
    right = [node_state(n.name, n.primary) for n in after.nodes]
    pairs, only_left, only_right = pair_nodes(left, right)
    changes = tuple(c for a, b in pairs for c in compare(a, b))
    return DiffReport(
        "captures",
        before.fixture_set.label,
        after.fixture_set.label,
        changes,
        tuple(only_left),
        tuple(only_right),
        (*left, *right),
    )


def diff_nodes(loaded: Loaded) -> DiffReport:
    """Where the nodes of one snapshot disagree about a service (a node lagging behind)."""
    from kpsim.diff import DiffReport, disagreements, node_state

    states = [node_state(n.name, n.primary) for n in loaded.nodes]
    label = loaded.fixture_set.label
    return DiffReport("nodes", label, label, tuple(disagreements(states)), inputs=tuple(states))


# ---------------------------------------------------------------- explain (#19)


def counters(
    loaded: Loaded,
    later: Loaded | None = None,
    *,
    port: int | None = None,
    service: str | None = None,
) -> list[CountersReport]:
    """Rule counters against the rules' shares, per node; with ``later`` (a second
    capture of the same node), the counters' difference later − earlier."""
    from kpsim.errors import UsageError
    from kpsim.explain.counters import CountersReport, count

    if later is None:  # a node without the service says so; none with it is an error
        reports, missing = [], []
        for n in loaded.nodes:
            try:
                reports.append(count([n.primary], n.name, port=port, service=service))
            except UsageError as exc:
                missing.append(exc)
                reports.append(CountersReport(n.name, (n.primary.path,), True, (), (str(exc),)))
        if len(missing) == len(reports):
            raise missing[0]
        return reports
    if len(loaded.nodes) != 1 or len(later.nodes) != 1:
        raise UsageError("two captures to subtract must each be one node's capture (a file)")
    a, b = loaded.nodes[0], later.nodes[0]
    return [count([a.primary, b.primary], b.name, port=port, service=service)]


def why(
    loaded: Loaded,
    rng: np.random.Generator,
    *,
    port: int | None = None,
    service: str | None = None,
    observed: str | None = None,
    n: int = 1_000,
    connections: int = 4,
    requests: int = 1_000,
) -> WhyReport:
    """What explains uneven load on one service, ranked, judged against the captures."""
    from kpsim.explain.why import why as run

    nodes = [(x.name, x.primary) for x in loaded.nodes]
    return run(nodes, rng, port=port, service=service, observed=observed, n=n,
               connections=connections, requests=requests)  # fmt: skip


def observed(report: SimReport, path: str) -> ObservedFit:
    """A user's per-pod counts (CSV or JSON) against a simulated service's exact shares."""
    from kpsim.explain.simfit import simulated_fit

    return simulated_fit(report, path)
