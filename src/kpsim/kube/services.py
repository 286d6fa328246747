"""kube-proxy meaning of a ruleset: services, their frontends and endpoints.

    KUBE-SERVICES ─ -d ClusterIP --dport P ─▶ KUBE-SVC-H ─ statistic ─▶ KUBE-SEP-E ─ DNAT ip:port
    KUBE-NODEPORTS ─ --dport NP ─▶ KUBE-EXT-H (≥1.24) / KUBE-XLB-H (<1.24) / KUBE-SVC-H (older)
    KUBE-EXT-H ─▶ KUBE-SVL-H (externalTrafficPolicy Local: local endpoints only)
    KUBE-FW-H  ─▶ LoadBalancer IP with source ranges

All chains of one service port share the hash suffix H = base32(sha256(name + proto))[:16],
so they are grouped by H; names come from kube-proxy's comments, or from the hash when a
candidate name is known (``names.py``); endpoint chances from ``chance.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from fractions import Fraction
from itertools import compress, count, repeat
from operator import eq
from typing import NamedTuple

from kpsim.formats.iptables.construct import constructor
from kpsim.kube import nft_services
from kpsim.kube.chance import (
    cascade,
    cascade_shares,
    endpoint_shares,
    is_sep_jump,
    matches_chance,
    needs_no_history,
    rule_chance,
)
from kpsim.kube.frontends import (
    Draft,
    Frontend,
    address,
    collect_frontends,
    collect_rejects,
    frontend,
)
from kpsim.kube.names import (
    SERVICE_PREFIXES,
    clean_name,
    comment_name,
    endpoint_hash,
    hash_number,
    hash_part,
    name_number,
    port_proto_hash,
)
from kpsim.kube.service import Endpoint as Endpoint
from kpsim.kube.service import Service as Service
from kpsim.model import (
    Chain,
    Dnat,
    Jump,
    Match,
    PortMatch,
    RecentCommand,
    RecentMatch,
    Rule,
    Ruleset,
)

# the names callers have always imported from here
__all__ = [
    "SERVICE_PREFIXES",
    "Endpoint",
    "Frontend",
    "Service",
    "cascade",
    "clean_name",
    "endpoint_hash",
    "endpoint_shares",
    "is_ipvs",
    "port_proto_hash",
    "rule_chance",
    "services",
]

IPVS_CHAINS = frozenset({"KUBE-LOAD-BALANCER", "KUBE-NODE-PORT"})


# Positional constructors, 3x as fast as the frozen classes' own (formats/iptables/construct.py):
# a 10,000-service dump builds 50,000 endpoints (0.020 s → 0.007 s, measured).
_new_endpoint: Callable[[str, str | None, Fraction], Endpoint] = constructor(Endpoint)
_new_service: Callable[..., Service] = constructor(Service)


def services(
    ruleset: Ruleset, builder_of: Callable[..., _ServiceBuilder] | None = None
) -> tuple[Service, ...]:
    """Every service port the nat (and filter) table shows, sorted by name. ``builder_of``
    (nat chains, gaps): another reader of the service chains (``fast_services``)."""
    if nft_services.is_nft_kube_proxy(ruleset):  # kube-proxy's nftables table
        return nft_services.nft_services(ruleset)
    drafts: dict[str, Draft] = {}
    collect_frontends(ruleset, drafts)
    nat_table = ruleset.table("nat")
    builder = (builder_of or _ServiceBuilder)(nat_table.chains if nat_table else {}, _gaps(ruleset))
    for name in builder.service_chains:
        if (h := hash_part(name)) not in drafts:
            drafts[h] = Draft(h)
    result = [builder.finish(d) for d in drafts.values()]
    known = {s.name for s in result}
    for name, rules in collect_rejects(ruleset).items():
        if name in known:
            continue
        fronts = tuple(
            Frontend(
                "node-port" if r.destination is None else "cluster-ip",
                address(r.destination),
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


def service_names(ruleset: Ruleset, hashes: Collection[str]) -> dict[str, str]:
    """``{s.hash: s.name for s in services(ruleset)}`` for the services with these chain
    hashes only: what a trace names, without building the endpoints of 10,000 services
    (or reading their chains, when the capture's are read on demand)."""
    wanted = set(hashes)
    if not wanted:
        return {}
    if nft_services.is_nft_kube_proxy(ruleset):  # small tables: name them all
        return {s.hash: s.name for s in services(ruleset) if s.hash in wanted}
    rejects = collect_rejects(ruleset)
    for name, rules in rejects.items():
        proto = rules[0].protocol.name if rules[0].protocol else None
        if port_proto_hash(name, proto or "tcp") in wanted:  # may share a hash: all of them
            return {s.hash: s.name for s in services(ruleset)}
    drafts: dict[str, Draft] = {}
    collect_frontends(ruleset, drafts, only=wanted)
    nat_table = ruleset.table("nat")
    nat = nat_table.chains if nat_table else {}
    builder = _ServiceBuilder(nat, frozenset(), chains=False)
    own = {p + h for h in wanted for p in SERVICE_PREFIXES}
    builder.service_chains = list(filter(own.__contains__, nat))  # in the table's order, in C
    for name in builder.service_chains:
        if (h := hash_part(name)) not in drafts:
            drafts[h] = Draft(h)
    return {h: builder.choose_name(d)[0] for h, d in drafts.items() if h in wanted}


def offers_node_port(ruleset: Ruleset, port: int) -> bool:
    """Does a service of ``services(ruleset)`` have NodePort ``port`` in KUBE-NODEPORTS?
    (A quick yes for ``trace --port``; no means: ask ``services``.)"""
    if nft_services.is_nft_kube_proxy(ruleset):  # kube-proxy's nftables table
        return nft_services.offers_node_port(ruleset, port)
    chain = ruleset.chain("nat", "KUBE-NODEPORTS")
    sketch = chain.sketch() if chain is not None else None
    rules: Iterable[Rule] = chain.rules if chain is not None and sketch is None else ()
    if sketch is not None:  # read on demand: only the rules for this --dport are built
        found = map(eq, sketch.dports, repeat(str(port)))  # picked in C
        rules = map(sketch.rule, compress(count(), found))
    for rule in rules:
        target = rule.target
        if isinstance(target, Jump) and target.chain.startswith(SERVICE_PREFIXES):
            front, _ = frontend(rule, "node-port")
            if front.kind == "node-port" and front.port == port:
                return True
    return False


def _gaps(ruleset: Ruleset) -> frozenset[str]:
    """nat chains the capture lacks or does not show whole (``Capture``)."""
    capture = ruleset.capture
    missing = {c for t, c in capture.missing if t == "nat"}
    return frozenset(missing | {c for t, c in capture.limits if t == "nat"})


def _dport(rule: Rule) -> int | None:
    for m in rule.matches:
        if isinstance(m, PortMatch) and m.dport is not None and m.dport.lo == m.dport.hi:
            return m.dport.lo
    return None


class _Facts(NamedTuple):
    """What one ``matches`` tuple means in a KUBE-SVC/SVL chain."""

    new_client: bool  # no ``-m recent``: a new client may take the rule
    chance: tuple[int, int]  # the statistic's hit / total
    rcheck: bool  # has a ``--rcheck`` (session affinity) …
    seconds: int | None  # … and the last one's ``--seconds``


def _facts(matches: tuple[Match, ...]) -> _Facts:
    rcheck = RecentCommand.RCHECK
    checks = [m for m in matches if isinstance(m, RecentMatch) and m.command is rcheck]
    seconds = checks[-1].seconds if checks else None
    return _Facts(needs_no_history(matches), matches_chance(matches, False), bool(checks), seconds)


class _ServiceBuilder:
    """One ``services()`` pass over a nat table, remembering what repeats.

    The parser shares one ``matches`` tuple between rules that read the same: the
    51,000 KUBE-SVC rules of a 10,000-service dump hold 1,005, and their chains 4
    distinct cascades. What a tuple means and each cascade's shares are worked out once
    (with the faster constructors, endpoints took 0.146 s, now 0.115 s, measured). The
    memos are keyed by ``id()``s, valid while the ruleset lives, so they live only as
    long as this pass."""

    def __init__(
        self, nat: Mapping[str, Chain], gaps: frozenset[str] = frozenset(), *, chains: bool = True
    ) -> None:
        self.nat = nat
        self.gaps = gaps
        self.service_chains = (
            [name for name in nat if name.startswith(SERVICE_PREFIXES)] if chains else []
        )
        self._facts: dict[int, _Facts] = {}
        self._shares: dict[tuple[int, ...], list[Fraction]] = {}
        self._by_hash: dict[str, list[str]] | None = None

    def finish(self, d: Draft) -> Service:
        nat = self.nat
        svc = nat.get("KUBE-SVC-" + d.hash)
        svl = nat.get("KUBE-SVL-" + d.hash)
        endpoints, svc_rcheck = self.endpoints(svc)
        local, svl_rcheck = self.endpoints(svl)
        rcheck = svl_rcheck or svc_rcheck  # the last --rcheck of both chains
        affinity = rcheck.seconds if rcheck else None
        policy_local = svl is not None or "KUBE-XLB-" + d.hash in nat
        fronts, empty = tuple(d.frontends), not endpoints and not local
        name, by = self.choose_name(d)
        whole = not self.gaps or self.whole(d.hash, endpoints + local)
        # Service's fields in order: the fast constructor is positional
        return _new_service(
            name, d.hash, d.protocol, fronts, endpoints, local, affinity, policy_local,
            empty and whole, by, whole,
        )  # fmt: skip

    def whole(self, h: str, endpoints: tuple[Endpoint, ...]) -> bool:
        """Are the service's chains (and its endpoints' chains) all in the capture, whole?
        An absent KUBE-SVC chain that a frontend jumps to is "not captured", never "no
        endpoints"."""
        gaps = self.gaps
        own = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-")
        return not any(p + h in gaps for p in own) and not any(e.chain in gaps for e in endpoints)

    def endpoints(self, chain: Chain | None) -> tuple[tuple[Endpoint, ...], _Facts | None]:
        """The chain's KUBE-SEP jumps with their shares for a new client (what
        ``endpoint_shares`` gives), and the facts of its last ``--rcheck`` rule."""
        if chain is None:
            return (), None
        facts, seps, key, rcheck = self._facts, [], [], None
        for rule in chain.rules:
            matches = rule.matches
            fact = facts.get(id(matches)) or facts.setdefault(id(matches), _facts(matches))
            if fact.rcheck:
                rcheck = fact
            target = rule.target
            if fact.new_client and is_sep_jump(target):  # endpoint_shares' rule
                seps.append(target.chain)
                key.append(id(matches))
        shares = self._shares.get(k := tuple(key))
        if shares is None:
            shares = self._shares[k] = cascade_shares(facts[i].chance for i in k)
        dests = map(self.destination, seps)
        return tuple(map(_new_endpoint, seps, dests, shares)), rcheck

    def destination(self, sep_chain: str) -> str | None:
        sep = self.nat.get(sep_chain)
        if sep is None:
            return None
        for rule in sep.rules:
            target = rule.target
            if isinstance(target, Dnat) and target.to:
                return str(target.to[0])
        return None

    def chain_names(self, d: Draft) -> Iterator[str]:
        """Comment names in the service's own chains (KUBE-SVC-H, KUBE-EXT-H, …), in order."""
        if self._by_hash is None:  # indexed on first need
            self._by_hash = {}
            for chain in self.service_chains:
                self._by_hash.setdefault(hash_part(chain), []).append(chain)
        for chain in self._by_hash.get(d.hash, ()):
            for rule in self.nat[chain].rules:
                if (name := comment_name(rule)) is not None:
                    yield name

    def choose_name(self, d: Draft) -> tuple[str, str]:
        """Prefer a comment name whose hash matches the chain suffix (it proves the label).

        Candidates are the frontends' comment names, then those of the service's chains;
        the chains are indexed and read only when no frontend name matches (reading them
        all up front took 0.026 s of a 10,000-service dump, measured).

        kube-proxy before 1.x wrote an unnamed port as ``ns/svc:`` and hashed that form,
        so both spellings are tried."""
        names, number = d.names, hash_number(d.hash)
        if names and d.protocol and name_number(names[0], d.protocol) == number:
            # the loop's first try, nearly always right: 0.027 s → 0.017 s (measured)
            return names[0], "hash"
        tried: set[str] = set()
        first: str | None = None
        for candidate in itertools.chain(names, self.chain_names(d)):
            if first is None:
                first = candidate
            if number is None:  # nothing can prove a name: the first one it is
                break
            if candidate in tried:
                continue
            tried.add(candidate)
            for spelled in (candidate, candidate + ":"):
                for proto in (d.protocol, "tcp", "udp", "sctp"):
                    if proto and name_number(spelled, proto) == number:
                        return candidate, "hash"
        if first is not None:
            return first, "comment"
        return f"KUBE-SVC-{d.hash}", "chain"


def is_ipvs(ruleset: Ruleset) -> bool:
    """kube-proxy in IPVS mode keeps its balancing out of iptables."""
    nat = ruleset.table("nat")
    return nat is not None and any(name in nat.chains for name in IPVS_CHAINS)
