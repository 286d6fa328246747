"""A service's policies as kube-proxy lays them out, in either mode: traffic policy Local
(external and internal), the no-endpoints verdict (reject or drop) and which clients are
masqueraded, per kind of traffic — what ``lint``, ``diff`` and ``show`` ask of a capture,
so none of them reads chain names itself.

    iptables mode                              nftables mode
    KUBE-SVC-H / KUBE-SVL-H (cluster, local)   service-H-… / local-H-…
    KUBE-EXT-H, KUBE-XLB-H (external)          external-H-…
    KUBE-FW-H (load balancer)                  firewall-H-…
    -j KUBE-MARK-MASQ                          jump mark-for-masquerade
    filter "has no local endpoints" DROP       @no-endpoint-nodeports / -services : drop
    filter "has no endpoints" REJECT           @no-endpoint-… : goto reject-chain

Masquerade conditions are spelled in iptables-save words (nft's lowered rules use the same
model), without the service's own protocol and port, so both modes compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction

from kpsim.formats.iptables.lazy_text import TableText, table_text
from kpsim.formats.iptables.write import render_rule
from kpsim.kube import nft_services as nft
from kpsim.kube.chance import endpoint_shares
from kpsim.kube.frontends import address
from kpsim.kube.names import clean_name, hash_part
from kpsim.kube.services import Service
from kpsim.model import (
    AddrTypeMatch,
    Chain,
    CommentMatch,
    Jump,
    PortMatch,
    Reject,
    Rule,
    Ruleset,
    Standard,
    Verdict,
)
from kpsim.model.nft import NumgenMatch, SetLookup

_LOCAL = " has no local endpoints"
_NO_ENDPOINT_MAPS = ("@no-endpoint-services", "@no-endpoint-nodeports")
#: the kind of traffic each of a service's own chains sees
_TRAFFIC = {"cluster": "cluster IP", "local": "cluster IP", "external": "external"}
_TRAFFIC["firewall"] = "load balancer"
_IPT = {
    "cluster": ("KUBE-SVC-",),
    "local": ("KUBE-SVL-",),
    "external": ("KUBE-EXT-", "KUBE-XLB-"),
    "firewall": ("KUBE-FW-",),
}
_NFT = {"service": "cluster", "local": "local", "external": "external", "firewall": "firewall"}
_MARK = ("KUBE-MARK-MASQ", "mark-for-masquerade")


@dataclass(frozen=True, slots=True)
class LocalDrop:
    """A rule that drops a Local-policy frontend on this node (no local endpoint)."""

    service: str
    rule: Rule
    external: bool  # externalTrafficPolicy (NodePort / LB / external IP) vs internal
    front: str  # what is dropped: "NodePort 30082", "172.20.1.5:80"


@dataclass(frozen=True, slots=True)
class Policy:
    external_local: bool  # externalTrafficPolicy Local
    internal_local: bool  # internalTrafficPolicy Local
    masquerade: frozenset[str]  # "external: every packet", "cluster IP: ! -s 10.0.0.0/8 …"


def is_nft(ruleset: Ruleset) -> bool:
    return nft.is_nft_kube_proxy(ruleset)


class Layout:
    """A ruleset's service chains by hash and kind (cluster, local, external, firewall),
    indexed once: a 10,000-service capture asks for all of them."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.nft = is_nft(ruleset)
        self._index: dict[str, dict[str, list[Chain]]] = {}
        nat = ruleset.table("nat")
        self._nat = nat.chains if nat is not None and not self.nft else {}
        # a nat table read on demand: the external chains' rules are read off its text
        self.text = table_text(nat) if nat is not None and not self.nft else None
        self._owners: set[str] | None = None
        if self.nft:
            for table in ruleset.tables.values():
                for name, chain in table.chains.items():
                    m = nft.CHAIN.match(name)
                    if m is not None:
                        kinds = self._index.setdefault(m.group(2), {})
                        kinds.setdefault(_NFT[m.group(1)], []).append(chain)

    def chains(self, svc: Service, kind: str) -> list[Chain]:
        """The service's own chains of one kind, in the capture."""
        if self.nft:
            return self._index.get(svc.hash, {}).get(kind, []) if svc.hash else []
        nat = self._nat
        return [c for p in _IPT[kind] if (c := nat.get(p + svc.hash)) is not None]

    def has_local_or_external(self, svc: Service) -> bool:
        """Has the service a chain of kind local or external (always yes in nftables)?"""
        if self.nft:
            return True
        if self._owners is None:  # the hashes of such chains, found in one pass
            kinds = (*_IPT["local"], *_IPT["external"])
            self._owners = {hash_part(n) for n in self._nat if n.startswith(kinds)}
        return svc.hash in self._owners

    def chain_names(self, svc: Service, kind: str) -> set[str]:
        return {c.name for c in self.chains(svc, kind)}

    def picks(self, chain: Chain) -> list[tuple[Rule, Fraction]]:
        """The chain's endpoint choices for a new client, each with its exact share:
        iptables' statistic cascade (``kube.chance``), nftables' numgen buckets."""
        if not self.nft:
            return list(endpoint_shares(chain.rules))
        out: list[tuple[Rule, Fraction]] = []
        for rule in chain.rules:
            pick = next((m for m in rule.matches if isinstance(m, NumgenMatch)), None)
            if pick is not None and isinstance(rule.target, Jump):
                out.append((rule, pick.share))
        return out


def policies(
    ruleset: Ruleset, svcs: Iterable[Service], masq: bool = True
) -> dict[tuple[str, str], Policy]:
    """Every service's policies, keyed by (name, protocol); ``masq=False`` leaves the
    masquerade conditions out (``show`` needs only Local or not: 0.17 s of 10,000
    services' chains not read again, measured)."""
    layout = Layout(ruleset)
    drops: dict[str, set[bool]] = {}
    for d in local_drops(ruleset):
        drops.setdefault(d.service, set()).add(d.external)
    none: set[bool] = set()  # no drop: shared, only read
    return {
        (s.name, s.protocol or ""): policy(layout, s, drops.get(s.name, none), masq) for s in svcs
    }


def policy(layout: Layout, svc: Service, dropped: set[bool], masq: bool = True) -> Policy:
    # each chain looked up only when its answer is needed, none for a service without a
    # local or external chain: ``show`` asks of 10,000 services (0.1 s → 0.03 s, measured)
    external, internal = True in dropped, False in dropped
    if layout.has_local_or_external(svc):
        local = layout.chain_names(svc, "local")
        if not external and (ext := layout.chains(svc, "external")):
            cluster = layout.chain_names(svc, "cluster")
            external = any(_external_local(c, local, cluster, layout.text) for c in ext)
        internal = internal or (
            bool(local) and any(f.kind == "cluster-ip" and f.jump in local for f in svc.frontends)
        )
    if not masq:  # frozen: one instance per answer (10,000 services, 5 ms, measured)
        return _BARE[external, internal]
    return Policy(external, internal, masquerade(layout, svc))


_BARE = {(e, i): Policy(e, i, frozenset()) for e in (False, True) for i in (False, True)}


def _external_local(
    ext: Chain, local: set[str], cluster: set[str], text: TableText | None = None
) -> bool:
    """An external chain under externalTrafficPolicy Local: it leads to the local chain
    (KUBE-SVL, local-), is the pre-1.24 KUBE-XLB, or — with no local endpoint — reaches the
    cluster chain only for node-local or pod sources (the rest falls through to a drop).
    ``text``: the nat table read on demand, whose lines answer for its rules."""
    if ext.name.startswith("KUBE-XLB-"):
        return True
    rows = text.local_sources(ext.name) if text is not None else None
    if rows is not None:
        hops = [(to, only) for to, only in rows if to in local or to in cluster]
        return any(to in local for to, _ in hops) or (bool(hops) and all(only for _, only in hops))
    jumps = [r for r in ext.rules if _target(r) in local | cluster]
    if any(_target(r) in local for r in jumps):
        return True
    return bool(jumps) and all(_local_source(r) for r in jumps)


def _local_source(rule: Rule) -> bool:
    """Only node-local (``addrtype --src-type LOCAL``, ``fib saddr type local``) or pod
    (``-s CIDR``, ``ip saddr CIDR``) sources take this rule."""
    src = rule.source
    if src is not None and not src.negated:
        return True
    return any(
        isinstance(m, AddrTypeMatch) and "LOCAL" in m.src_type and not m.src_negated
        for m in rule.matches
    )


def _target(rule: Rule) -> str | None:
    return rule.target.chain if isinstance(rule.target, Jump) else None


def masquerade(layout: Layout, svc: Service) -> frozenset[str]:
    """Which clients the service's own chains mark for masquerade, per kind of traffic."""
    out: set[str] = set()
    for kind, traffic in _TRAFFIC.items():
        for chain in layout.chains(svc, kind):
            for rule in chain.rules:
                if _target(rule) in _MARK:
                    out.add(f"{traffic}: {conditions(rule)}")
    return frozenset(out)


def conditions(rule: Rule) -> str:
    """The rule's conditions in iptables-save words, without its comment, chain and the
    service's own protocol and port; nft-only matches (set lookups) as nft writes them."""
    plain = tuple(
        m
        for m in rule.matches
        if not isinstance(m, (CommentMatch, PortMatch, SetLookup, NumgenMatch))
    )
    bare = Rule(
        rule.table, "X", 0, None, rule.source, rule.destination, None,
        rule.in_interface, rule.out_interface, rule.fragment, plain,
    )  # fmt: skip
    words = [render_rule(bare).removeprefix("-A X").strip()]
    words += [m.text for m in rule.matches if isinstance(m, SetLookup)]
    return " ".join(w for w in words if w) or "every packet"


def no_endpoints_verdict(rule: Rule | None) -> str | None:
    """ "REJECT" or "DROP" when ``rule`` is kube-proxy's own no-endpoints rule (iptables:
    the filter REJECT commented "has no endpoints"; nftables: an @no-endpoint-* element)."""
    if rule is None:
        return None
    target = rule.target
    if _no_endpoint_element(rule) is not None:
        if isinstance(target, Jump) and target.chain == "reject-chain":
            return "REJECT"
        if isinstance(target, Reject):
            return "REJECT"
        if isinstance(target, Standard) and target.verdict is Verdict.DROP:
            return "DROP"
        return None
    if "no endpoints" in (rule.comment or ""):
        return "REJECT" if isinstance(target, Reject) else "DROP"
    return None


def _no_endpoint_element(rule: Rule) -> SetLookup | None:
    found = [m for m in rule.matches if isinstance(m, SetLookup) and m.name in _NO_ENDPOINT_MAPS]
    return found[-1] if found and len(found[-1].elements) == 1 else None


def local_drops(ruleset: Ruleset) -> list[LocalDrop]:
    """kube-proxy's drops of a Local-policy frontend on a node without a local endpoint:
    iptables' "has no local endpoints" filter DROPs (≥1.27) and nat KUBE-MARK-DROP jumps
    (older KUBE-XLB), nftables' ``drop`` elements of @no-endpoint-nodeports/-services."""
    return _nft_drops(ruleset) if is_nft(ruleset) else _iptables_drops(ruleset)


#: kube-proxy's endpoint and cascade chains: it never puts a Local-policy drop there.
_NEVER_DROPS = ("KUBE-SEP-", "KUBE-SVC-")


def _iptables_drops(ruleset: Ruleset) -> list[LocalDrop]:
    out: list[LocalDrop] = []
    for tname, table in ruleset.tables.items():
        lazy = table_text(table)  # read on demand: only chains whose lines say so are built
        wanted = lazy.mentioning(_LOCAL) if lazy is not None else None
        names = table.chains if wanted is None else [n for n in table.chains if n in wanted]
        for name in names:
            if name.startswith(_NEVER_DROPS):
                continue  # the bulk of a big node's rules, and never a Local drop
            chain = table.chains[name]
            for rule in chain.rules:
                text = rule.comment or ""
                if not text.endswith(_LOCAL):
                    continue
                target = rule.target
                dropped = isinstance(target, Standard) and target.verdict is Verdict.DROP
                marked = isinstance(target, Jump) and target.chain == "KUBE-MARK-DROP"
                if (tname == "filter" and dropped) or (tname == "nat" and marked):
                    external = rule.destination is None or chain.name in (
                        "KUBE-EXTERNAL-SERVICES",
                        "KUBE-NODEPORTS",
                    )
                    out.append(LocalDrop(clean_name(text), rule, external, _ipt_front(rule)))
    return out


def _ipt_front(rule: Rule) -> str:
    front = address(rule.destination) if rule.destination is not None else None
    port = next(
        (str(m.dport.lo) for m in rule.matches if isinstance(m, PortMatch) and m.dport), None
    )
    if front:
        return f"{front}:{port}" if port else front
    return f"NodePort {port}" if port else "its node ports"


#: kube-proxy's nftables per-service chains (service-H-…, endpoint-H-…): it never puts a
#: lookup of its maps or sets there, and they are the bulk of a big table (61,000 chains,
#: 155,000 of 166,000 rules: show 0.1–0.2 s saved reading them twice, measured)
_NFT_PER_SERVICE = re.compile(r"(?:service|external|local|endpoint|firewall)-[A-Z2-7]{8}-")


def _nft_chains(ruleset: Ruleset) -> list[Chain]:
    """The chains of kube-proxy's nftables table but its per-service ones."""
    match = _NFT_PER_SERVICE.match
    return [c for t in ruleset.tables.values() for n, c in t.chains.items() if not match(n)]


def _nft_drops(ruleset: Ruleset) -> list[LocalDrop]:
    chains = _nft_chains(ruleset)
    cluster_ips = _cluster_ips(chains)
    out: list[LocalDrop] = []
    for chain in chains:
        for rule in chain.rules:
            lookup = _no_endpoint_element(rule)
            if lookup is None or no_endpoints_verdict(rule) != "DROP":
                continue
            name = re.search(r'comment "([^"]*)"', lookup.text)
            if name is None:
                continue
            values = {k: p.text for k, p in zip(lookup.keys, lookup.elements[0], strict=True)}
            dst = values.get("ip daddr") or values.get("ip6 daddr")
            port = values.get("th dport")
            front = (f"{dst}:{port}" if port else dst) if dst else f"NodePort {port}"
            external = dst is None or dst not in cluster_ips
            out.append(LocalDrop(name.group(1), rule, external, front))
    return out


def _cluster_ips(chains: Iterable[Chain]) -> set[str]:
    """The addresses of @cluster-ips (kube-proxy lists every ClusterIP there, served or
    not), and those @service-ips sends to a service or local chain."""
    out: set[str] = set()
    rules = (r for c in chains for r in c.rules)
    for rule in rules:
        to_service = (_target(rule) or "").startswith(("service-", "local-"))
        for m in rule.matches:
            if isinstance(m, SetLookup) and m.name == "@cluster-ips":
                out.update(e[0].text for e in m.elements)
            elif isinstance(m, SetLookup) and m.name == "@service-ips" and to_service:
                for element in m.elements:
                    parts = zip(m.keys, element, strict=True)
                    out.update(p.text for k, p in parts if k.endswith("daddr"))
    return out


def with_policies(ruleset: Ruleset, found: tuple[Service, ...]) -> tuple[Service, ...]:
    """``found`` with ``traffic_policy_local`` set wherever either policy is Local, also
    on a node with no local endpoint (no local chain there: only the drop or the
    local-sources-only external chain tells)."""
    # a service already Local stays so, whatever its policies: only the others' are read
    # (0.1 s of 10,000 services' chains, measured), each key's as ``policies`` keys them
    # (when two services share a name, the last one's)
    last = {(s.name, s.protocol or ""): s for s in found}
    wanted = {(s.name, s.protocol or "") for s in found if not s.traffic_policy_local}
    pols = policies(ruleset, [last[k] for k in wanted], masq=False)
    out = []
    for s in found:
        if s.traffic_policy_local:
            out.append(s)
            continue
        p = pols[(s.name, s.protocol or "")]
        local = p.external_local or p.internal_local
        out.append(
            replace(s, traffic_policy_local=True) if local and not s.traffic_policy_local else s
        )
    return tuple(out)
