"""One function per command over what ``load`` returned: ``show``, ``trace``, ``simulate``,
``graph``, ``verify``, and ``fetch_ssm``/``fetch_local`` that make captures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

from kpsim.api.load import Loaded, LoadedNode, collector_paused, confirmed

# Each stage imports its machinery when called: a notebook's (or `kpsim show`'s) import
# of this module pulls in no trace, simulation or graph code (tests/test_cli_imports.py).
if TYPE_CHECKING:
    import numpy as np

    from kpsim.fetch.aws import AwsClients
    from kpsim.fetch.local import LocalTarget
    from kpsim.fetch.model import FetchReport, FetchRequest, ProgressEvent
    from kpsim.graph.model import GraphView
    from kpsim.kube.scenario import TraceReport, TraceRequest
    from kpsim.kube.show import ShowReport
    from kpsim.simulate.run import SimReport, SimRequest
    from kpsim.verify.predict import VerifyRequest
    from kpsim.verify.run import Probe, VerifyReport


def show(loaded: Loaded) -> ShowReport:
    """Summaries of every capture of every node loaded."""
    from kpsim.kube.show import ShowReport, summarize

    loaded = confirmed(loaded)
    with collector_paused(freeze=True):
        inputs = tuple(summarize(rs, node.name) for node in loaded.nodes for rs in node.rulesets)
    return ShowReport(loaded.fixture_set.label, loaded.fixture_set.origin, inputs)


def trace(loaded: Loaded, request: TraceRequest) -> TraceReport:
    """Trace one connection on every loaded node (their primary captures). The checks a
    load left (``load``'s ``confirm_later``) are made once the walk is done, while the
    prescan's child finishes them; when one fails, the walk is made again on the model
    the whole reader gives, and only that answer is returned."""
    from kpsim.kube.scenario import NodeInput, trace_nodes

    def walk(model: Loaded) -> TraceReport:
        inputs = [NodeInput(node.name, node.primary_for(request.dest)) for node in model.nodes]
        return trace_nodes(inputs, request)

    unconfirmed = loaded.unconfirmed
    if unconfirmed is None:
        return walk(loaded)
    try:
        report = walk(loaded)
    except Exception:  # on a model the checks may yet reject: the whole reader's answers
        if unconfirmed.passed():
            raise
        return walk(unconfirmed.again())
    return report if unconfirmed.passed() else walk(unconfirmed.again())


def simulate(
    loaded: Loaded,
    request: SimRequest,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> SimReport:
    """Many simulated connections through every loaded node, drawn as the kernel draws."""
    from kpsim.kube.scenario import NodeInput
    from kpsim.simulate.run import simulate as run

    loaded = confirmed(loaded)
    inputs = [NodeInput(node.name, node.primary) for node in loaded.nodes]
    return run(inputs, request, rng, progress)


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

    fresh = confirmed(loaded)
    if fresh is not loaded:  # loaded again: the same node in it
        chosen = next(n for n in fresh.nodes if n.source == chosen.source)
        loaded = fresh
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

    loaded = confirmed(loaded)
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
