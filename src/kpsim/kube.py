"""kube-proxy meaning of a ruleset: services, their frontends and endpoints.

    KUBE-SERVICES ─ -d ClusterIP --dport P ─▶ KUBE-SVC-H ─ statistic ─▶ KUBE-SEP-E ─ DNAT ip:port
    KUBE-NODEPORTS ─ --dport NP ─▶ KUBE-EXT-H (≥1.24) / KUBE-XLB-H (<1.24) / KUBE-SVC-H (older)
    KUBE-EXT-H ─▶ KUBE-SVL-H (externalTrafficPolicy Local: local endpoints only)
    KUBE-FW-H  ─▶ LoadBalancer IP with source ranges

All chains of one service port share the hash suffix H = base32(sha256(name + proto))[:16],
so they are grouped by H; names come from kube-proxy's comments, or from the hash when a
candidate name is known.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from kpsim.model import (
    PROBABILITY_SCALE,
    Address,
    Chain,
    CommentMatch,
    Dnat,
    Jump,
    PortMatch,
    RecentCommand,
    RecentMatch,
    Reject,
    Rule,
    Ruleset,
    StatisticMatch,
    StatisticMode,
)

SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-")
_FRONTEND_SUFFIXES = {
    " cluster IP": "cluster-ip",
    " external IP": "external-ip",
    " loadbalancer IP": "load-balancer",
}
_NAME_SUFFIXES = (*_FRONTEND_SUFFIXES, " has no endpoints", " has no local endpoints")
_NAME_PREFIXES = ("masquerade traffic for ", "pod traffic for ", "route LOCAL traffic for ")
IPVS_CHAINS = frozenset({"KUBE-LOAD-BALANCER", "KUBE-NODE-PORT"})


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """kube-proxy's chain-name hash: base32(sha256(name + protocol))[:16]."""
    digest = hashlib.sha256((service_port_name + protocol.lower()).encode()).digest()
    # 16 base32 characters are exactly the first 10 bytes: encoding only those is the
    # same string, ~3x cheaper (it runs once per service of a 10,000-service dump).
    return base64.b32encode(digest[:10]).decode()


def endpoint_hash(service_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP- suffix: the same hash over name + protocol + ``ip:port``."""
    digest = hashlib.sha256((service_port_name + protocol.lower() + endpoint).encode()).digest()
    return base64.b32encode(digest[:10]).decode()


@dataclass(frozen=True, slots=True)
class Frontend:
    """An address:port a client can use: ``kind`` is cluster-ip, node-port,
    external-ip or load-balancer."""

    kind: str
    address: str | None
    port: int | None
    protocol: str | None
    rule: Rule = field(compare=False)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A KUBE-SEP chain's DNAT destination and its chance for a new client."""

    chain: str
    destination: str | None
    probability: Fraction


@dataclass(frozen=True, slots=True)
class Service:
    """One service port as kube-proxy laid it out on this node."""

    name: str
    hash: str
    protocol: str | None
    frontends: tuple[Frontend, ...]
    endpoints: tuple[Endpoint, ...]
    local_endpoints: tuple[Endpoint, ...] = ()
    affinity_seconds: int | None = None
    traffic_policy_local: bool = False
    no_endpoints: bool = False
    named_by: str = "comment"  # comment | hash | chain

    @property
    def cluster_ips(self) -> tuple[str, ...]:
        return tuple(f.address for f in self.frontends if f.kind == "cluster-ip" and f.address)

    @property
    def node_ports(self) -> tuple[int, ...]:
        return tuple(f.port for f in self.frontends if f.kind == "node-port" and f.port)


def clean_name(comment: str) -> str:
    """``ns/svc:port cluster IP``, ``ns/svc:port -> 10.0.0.1:80``, ``ns/svc:`` → ``ns/svc:port``."""
    text = comment.split(" -> ")[0]
    for suffix in _NAME_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    for prefix in _NAME_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.split(" ")[0].rstrip(":")


def _hash_of(chain: str) -> str | None:
    if not chain.startswith(SERVICE_PREFIXES):  # one C call rejects the ~50k KUBE-SEP-
        return None
    for prefix in SERVICE_PREFIXES:
        if chain.startswith(prefix):
            return chain[len(prefix) :]
    return None


def _dport(rule: Rule) -> int | None:
    for m in rule.matches:
        if isinstance(m, PortMatch) and m.dport is not None and m.dport.lo == m.dport.hi:
            return m.dport.lo
    return None


def _addr(a: Address | None) -> str | None:
    if a is None or a.negated:
        return None
    if a.network is None:
        return a.unresolved
    net = a.network
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _comment_name(rule: Rule) -> str | None:
    for m in rule.matches:
        if isinstance(m, CommentMatch) and "/" in m.text:
            return clean_name(m.text)
    return None


def rule_chance(rule: Rule, *, nth: bool = False) -> tuple[int, int]:
    """The chance ``hit / total`` that a rule's statistic match lets a draw through:
    ``threshold / 2^31`` for random mode (as the kernel compares), 1/1 without one;
    with ``nth``, the long-run share of an ``--every N`` rule."""
    for m in rule.matches:
        if isinstance(m, StatisticMatch) and m.mode is StatisticMode.RANDOM:
            threshold = m.threshold or 0
            return (PROBABILITY_SCALE - threshold if m.negated else threshold), PROBABILITY_SCALE
        if nth and isinstance(m, StatisticMatch) and m.every:
            return ((m.every - 1) if m.negated else 1), m.every
    return 1, 1


def cascade(
    rules: Iterable[Rule], counted: Callable[[Rule], bool], *, nth: bool = False
) -> tuple[tuple[Rule, Fraction], ...]:
    """Each counted rule's share of what enters the chain: p_i · Π_{j<i} (1 − p_j).

    Kept as one integer numerator over 2^(31·k) until the end: Fraction arithmetic
    per step took ~1 s on a 10,000-service dump (measured)."""
    remaining, scale = 1, 1  # remaining / scale: chance no earlier rule matched
    out: list[tuple[Rule, Fraction]] = []
    for rule in rules:
        if not counted(rule):
            continue
        hit, total = rule_chance(rule, nth=nth)
        out.append((rule, _fraction(remaining * hit, scale * total)))
        remaining, scale = remaining * (total - hit), scale * total
    return tuple(out)


@lru_cache(maxsize=4096)
def _fraction(numerator: int, denominator: int) -> Fraction:
    """Fractions are immutable, and kube-proxy's thresholds repeat the same shares in
    every service with as many endpoints: the 50,000 endpoints of a 10,000-service dump
    have 4 distinct ones, and ``Fraction()`` for each took 0.045 s against 0.006 s."""
    return Fraction(numerator, denominator)


def _new_client_sep_jump(rule: Rule) -> bool:
    """A KUBE-SEP jump a new client can take (affinity rules need history)."""
    target = rule.target
    if not (isinstance(target, Jump) and target.chain.startswith("KUBE-SEP-")):
        return False
    # a loop, not any(<genexpr>): no generator per rule, 0.026 s → 0.018 s (measured)
    for m in rule.matches:  # noqa: SIM110
        if isinstance(m, RecentMatch):
            return False
    return True


def endpoint_shares(rules: Iterable[Rule]) -> tuple[tuple[Rule, Fraction], ...]:
    """Each KUBE-SEP jump's exact chance for a new client (no affinity history),
    with p = threshold / 2^31 as the kernel draws it."""
    return cascade(rules, _new_client_sep_jump)


def _sep_destination(nat: Mapping[str, Chain], chain: str) -> str | None:
    sep = nat.get(chain)
    if sep is None:
        return None
    for rule in sep.rules:
        target = rule.target
        if isinstance(target, Dnat) and target.to:
            return str(target.to[0])
    return None


@dataclass
class _Draft:
    hash: str
    names: list[str] = field(default_factory=list)  # from the frontends' comments
    protocol: str | None = None
    frontends: list[Frontend] = field(default_factory=list)
    no_endpoints: bool = False
    chains: list[str] = field(default_factory=list)  # nat chains with this hash, in order


def _draft(drafts: dict[str, _Draft], h: str) -> _Draft:
    d = drafts.get(h)
    if d is None:
        d = drafts[h] = _Draft(h)
    return d


def _collect_frontends(ruleset: Ruleset, drafts: dict[str, _Draft]) -> None:
    for chain_name, kind_default in (
        ("KUBE-SERVICES", "cluster-ip"),
        ("KUBE-NODEPORTS", "node-port"),
    ):
        chain = ruleset.chain("nat", chain_name)
        if chain is None:
            continue
        for rule in chain.rules:
            target = rule.target
            if not isinstance(target, Jump) or (h := _hash_of(target.chain)) is None:
                continue
            d = _draft(drafts, h)
            kind = kind_default
            text = rule.comment or ""
            for suffix, k in _FRONTEND_SUFFIXES.items():
                if text.endswith(suffix):
                    kind = k
            proto = rule.protocol.name if rule.protocol else None
            d.protocol = d.protocol or proto
            d.frontends.append(Frontend(kind, _addr(rule.destination), _dport(rule), proto, rule))
            # the first comment is the named one, nearly always: no second scan for it
            name = clean_name(text) if "/" in text else _comment_name(rule)
            if name is not None:
                d.names.append(name)


def _collect_rejects(ruleset: Ruleset) -> dict[str, list[Rule]]:
    """Filter-table REJECTs kube-proxy writes for services without endpoints."""
    out: dict[str, list[Rule]] = {}
    table = ruleset.table("filter")
    if table is None:
        return out
    for chain in table.chains.values():
        for rule in chain.rules:
            text = rule.comment or ""
            if isinstance(rule.target, Reject) and text.endswith("has no endpoints"):
                out.setdefault(clean_name(text), []).append(rule)
    return out


def services(ruleset: Ruleset) -> tuple[Service, ...]:
    """Every service port the nat (and filter) table shows, sorted by name."""
    drafts: dict[str, _Draft] = {}
    _collect_frontends(ruleset, drafts)
    nat_table = ruleset.table("nat")
    nat: Mapping[str, Chain] = nat_table.chains if nat_table else {}
    for name in nat:
        h = _hash_of(name)
        if h is not None:
            _draft(drafts, h).chains.append(name)
    result = [_finish(nat, d) for d in drafts.values()]
    known = {s.name for s in result}
    for name, rules in _collect_rejects(ruleset).items():
        if name in known:
            continue
        fronts = tuple(
            Frontend(
                "node-port" if r.destination is None else "cluster-ip",
                _addr(r.destination),
                _dport(r),
                r.protocol.name if r.protocol else None,
                r,
            )
            for r in rules
        )
        proto = fronts[0].protocol if fronts else None
        result.append(
            Service(
                name, port_proto_hash(name, proto or "tcp"), proto, fronts, (), no_endpoints=True
            )
        )
    return tuple(sorted(result, key=lambda s: (s.name, s.protocol or "")))


def _endpoints(nat: Mapping[str, Chain], chain: Chain | None) -> tuple[Endpoint, ...]:
    if chain is None:
        return ()
    out = []
    for rule, share in endpoint_shares(chain.rules):
        if isinstance(target := rule.target, Jump):
            out.append(Endpoint(target.chain, _sep_destination(nat, target.chain), share))
    return tuple(out)


def _finish(nat: Mapping[str, Chain], d: _Draft) -> Service:
    svc = nat.get(f"KUBE-SVC-{d.hash}")
    svl = nat.get(f"KUBE-SVL-{d.hash}")
    endpoints = _endpoints(nat, svc)
    local = _endpoints(nat, svl)
    affinity = None
    for chain in (svc, svl):
        for rule in chain.rules if chain else ():
            for m in rule.matches:
                if isinstance(m, RecentMatch) and m.command is RecentCommand.RCHECK:
                    affinity = m.seconds
    policy_local = svl is not None or f"KUBE-XLB-{d.hash}" in nat
    name, named_by = _choose_name(d, nat)
    return Service(
        name=name,
        hash=d.hash,
        protocol=d.protocol,
        frontends=tuple(d.frontends),
        endpoints=endpoints,
        local_endpoints=local,
        affinity_seconds=affinity,
        traffic_policy_local=policy_local,
        no_endpoints=not endpoints and not local,
        named_by=named_by,
    )


def _chain_names(nat: Mapping[str, Chain], d: _Draft) -> Iterator[str]:
    """Comment names in the service's own chains (KUBE-SVC-H, KUBE-EXT-H, …), in order."""
    for chain in d.chains:
        for rule in nat[chain].rules:
            if (name := _comment_name(rule)) is not None:
                yield name


def _choose_name(d: _Draft, nat: Mapping[str, Chain]) -> tuple[str, str]:
    """Prefer a comment name whose hash matches the chain suffix (it proves the label).

    Candidates are the frontends' comment names, then those of the service's chains;
    the chains are read only when no frontend name matches (reading them all up front
    took 0.026 s of a 10,000-service dump, listing them takes 0.011 s, measured).

    kube-proxy before 1.x wrote an unnamed port as ``ns/svc:`` and hashed that form,
    so both spellings are tried."""
    tried: set[str] = set()
    first: str | None = None
    for candidate in itertools.chain(d.names, _chain_names(nat, d)):
        if first is None:
            first = candidate
        if candidate in tried:
            continue
        tried.add(candidate)
        for spelled in (candidate, candidate + ":"):
            for proto in (d.protocol, "tcp", "udp", "sctp"):
                if proto and port_proto_hash(spelled, proto) == d.hash:
                    return candidate, "hash"
    if first is not None:
        return first, "comment"
    return f"KUBE-SVC-{d.hash}", "chain"


def is_ipvs(ruleset: Ruleset) -> bool:
    """kube-proxy in IPVS mode keeps its balancing out of iptables."""
    nat = ruleset.table("nat")
    return nat is not None and any(name in nat.chains for name in IPVS_CHAINS)
