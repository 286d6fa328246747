"""Counts ─▶ what they mean: shares, intervals, χ², cross-node and masquerade shares,
affinity effects, and the verdict and remarks in words.

    counts[entry node, outcome] + exact[entry node][outcome] + weights ─▶ ServiceSim
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from kpsim.engine.trace import Disposition, Outcome
from kpsim.kube.scenario import Pod, same_node
from kpsim.simulate import stats
from kpsim.simulate.plan import NodePlan
from kpsim.simulate.request import SimRequest, Target, client_ip
from kpsim.simulate.sampler import RECENT_CAPACITY, Tally


@dataclass(frozen=True, slots=True)
class OutcomeStat:
    """One way a connection ends (a DNAT endpoint, or DROP/REJECT/…), over all entries."""

    verdict: str
    destination: str
    pod: Pod | None
    count: int
    share: float
    expected: Fraction
    ci95: tuple[float, float]
    masquerade: bool | None  # None: unknown (POSTROUTING not captured) or not delivered


@dataclass(frozen=True, slots=True)
class EntryStat:
    node: str
    connections: int
    counts: tuple[tuple[str, int], ...]  # (verdict + destination label, count)
    expected: tuple[tuple[str, Fraction], ...]
    cross_node: int | None


@dataclass(frozen=True, slots=True)
class AffinityStat:
    """How ``recent`` lists behaved: hits, repeat visits that changed pod, evictions, and
    clients that ended on different pods through different nodes (affinity is per node)."""

    seconds: int | None
    clients: int
    sticky: int
    repeats: int
    changed: int
    evicted: int
    split_clients: int
    example: tuple[str, tuple[tuple[str, str], ...]] | None


@dataclass(frozen=True, slots=True)
class ServiceSim:
    target: Target
    n: int
    outcomes: tuple[OutcomeStat, ...]
    by_entry: tuple[EntryStat, ...]
    chi2_p: float | None
    tested: int  # connections the χ² test used (fresh picks only, with affinity)
    masquerade: int
    cross_node: int | None
    expected_cross_node: Fraction | None
    verdict: stats.Verdict
    affinity: AffinityStat | None = None
    notes: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()
    masquerade_unknown: int = 0  # delivered connections whose masquerade is unknown

    @property
    def endpoints(self) -> tuple[OutcomeStat, ...]:
        return tuple(o for o in self.outcomes if o.verdict == Disposition.DNAT.value)

    def count(self, verdict: Disposition) -> int:
        return sum(o.count for o in self.outcomes if o.verdict == verdict.value)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A frontend's plans on every entry node, with outcomes numbered across nodes."""

    plans: tuple[NodePlan, ...]
    keys: tuple[tuple[str, tuple[str, int], bool | None, str, str], ...]  # global outcomes
    rows: tuple[Outcome, ...]
    gmap: np.ndarray  # [node, local outcome] → global outcome (-1 padding)
    exact: tuple[tuple[Fraction, ...], ...]  # [node][global] exact share, fresh client
    notes: tuple[str, ...]


def _label(o: Outcome) -> str:
    ip, port = o.destination
    return f"{ip}:{port}" if o.verdict is Disposition.DNAT else f"{o.verdict.value} {ip}:{port}"


def summarise(
    c: Compiled,
    req: SimRequest,
    target: Target,
    names: Sequence[str],
    weights: Sequence[Fraction],
    pods: dict[str, Pod],
    counts: np.ndarray,
    tested: np.ndarray,
    tally: Tally,
) -> ServiceSim:
    n = int(counts.sum())
    total = counts.sum(axis=0)
    expected = [
        sum((weights[j] * c.exact[j][i] for j in range(len(names))), Fraction(0))
        for i in range(len(c.keys))
    ]
    rows = []
    for i, o in enumerate(c.rows):
        k = int(total[i])
        rows.append(
            OutcomeStat(
                o.verdict.value,
                f"{o.destination[0]}:{o.destination[1]}",
                pods.get(o.destination[0]) if o.verdict is Disposition.DNAT else None,
                k,
                k / n if n else 0.0,
                expected[i],
                stats.wilson(k, n),
                True if o.masquerade or o.snat_to else o.masquerade,
            )
        )
    order = sorted(
        range(len(rows)),
        key=lambda i: (rows[i].verdict != "DNAT", -expected[i], rows[i].destination),
    )
    # χ² against Σ_j (tested connections via node j) × (node j's exact share)
    seen = [int(x) for x in tested.sum(axis=0)]
    if any(p.stateful for p in c.plans):
        # Fresh picks only, so expect Σ_j (fresh picks via node j) × (node j's exact share).
        t_node = [int(x) for x in tested.sum(axis=1)]
        exp_counts = [
            float(sum((t_node[j] * c.exact[j][i] for j in range(len(names))), Fraction(0)))
            for i in range(len(c.keys))
        ]
    else:  # entry node and cascade are both random: the weighted exact shares
        exp_counts = [float(e * n) for e in expected]
    cross, exp_cross, by_entry = _cross(c, names, weights, pods, counts)
    dnat = [i for i in order if rows[i].verdict == "DNAT"]
    # χ² on the sampled endpoints only: a DROP/REJECT cell is the rules' doing on its
    # node, not a draw, and would lend the test counts no random pick produced.
    drawn = [i for i in dnat if exp_counts[i] > 0]
    chi = stats.chi2_p([seen[i] for i in dnat], [exp_counts[i] for i in dnat])
    chi = chi if len(drawn) > 1 else None
    labels = [_who(rows[i]) for i in dnat]
    unit = "fresh picks" if any(p.stateful for p in c.plans) else "connections"
    if any(rows[i].count for i in order if rows[i].verdict != "DNAT"):
        unit += " that reached an endpoint"
    verdict = stats.explain(
        labels, [expected[i] for i in dnat], [seen[i] for i in dnat], chi2=chi, unit=unit
    )
    masq = sum(int(total[i]) for i, r in enumerate(rows) if r.masquerade)
    unsure = sum(int(total[i]) for i, r in enumerate(rows) if _masquerade_unknown(r))
    aff = _affinity_stat(c, req, target, names, tally) if any(p.sticky for p in c.plans) else None
    sim = ServiceSim(
        target,
        n,
        tuple(rows[i] for i in order),
        by_entry,
        chi,
        int(tested.sum()),
        masq,
        cross,
        exp_cross,
        verdict,
        aff,
        c.notes,
        masquerade_unknown=unsure,
    )
    return replace(sim, remarks=remarks(sim))


def _masquerade_unknown(row: OutcomeStat) -> bool:
    return row.masquerade is None and row.verdict in ("DNAT", "ACCEPT", "LOCAL")


def remarks(s: ServiceSim) -> tuple[str, ...]:
    """What else the counts say, one sentence each: drops, other nodes, client IPs, affinity."""
    out = []
    n = s.n or 1
    every = _everywhere(s)
    if every is not None:
        out.append(f"via every entry node: the rules {every} every connection ({s.n} of {s.n})")
    for e in s.by_entry if every is None else ():
        for label, k in e.counts:
            verdict = label.split(" ")[0]
            if verdict in ("DROP", "REJECT", "UNKNOWN", "ACCEPT", "LOCAL"):
                what = {
                    "ACCEPT": "get no DNAT (no endpoint chosen)",
                    "LOCAL": "are delivered to the node itself",
                }.get(verdict, "end UNKNOWN")
                share = dict(e.expected).get(label, Fraction(0))
                if verdict in ("DROP", "REJECT"):  # rules, not chance
                    out.append(_by_rule(e, verdict, k, share))
                    continue
                out.append(f"via {_short(e.node)}: {k} of {e.connections} connections {what}")
    if s.cross_node is not None and s.endpoints:
        out.append(
            f"{s.cross_node / n:.1%} of connections are served by a pod on another node "
            f"than the one they entered (exact {float(s.expected_cross_node or 0):.1%})"
        )
    if s.masquerade:
        out.append(f"client IP masqueraded (SNAT) for {s.masquerade / n:.1%} of connections")
    if s.masquerade_unknown:
        out.append(
            f"whether the client IP is masqueraded is unknown for {s.masquerade_unknown / n:.1%} "
            "of connections (nat POSTROUTING not captured)"
        )
    a = s.affinity
    if a is not None:
        repeat = f"{a.changed / a.repeats:.1%}" if a.repeats else "none"
        out.append(
            f"session affinity ({a.seconds}s): {a.sticky / n:.1%} of connections reused a pod; "
            f"{repeat} of repeat visits changed pod"
            + (
                f" — {a.evicted} recent-list entries were evicted (at most "
                f"{RECENT_CAPACITY} per list per node): affinity breaks with {a.clients} clients"
                if a.evicted
                else ""
            )
        )
        out.append(
            f"with affinity connections are not independent: only the {s.tested} fresh picks "
            "are separate draws (the χ² test uses them); the 95% intervals above are too narrow"
        )
        if a.example is not None:
            ip, where = a.example
            via = ", ".join(f"{d} via {_short(nd)}" for nd, d in where)
            out.append(
                f"affinity is per node: {a.split_clients} of {a.clients} clients reached "
                f"different pods through different nodes (e.g. {ip}: {via})"
            )
    return tuple(out)


def _everywhere(s: ServiceSim) -> str | None:
    """DROP or REJECT, when the rules do that to every connection on every entry node."""
    kinds = {label.split(" ")[0] for e in s.by_entry for label, share in e.expected if share}
    if len(kinds) == 1 and (kind := kinds.pop()) in ("DROP", "REJECT") and len(s.by_entry) > 1:
        return kind
    return None


def _short(node: str) -> str:
    """As render.width.short_node: the name ``--entry`` takes, without the domain."""
    first = node.split(".", 1)[0]
    return node if first.isdigit() or ":" in node else first


def _by_rule(e: EntryStat, verdict: str, k: int, share: Fraction) -> str:
    """A DROP/REJECT is the rules' decision: every connection there, or an exact share."""
    if share == 1:
        return (
            f"via {_short(e.node)}: the rules {verdict} every connection ({k} of {e.connections})"
        )
    return (
        f"via {_short(e.node)}: {k} of {e.connections} connections {verdict}, by rule for an exact "
        f"{float(share):.2%} of them"
    )


def _who(o: OutcomeStat) -> str:
    return o.pod.name if o.pod is not None else o.destination


def _cross(
    c: Compiled,
    names: Sequence[str],
    weights: Sequence[Fraction],
    pods: dict[str, Pod],
    counts: np.ndarray,
) -> tuple[int | None, Fraction | None, tuple[EntryStat, ...]]:
    """Connections served by a pod on another node than the one they entered."""
    cross: int | None = 0
    exp: Fraction | None = Fraction(0)
    entries = []
    for j, node in enumerate(names):
        here: int | None = 0
        for i, o in enumerate(c.rows):
            if o.verdict is not Disposition.DNAT:
                continue
            pod = pods.get(o.destination[0])
            if pod is None:
                here = None
                continue
            if not same_node(pod.node, node) and here is not None:
                here += int(counts[j, i])
                if exp is not None:
                    exp += weights[j] * c.exact[j][i]
        if here is None:
            cross, exp = None, None
        elif cross is not None:
            cross += here
        lab = [(_label(o), int(counts[j, i])) for i, o in enumerate(c.rows) if counts[j, i]]
        ex = [(_label(o), c.exact[j][i]) for i, o in enumerate(c.rows) if c.exact[j][i]]
        entries.append(EntryStat(node, int(counts[j].sum()), tuple(lab), tuple(ex), here))
    return cross, exp, tuple(entries)


def _affinity_stat(
    c: Compiled, req: SimRequest, target: Target, names: Sequence[str], tally: Tally
) -> AffinityStat:
    per_client: dict[int, dict[int, int]] = {}
    for (e, cl), o in sorted(tally.last.items()):
        per_client.setdefault(cl, {})[e] = int(c.gmap[e, o])
    split = [cl for cl, m in sorted(per_client.items()) if len(set(m.values())) > 1]
    example = None
    if split:
        m = per_client[split[0]]
        example = (
            client_ip(split[0]),
            tuple((names[e], _label(c.rows[g])) for e, g in sorted(m.items())),
        )
    return AffinityStat(
        target.affinity_seconds,
        req.clients,
        tally.sticky,
        tally.repeats,
        tally.changed,
        tally.evicted,
        len(split),
        example,
    )
