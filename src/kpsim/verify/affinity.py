"""Session affinity in verify: kpsim's answer for repeat connections (its sampler,
kpsim.simulate, replaying the probe's client order with recent lists of the kernel's size),
and the check of the kernel's connections against it.

    first pick of each client  ─▶ χ² against Σ_clients p (K·p ≥ 5; else reached ⊆ predicted)
    repeat connections that changed endpoint ─▶ two-proportion test against the sampler
        run R times on the same order with the kernel's ip_list_tot
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kpsim.engine.packet import Packet
from kpsim.engine.trace import Tracer
from kpsim.errors import UsageError
from kpsim.formats.nft.write import dynamic_set_sizes
from kpsim.kube.routing import node_addresses, node_context
from kpsim.kube.scenario import NodeInput, stand_in
from kpsim.simulate.plan import compile_plan
from kpsim.simulate.sampler import RECENT_CAPACITY, NodeState, Tally, pick_fresh, run_stateful
from kpsim.verify.predict import Prediction, VerifyRequest, category, client_addresses, client_turns
from kpsim.verify.replay import KernelResult
from kpsim.verify.replay.result import Connection
from kpsim.verify.stats import P_MIN, chi_square, two_proportion_p

#: Simulated runs behind kpsim's stickiness answer: their mean is the prediction, their
#: spread the test's variance (repeat visits are not independent draws).
AFFINITY_RUNS = 40
#: xt_recent's entries per list (module parameter; RECENT_CAPACITY = 100 when unreadable).
IP_LIST_TOT = Path("/sys/module/xt_recent/parameters/ip_list_tot")


@dataclass(frozen=True, slots=True)
class AffinityPrediction:
    """kpsim's sampler (kpsim.simulate) replaying the probe's order ``runs`` times: per run how
    many of the ``repeats`` repeat connections changed endpoint."""

    seconds: int | None
    capacity: int  # entries a recent list holds (ip_list_tot)
    repeats: int
    changed: tuple[int, ...]  # one count per simulated run
    notes: tuple[str, ...] = ()

    @property
    def mean(self) -> float:
        return sum(self.changed) / len(self.changed) if self.changed else 0.0


def recent_capacity(path: Path = IP_LIST_TOT) -> int:
    """The kernel's ``ip_list_tot`` (readable once xt_recent is loaded), else 100."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return RECENT_CAPACITY


#: What stands for "no bound" (an nft set without ``size``) in the sampler's list length.
UNBOUNDED = 1 << 31


def nft_capacity(node: NodeInput, clients: int) -> int:
    """Entries kube-proxy's nft affinity sets hold (``size``, 65535 as kube-proxy writes
    them): the sampler's list length for an nftables capture. A full nft set adds no more
    elements where a full recent list drops its oldest, so a set smaller than the clients
    is refused rather than compared against the wrong behaviour."""
    path = node.ruleset.path
    try:
        sizes = dynamic_set_sizes(Path(path).read_text(encoding="utf-8"), path)
    except OSError as exc:
        raise UsageError(
            f"{node.name}: the nft capture {path} cannot be read again: {exc}"
        ) from exc
    bounded = {name: n for name, n in sizes.items() if n is not None}
    small = sorted(name for name, n in bounded.items() if n < clients)
    if small:
        raise UsageError(
            f"{node.name}: nft set {small[0]} holds {bounded[small[0]]} elements, fewer than "
            f"the {clients} clients; a full nft set stops adding where kpsim's sampler drops "
            "the oldest: verify with fewer --clients"
        )
    return min(bounded.values(), default=UNBOUNDED)


def changes(clients: Sequence[object], picks: Sequence[str]) -> tuple[int, int]:
    """(repeat connections, those whose pick differs from the same client's previous)."""
    last: dict[object, str] = {}
    repeats = changed = 0
    for c, pick in zip(clients, picks, strict=True):
        if c in last:
            repeats += 1
            changed += last[c] != pick
        last[c] = pick
    return repeats, changed


def predict_affinity(
    node: NodeInput,
    request: VerifyRequest,
    *,
    capacity: int,
    seconds: int | None = None,
    elapsed_s: float = 0.0,
    rng: np.random.Generator | None = None,
    runs: int = AFFINITY_RUNS,
) -> AffinityPrediction:
    """Sample the probe's connections in its order through the node's compiled plan (the
    first client's trace; kpsim.simulate's recent lists, ``capacity`` entries each), ``runs``
    times. Connection i happens at i·elapsed/N, for affinity expiry."""
    rng = rng or np.random.default_rng(request.seed)
    meta = node.ruleset.metadata
    extra = stand_in(node.ruleset, ())[0]  # a bare dump: the address trace uses
    ctx, _ = node_context(meta, extra, node.ruleset)
    addrs = node_addresses(meta, extra)
    dest = request.dest or (addrs[0] if addrs else "")
    first = client_addresses(request)[0]
    plan = compile_plan(Tracer(node.ruleset, ctx), node.name, Packet.of(first, dest, request.port))
    picks = [category(o) for o in plan.outcomes]
    n = request.n
    client = np.array(client_turns(request), dtype=np.int64)
    entry = np.zeros(n, dtype=np.int64)
    times = np.arange(n, dtype=np.float64) * (elapsed_s / n)
    changed, repeats = [], 0
    for _ in range(runs):
        fresh = pick_fresh(plan.cascade, n, rng)
        out, _ = run_stateful(
            [plan], [NodeState()], entry, client, times, fresh, rng, Tally(), capacity
        )
        repeats, c = changes(client.tolist(), [picks[o] for o in out.tolist()])
        changed.append(c)
    notes = (
        *plan.notes,
        "session affinity: the counters' kpsim N·p are a fresh client's; in the kernel the "
        "--rcheck rules take every connection whose client has a live entry",
    )
    if not plan.sticky:
        notes += (f"{node.name}: no recent list changes kpsim's answer: no stickiness",)
    return AffinityPrediction(seconds, capacity, repeats, tuple(changed), notes)


def stickiness_p(changed: int, repeats: int, pred: AffinityPrediction) -> float:
    """Kernel's changed share vs all kpsim runs pooled. Repeat visits are not independent
    (one eviction can move a client for good), so the binomial variance is scaled by the
    runs' own spread (≥ 1). kpsim sure of 0 changes: the kernel must show 0."""
    m, runs = pred.repeats, len(pred.changed)
    total = sum(pred.changed)
    if m == 0 or repeats == 0:
        return 1.0
    if total == 0:
        return 1.0 if changed == 0 else 0.0
    shares = [c / m for c in pred.changed]
    mean = total / (runs * m)
    spread = sum((x - mean) ** 2 for x in shares) / max(runs - 1, 1)
    binomial = mean * (1 - mean) / m
    phi = max(1.0, spread / binomial) if binomial else 1.0
    return two_proportion_p(changed, repeats, total, runs * m, phi)


@dataclass(frozen=True, slots=True)
class AffinityCheck:
    """Session affinity, checked per client: first picks against kpsim's exact shares,
    then how often a repeat connection changed endpoint, kernel against kpsim's runs."""

    seconds: int | None
    clients: int  # clients that connected
    first_picks: tuple[tuple[str, int, float], ...]  # (category, kernel count, kpsim K·p)
    first_pick_p: float
    repeats: int
    changed_kernel: int
    changed_kpsim: float  # mean over the runs
    runs: int
    recent_capacity: int
    p_value: float  # stickiness: the two-proportion test


def _kernel_category(c: Connection) -> str:
    if c.status == "ok":
        return c.destination or "ok:?"
    return {"refused": "REJECT", "unreachable": "REJECT", "timeout": "DROP"}.get(
        c.status, "unknown"
    )


def check_affinity(pred: Prediction, k: KernelResult, sim: AffinityPrediction) -> AffinityCheck:
    """First picks (each client's first connection) and repeat connections that changed."""
    first: dict[str, str] = {}
    for c in k.connections:
        first.setdefault(c.source, _kernel_category(c))
    expected: dict[str, float] = {}
    for client in first:
        for cat, p in pred.per_client.get(client, {}).items():
            expected[cat] = expected.get(cat, 0.0) + float(p)
    seen = [*first.values()]
    cats = [*sorted(expected, key=lambda x: (-expected[x], x))]
    cats += sorted(set(seen) - set(expected))
    rows = tuple((x, seen.count(x), expected.get(x, 0.0)) for x in cats)
    p_first = chi_square([r[1] for r in rows], [r[2] for r in rows]) if rows else 1.0
    repeats, changed = changes(
        [c.source for c in k.connections], [_kernel_category(c) for c in k.connections]
    )
    return AffinityCheck(
        seconds=sim.seconds,
        clients=len(first),
        first_picks=rows,
        first_pick_p=p_first,
        repeats=repeats,
        changed_kernel=changed,
        changed_kpsim=sim.mean,
        runs=len(sim.changed),
        recent_capacity=sim.capacity,
        p_value=stickiness_p(changed, repeats, sim),
    )


def affinity_reasons(a: AffinityCheck) -> list[str]:
    out = []
    if a.first_pick_p < P_MIN:
        worst = max(a.first_picks, key=lambda r: abs(r[1] - r[2]))
        out.append(
            f"first picks of {a.clients} clients: χ² p = {a.first_pick_p:.3g} < {P_MIN} "
            f"(largest gap: {worst[0]} {worst[1]} vs {worst[2]:.1f})"
        )
    if a.p_value < P_MIN:
        kp = f"{a.changed_kpsim:.1f} (mean of {a.runs} runs)"
        if a.changed_kpsim == 0:
            kp = f"none in {a.runs} runs"
        out.append(
            f"repeat connections that changed endpoint: kernel {a.changed_kernel} of "
            f"{a.repeats}, kpsim {kp}; p = {a.p_value:.3g} < {P_MIN}"
        )
    return out


def affinity_text(a: AffinityCheck) -> str:
    return (
        f"first picks of {a.clients} clients: χ² p = {a.first_pick_p:.3g} ≥ {P_MIN}; repeat "
        f"connections that changed endpoint: kernel {a.changed_kernel} of {a.repeats}, "
        f"kpsim {a.changed_kpsim:.1f} (p = {a.p_value:.3g} ≥ {P_MIN})"
    )
