"""kpsim's side of verify: the request (``kpsim verify --port P``) and kpsim's exact
answer for the probe's N connections, traced once per client address.

    VerifyRequest ─ client_weights ─▶ trace_node per client ─▶ Prediction
                                        (per destination p, masquerade, REJECT / DROP p,
                                         expected matches per rule, affinity found)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from kpsim.engine.trace import Disposition, Outcome
from kpsim.errors import UsageError
from kpsim.kube.scenario import DEFAULT_CLIENT, NamedOutcome, NodeInput, TraceRequest, trace_node
from kpsim.model import RecentCommand, RecentMatch, Ruleset
from kpsim.verify.replay.result import RuleKey

MAX_CONNECTIONS = 10_000  # traffic.py's own cap
MAX_CLIENTS = 250  # the replay's client block: one /24
REACHED = (Disposition.DNAT, Disposition.ACCEPT, Disposition.LOCAL)


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
        if not 0 <= self.seed < 2**63:  # numpy's generators take no negative seed
            raise UsageError(f"--seed {self.seed}: between 0 and 2**63-1")
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


def client_turns(request: VerifyRequest) -> list[int]:
    """Which client sends connection i: ``order``, else i mod K."""
    if request.order is not None:
        return list(request.order)
    return [i % request.clients for i in range(request.n)]


def client_weights(request: VerifyRequest) -> list[tuple[str, Fraction]]:
    """Each client weighed by its share of the N connections (i mod K, or ``order``);
    clients that send none are left out."""
    counts = [0] * request.clients
    for k in client_turns(request):
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


def category(o: Outcome) -> str:
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
    masq: dict[str, set[bool | None]] = {}
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
                mine[category(o)] = mine.get(category(o), Fraction(0)) + o.probability
            p = weight * o.probability
            if p == 0:
                continue
            if o.verdict in REACHED:
                d = n.destination
                shares[d] = shares.get(d, Fraction(0)) + p
                # None: nat POSTROUTING not captured, the kernel's answer is not predicted
                seen = True if o.masquerade or o.snat_to is not None else o.masquerade
                masq.setdefault(d, set()).add(seen)
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
