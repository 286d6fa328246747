"""The analysis commands: ``lint``, ``diff``/``diff_nodes`` (by meaning), ``counters``,
``why`` and ``observed`` (observed counts against the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from kpsim.api.load import Loaded, confirmed, node, raw_text

# Each stage imports its machinery when called: a notebook's (or `kpsim show`'s) import
# of this module pulls in no trace, simulation or graph code (tests/test_cli_imports.py).
if TYPE_CHECKING:
    import numpy as np

    from kpsim.diff import DiffReport
    from kpsim.explain.counters import CountersReport
    from kpsim.explain.simfit import ObservedFit
    from kpsim.explain.why import WhyReport
    from kpsim.lint import LintReport
    from kpsim.simulate.run import SimReport


def lint(loaded: Loaded, wanted: str | None = None, node_ips: Sequence[str] = ()) -> LintReport:
    """Findings over every loaded capture (or one node's, ``wanted``): black holes,
    services without endpoints, uneven cascades, dead and stale rules, partial captures,
    NodePorts that do not answer on the node's addresses (``node_ips`` add to metadata)."""
    from kpsim.lint import LintInput, lint_nodes

    loaded = confirmed(loaded)
    nodes = loaded.nodes if wanted is None else (node(loaded, wanted),)
    ips = tuple(node_ips)
    inputs = [
        LintInput(n.name, rs, raw_text(n, rs), ips) for n in loaded.nodes for rs in n.rulesets
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

    before, after = confirmed(before), confirmed(after)
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

    loaded = confirmed(loaded)
    states = [node_state(n.name, n.primary) for n in loaded.nodes]
    label = loaded.fixture_set.label
    return DiffReport("nodes", label, label, tuple(disagreements(states)), inputs=tuple(states))


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

    loaded = confirmed(loaded)
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
    a, b = loaded.nodes[0], confirmed(later).nodes[0]
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

    loaded = confirmed(loaded)
    nodes = [(x.name, x.primary) for x in loaded.nodes]
    return run(nodes, rng, port=port, service=service, observed=observed, n=n,
               connections=connections, requests=requests)  # fmt: skip


def observed(report: SimReport, path: str) -> ObservedFit:
    """A user's per-pod counts (CSV or JSON) against a simulated service's exact shares."""
    from kpsim.explain.simfit import simulated_fit

    return simulated_fit(report, path)
