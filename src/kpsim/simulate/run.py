"""Sample many connections through a cluster's rules and compare with the exact answer.

    SimRequest(n, port | dest+port | service, entry weights, clients, rate)
      ─▶ for each target frontend, each entry node: compile_plan (exact engine, once)
      ─▶ batches: entry node ~ weights, then the node's cascade drawn as xt_statistic does
                  (recent lists and nth counters kept per node when the rules use them)
      ─▶ ServiceSim: counts, shares, Wilson 95% intervals, χ², cross-node and masquerade
                     shares, affinity effects, and a verdict in words (kpsim.simulate.stats)

``curl``-ing each node's IP n times over is ``SimRequest(n, port=30080)``. The random
generator is injected: the same seed gives the same report, draw for draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from kpsim.engine.packet import Packet
from kpsim.engine.trace import Outcome, Tracer
from kpsim.errors import UsageError
from kpsim.kube.routing import node_addresses, node_context
from kpsim.kube.scenario import NodeInput, pods_of, stand_in
from kpsim.model import Capture, Diagnostic, Ruleset
from kpsim.simulate.plan import compile_plan, exact_shares
from kpsim.simulate.request import SimRequest, Target, client_ip, entry_weights, targets
from kpsim.simulate.sampler import NodeState, Tally, count_fresh, pick_fresh, run_stateful
from kpsim.simulate.summary import (
    AffinityStat,
    Compiled,
    EntryStat,
    OutcomeStat,
    ServiceSim,
    summarise,
)

__all__ = [
    "AffinityStat",
    "EntryStat",
    "OutcomeStat",
    "Progress",
    "ServiceSim",
    "SimReport",
    "SimRequest",
    "Target",
    "client_ip",
    "entry_weights",
    "simulate",
    "simulate_target",
    "targets",
]

Progress = Callable[[int, int], None]
BATCH = 1 << 20


@dataclass(frozen=True, slots=True)
class SimReport:
    request: SimRequest
    nodes: tuple[str, ...]
    weights: tuple[Fraction, ...]
    services: tuple[ServiceSim, ...]
    notes: tuple[str, ...] = field(default=())
    #: per entry node: what its capture could not show, and the lines not read
    captures: tuple[tuple[str, Capture, tuple[Diagnostic, ...]], ...] = ()


# ---------------------------------------------------------------- one frontend


def _compile(
    tracers: Sequence[tuple[str, Tracer, Ruleset]], req: SimRequest, target: Target
) -> Compiled:
    plans, notes = [], []
    first, last = client_ip(0), client_ip(max(req.clients - 1, 0))
    for name, tracer, rs in tracers:
        extra, note = stand_in(rs, req.node_ips)
        dest = target.dest or node_addresses(rs.metadata, extra)[0]
        if note is not None and target.dest is None:
            notes.append(f"{name}: {note}")
        pkt = Packet.of(first, dest, target.port, protocol=req.protocol)
        plan = compile_plan(tracer, name, pkt)
        other = tracer.trace(Packet.of(last, dest, target.port, protocol=req.protocol))
        if {o.key: o.probability for o in other.outcomes} != {
            o.key: o.probability for o in plan.outcomes[: len(other.outcomes)]
        }:
            notes.append(f"{name}: the rules treat client {last} unlike {first}; used {first}'s")
        plans.append(plan)
        notes.extend(plan.notes)
    keys: list[tuple[str, tuple[str, int], bool | None, str, str]] = []
    rows: list[Outcome] = []
    for p in plans:
        for o in p.outcomes:
            if o.key not in keys:
                keys.append(o.key)
                rows.append(o)
    width = max(len(p.outcomes) for p in plans)
    gmap = np.full((len(plans), width), -1, dtype=np.int64)
    exact = []
    for j, p in enumerate(plans):
        shares = [Fraction(0)] * len(keys)
        local = exact_shares(p.cascade, len(p.outcomes), long_run=True)
        for i, o in enumerate(p.outcomes):
            gmap[j, i] = keys.index(o.key)
            shares[keys.index(o.key)] += local[i]
        exact.append(tuple(shares))
    return Compiled(tuple(plans), tuple(keys), tuple(rows), gmap, tuple(exact), tuple(notes))


def _sample(
    c: Compiled,
    req: SimRequest,
    weights: Sequence[Fraction],
    rng: np.random.Generator,
    progress: Progress | None,
    total: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, Tally, list[NodeState]]:
    """Counts [node, global outcome] for all connections and for the χ²-tested ones."""
    nodes, g = len(c.plans), len(c.keys)
    w = np.array([float(x) for x in weights])
    counts = np.zeros((nodes, g), dtype=np.int64)
    tested = np.zeros((nodes, g), dtype=np.int64)
    tally, states = Tally(), [NodeState() for _ in c.plans]
    stateful = any(p.stateful for p in c.plans)
    done = 0
    while done < req.n:
        b = min(BATCH, req.n - done)
        if not stateful:
            per_node = rng.multinomial(b, w)
            for j, p in enumerate(c.plans):
                local = count_fresh(p.cascade, len(p.outcomes), int(per_node[j]), rng)
                np.add.at(counts[j], c.gmap[j, : len(p.outcomes)], local)
            tested = counts
        else:
            entry = rng.choice(nodes, size=b, p=w)
            client = rng.integers(0, max(req.clients, 1), size=b)
            times = (done + np.arange(b, dtype=np.float64)) / req.rate
            fresh = np.empty(b, dtype=np.int64)
            for j, p in enumerate(c.plans):
                mask = entry == j
                fresh[mask] = pick_fresh(p.cascade, int(mask.sum()), rng)
            out, was_fresh = run_stateful(
                c.plans, states, entry, client, times, fresh, rng, tally, req.recent_capacity
            )
            flat = entry * g + c.gmap[entry, out]
            counts += np.bincount(flat, minlength=nodes * g).reshape(nodes, g)
            tested += np.bincount(flat[was_fresh], minlength=nodes * g).reshape(nodes, g)
        done += b
        if progress is not None:
            progress(total[0] + done, total[1])
    return counts, tested, tally, states


def simulate_target(
    tracers: Sequence[tuple[str, Tracer, Ruleset]],
    req: SimRequest,
    target: Target,
    weights: Sequence[Fraction],
    rng: np.random.Generator,
    progress: Progress | None = None,
    total: tuple[int, int] = (0, 0),
) -> ServiceSim:
    """n connections to one frontend, entering by the weighted nodes."""
    c = _compile(tracers, req, target)
    counts, tested, tally, _ = _sample(c, req, weights, rng, progress, total)
    names = [t[0] for t in tracers]
    pods = pods_of(tracers[0][2].metadata)
    for _, _, rs in tracers[1:]:
        pods.update({k: v for k, v in pods_of(rs.metadata).items() if k not in pods})
    return summarise(c, req, target, names, weights, pods, counts, tested, tally)


# ---------------------------------------------------------------- the whole question


def simulate(
    inputs: Sequence[NodeInput],
    request: SimRequest,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> SimReport:
    """Every target the request names, n connections each, in a fixed order."""
    if request.n < 1:
        raise UsageError(f"-n {request.n}: simulate at least one connection")
    if request.rate <= 0:
        raise UsageError(f"--rate {request.rate}: must be > 0")
    if request.clients < 1:
        raise UsageError(f"--clients {request.clients}: at least one client")
    client_ip(request.clients - 1)  # fails early when there are too many
    names = tuple(n.name for n in inputs)
    weights = entry_weights(names, request.entry)
    tracers = []
    for node in inputs:
        extra = stand_in(node.ruleset, request.node_ips)[0]
        ctx, _ = node_context(node.ruleset.metadata, extra, node.ruleset)
        tracers.append(
            (node.name, Tracer(node.ruleset, ctx, unknown=request.unknown), node.ruleset)
        )
    chosen = targets(inputs, request)
    out = []
    for k, t in enumerate(chosen):
        out.append(
            simulate_target(
                tracers,
                request,
                t,
                weights,
                rng,
                progress,
                (k * request.n, len(chosen) * request.n),
            )
        )
    notes = (
        "entry nodes are drawn per connection with the weights shown; each node's "
        "rules decide with the kernel's integer thresholds",
    )
    captures = tuple((n.name, n.ruleset.capture, n.ruleset.diagnostics) for n in inputs)
    return SimReport(request, names, weights, tuple(out), notes, captures)
