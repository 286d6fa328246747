"""Check kpsim's exact answer against the real kernel, node by node.

    NodeInput + VerifyRequest ─┬─ predict: trace once per client address ─▶ Prediction
                               │    (per destination p, masquerade, REJECT / DROP p,
                               │     expected matches per rule on the outcome paths)
                               └─ probe: replay the node's rules in namespaces, N real
                                    connections (kpsim.replay) ─▶ KernelResult
    compare(Prediction, KernelResult) ─▶ NodeVerdict: counts, χ² p-value, agree + reasons

The trace is exact, the kernel samples: they agree when the kernel reaches what kpsim
says it can (all of it once every p·N ≥ 5), masquerades and refuses / drops as kpsim
says, and its split passes a χ² goodness-of-fit test against N·p (p ≥ 0.001).

Session affinity (``-m recent --rcheck`` in a chain the outcomes pass) keeps a client on
its first endpoint, so the split over all connections is not kpsim's fresh-client answer:

    clients connect in a seeded random order (replay ``order=``)
    first pick of each client  ─▶ χ² against Σ_clients p (K·p ≥ 5; else reached ⊆ predicted)
    repeat connections that changed endpoint ─▶ two-proportion test against the sampler
        (kpsim.sim) run R times on the same order with the kernel's ip_list_tot

Nothing here prints; render/verify_text.py and render/verify_json.py format the report.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from kpsim.errors import ExitCode, KpsimError, UsageError
from kpsim.model import RecentCommand, RecentMatch, Ruleset
from kpsim.packet import Packet
from kpsim.replay import KernelResult, MappingError, ReplayError, open_replay, replay
from kpsim.replay.result import Connection, RuleKey
from kpsim.scenario import (
    DEFAULT_CLIENT,
    NamedOutcome,
    NodeInput,
    TraceRequest,
    check_port,
    node_addresses,
    node_context,
    trace_node,
)
from kpsim.sim.plan import compile_plan
from kpsim.sim.sampler import RECENT_CAPACITY, NodeState, Tally, pick_fresh, run_stateful
from kpsim.trace import Disposition, Outcome, Tracer

__all__ = [
    "P_MIN",
    "AffinityCheck",
    "AffinityPrediction",
    "CounterRow",
    "EndpointRow",
    "KeepingProbe",
    "KernelUnavailable",
    "NodeVerdict",
    "Prediction",
    "Probe",
    "VerdictRow",
    "VerifyError",
    "VerifyReport",
    "VerifyRequest",
    "affinity_order",
    "changes",
    "chi_square",
    "client_addresses",
    "client_weights",
    "compare",
    "kernel_probe",
    "missing_requirements",
    "predict",
    "predict_affinity",
    "recent_capacity",
    "require_kernel",
    "select_nodes",
    "two_proportion_p",
    "verify",
]

#: Below this χ² p-value the split is called different: a correct kernel fails 1 run in 1000.
P_MIN = 0.001
#: Expected count a category needs before "never seen" counts against the kernel, and
#: below which χ² cells are pooled (the χ² approximation needs about 5 per cell).
MIN_EXPECTED = 5.0
MAX_CONNECTIONS = 10_000  # traffic.py's own cap
MAX_CLIENTS = 250  # the replay's client block: one /24
#: Simulated runs behind kpsim's stickiness answer: their mean is the prediction, their
#: spread the test's variance (repeat visits are not independent draws).
AFFINITY_RUNS = 40
#: xt_recent's entries per list (module parameter; RECENT_CAPACITY = 100 when unreadable).
IP_LIST_TOT = Path("/sys/module/xt_recent/parameters/ip_list_tot")
TOOLS = ("ip", "iptables", "iptables-save", "iptables-restore", "sysctl")
REACHED = (Disposition.DNAT, Disposition.ACCEPT, Disposition.LOCAL)


class KernelUnavailable(KpsimError):
    """verify needs root and the iptables tools; without them it cannot run at all."""

    exit_code = ExitCode.BAD_INPUT


class VerifyError(KpsimError):
    """The replay of one node failed (a harness problem, not a disagreement)."""


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """``kpsim verify --port P``: N connections to each node's own address (a NodePort),
    or to ``dest``, from ``clients`` addresses starting at ``source``."""

    port: int
    dest: str | None = None
    n: int = 200
    clients: int = 1
    source: str = DEFAULT_CLIENT
    node: str | None = None
    connect_timeout_s: float = 0.5
    seed: int = 0  # the client order under session affinity
    order: tuple[int, ...] | None = None  # connection i from client order[i]; None: in turn

    def check(self) -> None:
        """Bad values are usage errors (exit 2), named."""
        if not 0 < self.port < 65536:
            raise UsageError(f"--port {self.port}: not a port (1-65535)")
        if not 1 <= self.n <= MAX_CONNECTIONS:
            raise UsageError(f"-n {self.n}: between 1 and {MAX_CONNECTIONS} connections")
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise UsageError(f"--clients {self.clients}: between 1 and {MAX_CLIENTS}")
        if self.order is not None and (
            len(self.order) != self.n or not all(0 <= k < self.clients for k in self.order)
        ):
            raise UsageError(f"order: {self.n} client indices below {self.clients} expected")
        if not 0.05 <= self.connect_timeout_s <= 10:
            raise UsageError(f"--connect-timeout {self.connect_timeout_s}: 0.05 to 10 seconds")
        for what, ip in (("--dest", self.dest), ("--source", self.source)):
            if ip is not None and not _is_ipv4(ip):
                raise UsageError(f"{what}: {ip!r} is not an IPv4 address")

    @property
    def budget_s(self) -> float:
        """Whole-session time limit: setup, plus every connection timing out, with slack."""
        return 30.0 + self.n * self.connect_timeout_s * 1.5


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def missing_requirements() -> list[str]:
    """What the kernel replay lacks here: root, and each missing tool by name."""
    missing = [] if os.geteuid() == 0 else ["root (run as root, e.g. with sudo)"]
    missing += [f"the {t} command" for t in TOOLS if shutil.which(t) is None]
    return missing


def require_kernel() -> None:
    """Fail early, naming what is missing, rather than halfway through a replay."""
    missing = missing_requirements()
    if missing:
        raise KernelUnavailable(
            "verify replays the rules in the real kernel and needs " + ", ".join(missing)
        )


def select_nodes(inputs: Sequence[NodeInput], wanted: str | None) -> list[NodeInput]:
    """Every node, or the one named (full or short name) as ``trace --node``."""
    if wanted is None:
        return list(inputs)
    chosen = [n for n in inputs if wanted in (n.name, n.name.split(".")[0])]
    if not chosen:
        names = ", ".join(n.name for n in inputs)
        raise UsageError(f"--node {wanted}: no such node (nodes: {names})")
    return chosen


# ---------------------------------------------------------------- prediction


@dataclass(frozen=True, slots=True)
class Prediction:
    """kpsim's exact answer for the probe's N connections, clients weighed by how many
    connections each sends. Shares sum to 1 with ``reject + drop + unknown``.
    ``per_client``: each client's own answer, by category (destination, REJECT, DROP,
    unknown) — under affinity, what its first connection does."""

    shares: Mapping[str, Fraction]  # reached destination ip:port (DNAT/ACCEPT/LOCAL) → p
    masquerade: Mapping[str, bool | None]  # None: some paths masquerade, some do not
    reject: Fraction
    drop: Fraction
    unknown: Fraction
    rules: Mapping[RuleKey, Fraction]  # expected matches per connection, in traversal order
    approximate: frozenset[RuleKey]  # on a path kpsim merged with others: a lower bound
    names: Mapping[str, str] = field(default_factory=dict)  # destination → "pod @ node"
    reasons: Mapping[str, str] = field(default_factory=dict)  # REJECT/DROP/UNKNOWN → why
    address: str = ""
    affinity: bool = False  # a recent --rcheck/--update rule on a chain the paths pass
    affinity_seconds: int | None = None  # its --seconds (None: no expiry, or no affinity)
    per_client: Mapping[str, Mapping[str, Fraction]] = field(default_factory=dict)


def client_addresses(request: VerifyRequest) -> tuple[str, ...]:
    """The replay's client addresses (original): ``source`` and the ones after it."""
    first = ipaddress.IPv4Address(request.source)
    return tuple(str(first + i) for i in range(request.clients))


def _turns(request: VerifyRequest) -> list[int]:
    """Which client sends connection i: ``order``, else i mod K."""
    if request.order is not None:
        return list(request.order)
    return [i % request.clients for i in range(request.n)]


def client_weights(request: VerifyRequest) -> list[tuple[str, Fraction]]:
    """Each client weighed by its share of the N connections (i mod K, or ``order``);
    clients that send none are left out."""
    counts = [0] * request.clients
    for k in _turns(request):
        counts[k] += 1
    return [
        (c, Fraction(counts[i], request.n))
        for i, c in enumerate(client_addresses(request))
        if counts[i]
    ]


def affinity_order(request: VerifyRequest) -> tuple[int, ...]:
    """Under affinity: each connection's client drawn uniformly, seeded (``seed``)."""
    rng = np.random.default_rng(request.seed)
    return tuple(int(k) for k in rng.integers(0, request.clients, size=request.n))


def _name(n: NamedOutcome) -> str:
    if n.pod is not None:
        return f"{n.pod.name} @ {n.pod.node.split('.')[0]}"
    return n.service or ""


def _category(o: Outcome) -> str:
    """A destination ip:port when reached, else REJECT / DROP / unknown."""
    if o.verdict in REACHED:
        return f"{o.destination[0]}:{o.destination[1]}"
    return o.verdict.value if o.verdict.value in ("REJECT", "DROP") else "unknown"


def _sticky(ruleset: Ruleset, chains: Iterable[tuple[str, str]]) -> tuple[bool, int | None]:
    """Affinity on these chains: a ``recent --rcheck/--update`` rule, and its --seconds."""
    found, seconds = False, None
    for table, name in chains:
        chain = ruleset.chain(table, name)
        for rule in chain.rules if chain else ():
            for m in rule.matches:
                if (
                    isinstance(m, RecentMatch)
                    and m.command in (RecentCommand.RCHECK, RecentCommand.UPDATE)
                    and not m.negated
                ):
                    found, seconds = True, seconds or m.seconds
    return found, seconds


def predict(node: NodeInput, request: VerifyRequest) -> Prediction:
    """Trace the probe's question once per client address and weigh the answers."""
    shares: dict[str, Fraction] = {}
    masq: dict[str, set[bool]] = {}
    tally = {"REJECT": Fraction(0), "DROP": Fraction(0), "unknown": Fraction(0)}
    rules: dict[RuleKey, Fraction] = {}
    depth: dict[RuleKey, int] = {}  # first position on any path: the traversal order
    approximate: set[RuleKey] = set()
    names: dict[str, str] = {}
    reasons: dict[str, str] = {}
    per_client: dict[str, dict[str, Fraction]] = {}
    chains: dict[tuple[str, str], None] = {}
    address = ""
    for client, weight in client_weights(request):
        req = TraceRequest(port=request.port, dest=request.dest, source=client)
        t = trace_node(node, req)
        address = t.address
        mine = per_client.setdefault(client, {})
        for n in t.outcomes:
            o = n.outcome
            chains.update({(s.table, s.chain): None for s in o.path})
            if o.probability:
                mine[_category(o)] = mine.get(_category(o), Fraction(0)) + o.probability
            p = weight * o.probability
            if p == 0:
                continue
            if o.verdict in REACHED:
                d = n.destination
                shares[d] = shares.get(d, Fraction(0)) + p
                masq.setdefault(d, set()).add(o.masquerade or o.snat_to is not None)
                if name := _name(n):
                    names.setdefault(d, name)
            else:
                key = o.verdict.value if o.verdict.value in tally else "unknown"
                tally[key] += p
                reasons.setdefault(key, _why(n))
            for i, s in enumerate(o.path):
                if s.number > 0:
                    rk = (s.table, s.chain, s.number)
                    rules[rk] = rules.get(rk, Fraction(0)) + p
                    depth[rk] = min(depth.get(rk, i), i)
                    if o.merged > 1:
                        approximate.add(rk)
    sticky, seconds = _sticky(node.ruleset, chains)
    return Prediction(
        dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))),
        {d: (next(iter(v)) if len(v) == 1 else None) for d, v in masq.items()},
        tally["REJECT"],
        tally["DROP"],
        tally["unknown"],
        {k: rules[k] for k in sorted(rules, key=lambda k: (depth[k], k))},
        frozenset(approximate),
        names,
        reasons,
        address,
        sticky,
        seconds,
        per_client,
    )


def _why(n: NamedOutcome) -> str:
    o = n.outcome
    last = o.path[-1] if o.path else None
    where = f"{last.table} {last.chain} #{last.number}" if last and last.number else ""
    return "; ".join(x for x in (where, n.service or "", o.reason or "") if x)


# ---------------------------------------------------------------- the kernel's side

#: How the kernel is asked: (rules, request) → what it did. Tests inject their own.
Probe = Callable[[NodeInput, VerifyRequest], KernelResult]


def kernel_probe(node: NodeInput, request: VerifyRequest) -> KernelResult:
    """One replay in fresh namespaces, removed again whatever happens."""
    return replay(
        node.ruleset,
        port=request.port,
        dest=request.dest,
        n=request.n,
        clients=request.clients,
        source=request.source,
        connect_timeout_s=request.connect_timeout_s,
        timeout_s=request.budget_s,
        order=request.order,
    )


class KeepingProbe:
    """``--keep``: each node's session is entered into ``stack`` and left open, so its
    namespaces outlive the probe; ``namespaces`` lists them as (name, node, role). Whoever
    owns ``stack`` decides: close it (removal) or end the process without cleanup."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.namespaces: list[tuple[str, str, str]] = []

    def __call__(self, node: NodeInput, request: VerifyRequest) -> KernelResult:
        session = self.stack.enter_context(
            open_replay(
                node.ruleset,
                clients=request.clients,
                source=request.source,
                timeout_s=request.budget_s,
            )
        )
        topo = session.topology
        self.namespaces += [
            (topo.node, node.name, "node: the rules, eth0 and eni0"),
            (topo.client, node.name, "client"),
            (topo.pods, node.name, "pods: the endpoints"),
        ]
        return session.probe(
            request.port,
            dest=request.dest,
            n=request.n,
            connect_timeout_s=request.connect_timeout_s,
            order=request.order,
        )


# ---------------------------------------------------------------- affinity: kpsim's runs


@dataclass(frozen=True, slots=True)
class AffinityPrediction:
    """kpsim's sampler (kpsim.sim) replaying the probe's order ``runs`` times: per run how
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
    first client's trace; kpsim.sim's recent lists, ``capacity`` entries each), ``runs``
    times. Connection i happens at i·elapsed/N, for affinity expiry."""
    rng = rng or np.random.default_rng(request.seed)
    meta = node.ruleset.metadata
    ctx, _ = node_context(meta, ())
    addrs = node_addresses(meta, ())
    dest = request.dest or (addrs[0] if addrs else "")
    first = client_addresses(request)[0]
    plan = compile_plan(Tracer(node.ruleset, ctx), node.name, Packet.of(first, dest, request.port))
    picks = [_category(o) for o in plan.outcomes]
    n = request.n
    client = np.array(_turns(request), dtype=np.int64)
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


def two_proportion_p(k1: int, n1: int, k2: int, n2: int, dispersion: float = 1.0) -> float:
    """Two-sided z test of k1/n1 == k2/n2, pooled variance times ``dispersion``."""
    if n1 == 0 or n2 == 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    var = dispersion * p * (1 - p) * (1 / n1 + 1 / n2)
    if var == 0:
        return 1.0 if k1 * n2 == k2 * n1 else 0.0
    from scipy.stats import norm  # lazily, as chisquare

    return float(2 * norm.sf(abs(k1 / n1 - k2 / n2) / math.sqrt(var)))


def _stickiness_p(changed: int, repeats: int, pred: AffinityPrediction) -> float:
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


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """One destination: what the kernel counted next to kpsim's exact share."""

    destination: str
    kernel_count: int
    expected_share: Fraction
    expected_count: float
    kernel_share: Fraction
    masquerade_seen: bool | None  # None: mixed, or never reached
    masquerade_predicted: bool | None  # None: mixed, or not predicted at all
    name: str = ""


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """REJECT (refused) or DROP (timed out): connections that reached no endpoint."""

    verdict: str
    kernel_count: int
    expected_share: Fraction
    expected_count: float


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A rule's kernel packet counter next to the matches kpsim expects (N·p). nat rules
    see a connection's first packet only, so there both count connections; other tables
    see every packet of it, so their counter is larger by design."""

    table: str
    chain: str
    number: int
    kernel_packets: int
    expected: float
    per_connection: bool
    exact: bool  # False: the rule is on a merged path, kpsim's number is a lower bound


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


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """One node's comparison; ``reasons`` lists every failed check (empty: agree)."""

    node: str
    address: str
    n: int
    agree: bool
    reason: str
    reasons: tuple[str, ...]
    p_value: float
    endpoints: tuple[EndpointRow, ...]
    refused: VerdictRow
    timed_out: VerdictRow
    unreachable: int
    errors: int
    counters: tuple[CounterRow, ...]
    address_map: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()
    affinity: AffinityCheck | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    request: VerifyRequest
    fixture_set: str
    nodes: tuple[NodeVerdict, ...]
    kept: tuple[tuple[str, str, str], ...] = ()  # (namespace, node, role) left on purpose

    @property
    def agree(self) -> bool:
        return all(n.agree for n in self.nodes)

    @property
    def p_value(self) -> float:
        return min((n.p_value for n in self.nodes), default=1.0)


def chi_square(observed: Sequence[int], expected: Sequence[float]) -> float:
    """Goodness-of-fit p-value of counts against exact expectations.

    A count where kpsim expects exactly 0 is impossible under its answer: p = 0. Cells
    expecting < 5 are pooled (and a pool still < 5 joins the smallest cell); with fewer
    than two cells left there is nothing to test: p = 1."""
    if any(e == 0 and o > 0 for o, e in zip(observed, expected, strict=True)):
        return 0.0
    cells = sorted((e, o) for o, e in zip(observed, expected, strict=True) if e > 0)
    big = [(e, o) for e, o in cells if e >= MIN_EXPECTED]
    small = [(e, o) for e, o in cells if e < MIN_EXPECTED]
    if small:
        pool = (sum(e for e, _ in small), sum(o for _, o in small))
        if pool[0] < MIN_EXPECTED and big:
            e0, o0 = big.pop(0)
            pool = (pool[0] + e0, pool[1] + o0)
        big.append(pool)
    if len(big) < 2:
        return 1.0
    from scipy.stats import chisquare  # ~0.5 s to import: only when a test is due

    obs = [o for _, o in big]
    exp = [e for e, _ in big]
    scale = sum(obs) / sum(exp)  # float noise only: N·p over all categories sums to N
    return float(chisquare(obs, [e * scale for e in exp]).pvalue)


def _endpoint_rows(pred: Prediction, k: KernelResult, n: int) -> list[EndpointRow]:
    rows = []
    for d in [*pred.shares, *sorted(set(k.reached) - set(pred.shares))]:
        p = pred.shares.get(d, Fraction(0))
        count = k.reached.get(d, 0)
        rows.append(
            EndpointRow(
                d,
                count,
                p,
                float(p * n),
                Fraction(count, n) if n else Fraction(0),
                k.masquerade_seen(d),
                pred.masquerade.get(d),
                pred.names.get(d, ""),
            )
        )
    return rows


def _counter_rows(pred: Prediction, k: KernelResult, n: int) -> list[CounterRow]:
    keys = list(pred.rules)
    keys += sorted(key for key in k.counters if key[0] == "nat" and key not in pred.rules)
    return [
        CounterRow(
            t,
            c,
            num,
            k.counters.get((t, c, num), 0),
            float(pred.rules.get((t, c, num), Fraction(0)) * n),
            t == "nat",
            (t, c, num) not in pred.approximate,
        )
        for t, c, num in keys
    ]


def _fmt_p(p: Fraction) -> str:
    return f"{float(p) * 100:.4g}%"


def _set_reasons(rows: Sequence[EndpointRow], n: int, full: bool) -> list[str]:
    out = []
    for r in rows:
        if r.kernel_count and r.expected_share == 0:
            out.append(f"the kernel reached {r.destination} ({r.kernel_count}×); kpsim: never")
        elif full and r.expected_share > 0 and r.kernel_count == 0:
            out.append(
                f"kpsim sends {_fmt_p(r.expected_share)} to {r.destination} "
                f"(expected {r.expected_count:.1f} of {n}); the kernel never reached it"
            )
    return out


def _masq_reasons(rows: Sequence[EndpointRow], k: KernelResult) -> list[str]:
    out = []
    for r in rows:
        if r.kernel_count == 0 or r.masquerade_predicted is None:
            continue
        want = "masqueraded" if r.masquerade_predicted else "client IP kept"
        if r.masquerade_seen is None:
            m = k.masqueraded.get(r.destination, 0)
            out.append(
                f"{r.destination}: {m} of {r.kernel_count} connections masqueraded; kpsim: {want}"
            )
        elif r.masquerade_seen is not r.masquerade_predicted:
            seen = "masqueraded" if r.masquerade_seen else "client IP kept"
            out.append(f"{r.destination}: kernel {seen}; kpsim: {want}")
    return out


def _verdict_reasons(row: VerdictRow, what: str) -> list[str]:
    if row.kernel_count and row.expected_share == 0:
        return [f"{row.kernel_count} connections {what}; kpsim predicts no {row.verdict}"]
    if row.expected_count >= MIN_EXPECTED and row.kernel_count == 0:
        return [
            f"kpsim predicts {row.verdict} for {_fmt_p(row.expected_share)} "
            f"(expected {row.expected_count:.1f}); none {what}"
        ]
    return []


def _other_reasons(pred: Prediction, k: KernelResult) -> list[str]:
    out = []
    if pred.unknown:
        why = pred.reasons.get("unknown", "")
        out.append(f"kpsim cannot decide {_fmt_p(pred.unknown)} of connections (UNKNOWN: {why})")
    if k.errors:
        detail = next((c.detail for c in k.connections if c.status in ("error", "skipped")), "")
        out.append(f"{k.errors} connections failed in the harness (error/skipped: {detail})")
    return out


def _agreement_text(
    rows: Sequence[EndpointRow],
    refused: VerdictRow,
    dropped: VerdictRow,
    p: float,
    full: bool,
    last: str = "",
) -> str:
    """What was checked and held, in one line."""
    parts = []
    predicted = sum(1 for r in rows if r.expected_share)
    reached = sum(1 for r in rows if r.kernel_count)
    if predicted:
        parts.append(
            (
                "reached the predicted destination"
                if predicted == 1
                else f"reached all {predicted} predicted destinations"
            )
            if reached == predicted
            else f"reached {reached} of {predicted} predicted destinations"
            + ("" if full else " (too few connections to require all)")
        )
        parts.append("masquerade as predicted")
    for row, what in ((refused, "refused"), (dropped, "timed out")):
        if row.expected_share or row.kernel_count:
            parts.append(
                f"{row.kernel_count} {what} as {row.verdict} predicts "
                f"({_fmt_p(row.expected_share)})"
            )
    parts.append(last or f"χ² p = {p:.3g} ≥ {P_MIN}")
    return "; ".join(parts)


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
        p_value=_stickiness_p(changed, repeats, sim),
    )


def _affinity_reasons(a: AffinityCheck) -> list[str]:
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


def _affinity_text(a: AffinityCheck) -> str:
    return (
        f"first picks of {a.clients} clients: χ² p = {a.first_pick_p:.3g} ≥ {P_MIN}; repeat "
        f"connections that changed endpoint: kernel {a.changed_kernel} of {a.repeats}, "
        f"kpsim {a.changed_kpsim:.1f} (p = {a.p_value:.3g} ≥ {P_MIN})"
    )


def compare(
    node: str, pred: Prediction, k: KernelResult, affinity: AffinityPrediction | None = None
) -> NodeVerdict:
    """Agree = reached ⊆ predicted (= once every p·N ≥ 5), masquerade as predicted,
    refused / timed out as REJECT / DROP predict, no harness errors, χ² p ≥ P_MIN.
    With ``affinity`` the χ² is over each client's first pick (= needs K·p ≥ 5), and the
    share of repeat connections that changed endpoint must fit kpsim's runs."""
    n = len(k.connections)
    rows = _endpoint_rows(pred, k, n)
    refused = VerdictRow("REJECT", k.refused + k.unreachable, pred.reject, float(pred.reject * n))
    dropped = VerdictRow("DROP", k.timed_out, pred.drop, float(pred.drop * n))
    observed = [r.kernel_count for r in rows] + [refused.kernel_count, dropped.kernel_count]
    expected = [r.expected_count for r in rows] + [refused.expected_count, dropped.expected_count]
    observed.append(k.errors)
    expected.append(float(pred.unknown * n))
    aff = check_affinity(pred, k, affinity) if affinity is not None else None
    if aff is None:
        p_value = chi_square(observed, expected) if n else 1.0
        full = all(p * n >= MIN_EXPECTED for p in pred.shares.values())
    else:
        p_value = aff.first_pick_p
        full = all(e >= MIN_EXPECTED for d, _, e in aff.first_picks if d in pred.shares)
    reasons = _set_reasons(rows, n, full) + _masq_reasons(rows, k)
    reasons += _verdict_reasons(refused, "refused") + _verdict_reasons(dropped, "timed out")
    reasons += _other_reasons(pred, k)
    if aff is not None:
        reasons += _affinity_reasons(aff)
    elif p_value < P_MIN:
        worst = max(
            zip(observed[: len(rows)], rows, strict=True),
            key=lambda x: abs(x[0] - x[1].expected_count),
            default=None,
        )
        hint = (
            f" (largest gap: {worst[1].destination} {worst[0]} vs {worst[1].expected_count:.1f})"
            if worst is not None
            else ""
        )
        reasons.append(f"χ² p = {p_value:.3g} < {P_MIN}: the split is not kpsim's{hint}")
    agree = not reasons
    last = _affinity_text(aff) if aff is not None else ""
    summary = _agreement_text(rows, refused, dropped, p_value, full, last) if agree else ""
    notes = k.notes + (affinity.notes if affinity is not None else ())
    return NodeVerdict(
        node=node,
        address=pred.address,
        n=n,
        agree=agree,
        reason=summary or "; ".join(reasons),
        reasons=tuple(reasons),
        p_value=p_value,
        endpoints=tuple(rows),
        refused=refused,
        timed_out=dropped,
        unreachable=k.unreachable,
        errors=k.errors,
        counters=tuple(_counter_rows(pred, k, n)),
        address_map=k.address_map.rows(),
        notes=notes,
        affinity=aff,
    )


# ---------------------------------------------------------------- the whole question


def verify(
    inputs: Iterable[NodeInput],
    request: VerifyRequest,
    *,
    fixture_set: str = "",
    probe: Probe | None = None,
    capacity_of: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyReport:
    """Every chosen node: predict, probe the kernel, compare. Under session affinity the
    clients connect in ``affinity_order`` and kpsim's sampler replays that order (recent
    lists of ``capacity_of()`` entries, default the kernel's ip_list_tot). Harness failures
    raise VerifyError; rules that cannot be moved into 198.18.0.0/15 raise UsageError."""
    request.check()
    if probe is None:
        require_kernel()
        probe = kernel_probe  # looked up now, so a test can stand in for the kernel
    chosen = select_nodes(list(inputs), request.node)
    if request.dest is None:
        check_port(TraceRequest(port=request.port), chosen)
    out = []
    for node in chosen:
        req = request
        pred = predict(node, req)
        if pred.affinity and req.order is None:  # affinity: a known, mixed client order
            req = replace(req, order=affinity_order(req))
            pred = predict(node, req)
        try:
            start = clock()
            k = probe(node, req)
            elapsed = clock() - start
        except MappingError as exc:  # the capture itself cannot be replayed: bad input
            raise UsageError(f"{node.name}: cannot be replayed: {exc}") from exc
        except (ReplayError, OSError, RuntimeError) as exc:  # NetnsError is a RuntimeError
            raise VerifyError(f"{node.name}: the kernel replay failed: {exc}") from exc
        sim = None
        if pred.affinity:  # after the probe: xt_recent is loaded, ip_list_tot readable
            capacity = recent_capacity() if capacity_of is None else capacity_of()
            sim = predict_affinity(
                node,
                req,
                capacity=capacity,
                seconds=pred.affinity_seconds,
                elapsed_s=elapsed,
            )
        out.append(compare(node.name, pred, k, sim))
    return VerifyReport(request, fixture_set, tuple(out))
