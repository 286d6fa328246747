"""Which kube-proxy mode wrote a capture, and so whether its iptables rules pick the endpoint.

kpsim traces iptables mode; in the other modes the rules it reads do not choose the pod,
and a trace must say so instead of answering as if they did. Each mode leaves its own
layout (read from kube-proxy's pkg/proxy/{iptables,ipvs,nftables}/proxier.go, ipvs/ipset.go
and, for the mode removed in 1.26, pkg/proxy/userspace/proxier.go of its last releases):

    iptables   KUBE-SVC-/KUBE-SEP-/KUBE-EXT-/KUBE-SVL-/KUBE-XLB-/KUBE-FW- chains, KUBE-NODEPORTS;
               nat KUBE-SERVICES jumps to them
    IPVS       KUBE-NODE-PORT, KUBE-LOAD-BALANCER, KUBE-IPVS-FILTER chains (KUBE-FIREWALL in nat
               in older releases); ipset matches such as ``--match-set KUBE-CLUSTER-IP dst,dst``
    userspace  KUBE-PORTALS-CONTAINER/-HOST, KUBE-NODEPORT-CONTAINER/-HOST/-NON-LOCAL,
               REDIRECT/DNAT to the proxy's own port
    nftables   table ``kube-proxy`` (services, nat-prerouting, service-HASH-ns/name/proto/port)

A mode's rules are *live* when they hold the entry point: nat KUBE-SERVICES for iptables
and IPVS (both rewrite it whole on every sync), the PREROUTING/OUTPUT jumps for userspace,
the hooked table for nftables. A mode seen only in chains nothing enters is a leftover.
When the capture does not show the entry point (a fragment), being there counts as live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from itertools import compress, count, filterfalse, repeat
from operator import eq, not_, or_

from kpsim.kube.mode_chains import (
    IPTABLES_CHAINS,
    IPTABLES_PREFIXES,
    IPVS_CHAINS,
    IPVS_ENTRY,
    IPVS_NAT_CHAINS,
    IPVS_SETS,
    KUBELET_CHAINS,
    NFT_BASE,
    NFT_SERVICE_CHAIN,
    NFT_TABLE,
    USERSPACE_CHAINS,
)
from kpsim.kube.names import other_chains
from kpsim.model import (
    Chain,
    Format,
    Jump,
    Rule,
    Ruleset,
    RuleSketch,
    SetMatch,
    SourceLocation,
)


class ProxyMode(Enum):
    IPTABLES = "iptables"
    IPVS = "ipvs"
    USERSPACE = "userspace"
    NFTABLES = "nftables"
    MIXED = "mixed"  # several modes' rules are live: which one wins is not in the capture
    NONE = "none"  # no kube-proxy rules at all

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {**{mode: mode.value for mode in ProxyMode}, ProxyMode.IPVS: "IPVS"}


@dataclass(frozen=True, slots=True)
class ModeFinding:
    """The mode, the capture lines that show it, and one line for users.

    ``active`` are the modes whose rules are live (several only for MIXED); ``leftovers``
    the modes seen only in chains nothing enters."""

    mode: ProxyMode
    evidence: tuple[SourceLocation, ...]
    message: str
    chooses_endpoints: bool  # iptables, or nftables read by kpsim: these rules pick it
    active: tuple[ProxyMode, ...] = ()
    leftovers: tuple[ProxyMode, ...] = ()


_MODES = (ProxyMode.IPTABLES, ProxyMode.IPVS, ProxyMode.USERSPACE, ProxyMode.NFTABLES)
_FEW = 3


class _Signs:
    """What one mode left in the capture: whether it is there and live, and a few lines
    that show it (a chain can come without a line: a reader may not know it)."""

    __slots__ = ("is_live", "is_seen", "live", "seen")

    def __init__(self) -> None:
        self.is_live = self.is_seen = False
        self.live: list[SourceLocation] = []
        self.seen: list[SourceLocation] = []

    def add(self, where: SourceLocation | None, *, live: bool = False) -> None:
        if live:
            self.is_live = True
        self.is_seen = True
        bucket = self.live if live else self.seen
        if where is not None and where.line > 0 and len(bucket) < _FEW and where not in bucket:
            bucket.append(where)

    def wants(self, *, live: bool = False) -> bool:
        """Would ``add`` keep one more line?"""
        return len(self.live if live else self.seen) < _FEW

    def add_chain(self, chain: Chain, *, live: bool = False) -> None:
        """``add(chain.origin)``, reading the origin only while it is still wanted (a
        chain read on demand makes its declaration's location when asked)."""
        bucket = self.live if live else self.seen
        self.add(chain.origin if len(bucket) < _FEW else None, live=live)

    def all_live(self) -> None:
        """The entry point is not in the capture: being here counts as live."""
        if self.is_seen:
            self.is_live = True
            self.live += [w for w in self.seen if w not in self.live][: _FEW - len(self.live)]

    def lines(self, limit: int) -> list[SourceLocation]:
        out = list(self.live)
        out += [w for w in self.seen if w not in out]
        return out[:limit]


# ---------------------------------------------------------------- the answer


def proxy_mode(ruleset: Ruleset) -> ModeFinding:
    """Which kube-proxy mode wrote ``ruleset`` and whether these rules pick the endpoint."""
    signs = {mode: _Signs() for mode in _MODES}
    for tname, table in ruleset.tables.items():
        nft_table = tname == NFT_TABLE
        # its hooked entry chains say it best; a paste may lose the table line, so look
        # for them by name in any table of an nft capture too
        if nft_table or (ruleset.format is Format.NFT and table.chains.keys() >= NFT_BASE):
            for name in sorted(NFT_BASE & table.chains.keys()):
                signs[ProxyMode.NFTABLES].add(table.chains[name].origin, live=True)
        _table_signs(signs, tname, table.chains, nft_table)
    _entry_points(signs, ruleset)
    present = [m for m in _MODES if signs[m].is_seen]
    if not present:
        weak = ruleset.chain("nat", "KUBE-SERVICES")
        if weak is None:
            return _none(ruleset)
        signs[ProxyMode.IPTABLES].add(weak.origin, live=True)
        present = [ProxyMode.IPTABLES]
    live = [m for m in present if signs[m].is_live] or present
    leftovers = tuple(m for m in present if m not in live)
    mode = live[0] if len(live) == 1 else ProxyMode.MIXED
    read = ruleset.format is Format.NFT and _nft_read(ruleset)
    evidence: list[SourceLocation] = []
    for m in live:
        evidence += signs[m].lines(_FEW if len(live) == 1 else 2)
    for m in leftovers:
        evidence += signs[m].lines(1)
    return ModeFinding(
        mode=mode,
        evidence=tuple(evidence),
        message=_message(mode, tuple(live), leftovers, read),
        chooses_endpoints=mode is ProxyMode.IPTABLES or (mode is ProxyMode.NFTABLES and read),
        active=tuple(live),
        leftovers=leftovers,
    )


def _table_signs(
    signs: dict[ProxyMode, _Signs], tname: str, chains: Mapping[str, Chain], nft_table: bool
) -> None:
    """The signs of a table's chains, in the table's order. Per-service chains (KUBE-SVC-…,
    KUBE-SEP-…; service-…, endpoint-… in kube-proxy's nftables table) say nothing new
    once their mode's lines are kept: from there on their names are passed over in C
    and their chains never looked up (a capture read on demand makes a chain when it is;
    a loop over a 10,000-service dump's 61,000 chains took 45 ms, measured)."""
    iptables, nft = signs[ProxyMode.IPTABLES], signs[ProxyMode.NFTABLES]
    names = list(chains)
    at = 0
    while at < len(names) and not (
        len(nft.live) >= _FEW if nft_table else len(iptables.seen) >= _FEW and iptables.is_seen
    ):
        _name_signs(signs, tname, chains, names[at], nft_table)
        at += 1
    if at < len(names):  # that mode's lines are kept, and stay kept
        rest = names[at:]
        left = filterfalse(NFT_SERVICE_CHAIN.match, rest) if nft_table else other_chains(rest)
        for name in left:
            _name_signs(signs, tname, chains, name, nft_table)


def _name_signs(
    signs: dict[ProxyMode, _Signs], tname: str, chains: Mapping[str, Chain], name: str, nft: bool
) -> None:
    """The signs of the chain ``name``, looked up only when they can add to them."""
    iptables = signs[ProxyMode.IPTABLES]
    if not nft and name.startswith(IPTABLES_PREFIXES):
        # KUBE-SVC-…, KUBE-SEP-…: 60,000 on a big node, and they only jump onwards;
        # past the lines kept as evidence, one more says nothing new
        if len(iptables.seen) < _FEW or not iptables.is_seen:
            iptables.add_chain(chains[name])
    elif not (len(signs[ProxyMode.NFTABLES].live) >= _FEW and NFT_SERVICE_CHAIN.match(name)):
        # (service-…, endpoint-… past the lines kept: their own statements, numgen, dnat,
        # jumps to its chains, say nothing new; their rules, read on demand by
        # formats/nft/kp_lazy.py, are not built for a trace)
        _other_signs(signs, tname, chains[name], nft)


def _other_signs(signs: dict[ProxyMode, _Signs], tname: str, chain: Chain, nft: bool) -> None:
    """The signs of a chain that is not a per-service one: its name, then its rules."""
    _chain_signs(signs, tname, chain, nft)
    sketch = chain.sketch()
    if sketch is not None:  # KUBE-SERVICES read on demand: its jumps, few rules built
        _sketch_signs(signs, tname, sketch)
        return
    for rule in chain.rules:
        _rule_signs(signs, tname, rule)


def _nft_read(ruleset: Ruleset) -> bool:
    """Did kpsim read kube-proxy's nftables table? (Its reader imported only for nft
    captures: ~6 ms of every iptables trace's start-up.)"""
    from kpsim.formats.nft.kube_proxy import NOTE

    return NOTE in ruleset.notes


def _chain_signs(signs: dict[ProxyMode, _Signs], table: str, chain: Chain, nft: bool) -> None:
    name = chain.name
    if nft or NFT_SERVICE_CHAIN.match(name):
        signs[ProxyMode.NFTABLES].add_chain(chain, live=True)  # its own hooks: always live
    elif name.startswith(IPTABLES_PREFIXES) or name in IPTABLES_CHAINS:
        signs[ProxyMode.IPTABLES].add_chain(chain)
    elif name in IPVS_CHAINS or (table == "nat" and name in IPVS_NAT_CHAINS):
        signs[ProxyMode.IPVS].add_chain(chain)
    elif name in USERSPACE_CHAINS:
        signs[ProxyMode.USERSPACE].add_chain(chain)
    elif table == "filter" and name == "KUBE-SERVICES" and chain.rules:
        signs[ProxyMode.IPTABLES].add_chain(chain)  # its REJECTs for services without pods


def _rule_signs(signs: dict[ProxyMode, _Signs], table: str, rule: Rule) -> None:
    """Jumps to chains the capture may not define (a fragment), and IPVS's ipset matches."""
    target = rule.target
    if isinstance(target, Jump) and (mode := _jump_mode(table, target.chain)) is not None:
        signs[mode].add(rule.origin)
    if _ipvs_set(rule):
        signs[ProxyMode.IPVS].add(rule.origin)


def _jump_mode(table: str, to: str) -> ProxyMode | None:
    """The mode a jump to ``to`` is a sign of (``_rule_signs``)."""
    if to.startswith(IPTABLES_PREFIXES) or to in IPTABLES_CHAINS:
        return ProxyMode.IPTABLES
    if to in IPVS_CHAINS or (table == "nat" and to in IPVS_NAT_CHAINS):
        return ProxyMode.IPVS
    if to in USERSPACE_CHAINS:
        return ProxyMode.USERSPACE
    return None


def _sketch_signs(signs: dict[ProxyMode, _Signs], table: str, sketch: RuleSketch) -> None:
    """``_rule_signs`` of every rule of a sketched chain, building only the rules whose
    line is still wanted as evidence: its rules have no set match, so jumps are all."""
    jumps = sketch.jumps
    # _jump_mode's first answer, nearly every jump's: picked in C (10,000 calls of
    # ``add`` and ``wants`` not made: ~5 ms, measured)
    own = list(map(or_, map(str.startswith, jumps, repeat(IPTABLES_PREFIXES)),
                   map(IPTABLES_CHAINS.__contains__, jumps)))  # fmt: skip
    _first(signs[ProxyMode.IPTABLES], sketch, compress(count(), own))
    for at in compress(count(), map(not_, own)):
        if (to := jumps[at]) and (mode := _jump_mode(table, to)) is not None:
            found = signs[mode]
            found.add(sketch.rule(at).origin if found.wants() else None)


def _first(found: _Signs, sketch: RuleSketch, ats: Iterable[int], *, live: bool = False) -> None:
    """``found.add`` of each sketched rule at ``ats``: while its line is wanted as
    evidence; past those, one more only says the mode is there."""
    for at in ats:
        if not found.wants(live=live):
            found.add(None, live=live)
            return
        found.add(sketch.rule(at).origin, live=live)


def _ipvs_set(rule: Rule) -> bool:
    return any(isinstance(m, SetMatch) and m.name in IPVS_SETS for m in rule.matches)


def _entry_points(signs: dict[ProxyMode, _Signs], ruleset: Ruleset) -> None:
    """Mark live the modes that hold the entry points, or every mode seen when the
    capture does not show them."""
    services = ruleset.chain("nat", "KUBE-SERVICES")
    sketch = services.sketch() if services is not None else None
    if sketch is not None:  # read on demand: no set matches, its jumps say it all
        jumps = sketch.jumps
        own = map(or_, map(str.startswith, jumps, repeat(IPTABLES_PREFIXES)),
                  map(eq, jumps, repeat("KUBE-NODEPORTS")))  # fmt: skip
        _first(signs[ProxyMode.IPTABLES], sketch, compress(count(), own), live=True)
        ipvs = map(IPVS_ENTRY.__contains__, jumps)
        _first(signs[ProxyMode.IPVS], sketch, compress(count(), ipvs), live=True)
    elif services is None or not services.rules:
        for mode in (ProxyMode.IPTABLES, ProxyMode.IPVS):
            signs[mode].all_live()
    else:
        for rule in services.rules:
            target = rule.target
            to = target.chain if isinstance(target, Jump) else ""
            if to.startswith(IPTABLES_PREFIXES) or to == "KUBE-NODEPORTS":
                signs[ProxyMode.IPTABLES].add(rule.origin, live=True)
            elif to in IPVS_ENTRY or _ipvs_set(rule):
                signs[ProxyMode.IPVS].add(rule.origin, live=True)
    hooks = [ruleset.chain("nat", name) for name in ("PREROUTING", "OUTPUT")]
    hook_rules = [rule for chain in hooks if chain is not None for rule in chain.rules]
    if not hook_rules:
        signs[ProxyMode.USERSPACE].all_live()
    for rule in hook_rules:
        target = rule.target
        if isinstance(target, Jump) and target.chain in USERSPACE_CHAINS:
            signs[ProxyMode.USERSPACE].add(rule.origin, live=True)


# ---------------------------------------------------------------- messages

_SAYS = {
    ProxyMode.IPTABLES: "kube-proxy runs in iptables mode here: these iptables rules "
    "(KUBE-SVC- chains and their statistic matches) pick the endpoint",
    ProxyMode.IPVS: "kube-proxy runs in IPVS mode here: IPVS, not these iptables rules, "
    "picks the endpoint — see `ipvsadm -Ln` on the node (the rules only mark, masquerade "
    "and accept)",
    ProxyMode.USERSPACE: "kube-proxy runs in userspace mode here (removed in Kubernetes 1.26): "
    "these rules only redirect to kube-proxy's own port, and the kube-proxy process picks "
    "the endpoint",
    ProxyMode.NFTABLES: "kube-proxy runs in nftables mode: kpsim does not trace nftables-mode "
    "rules yet (they are read, not understood); the nftables table kube-proxy picks the "
    "endpoint — see `nft list table ip kube-proxy` on the node",
}


#: kube-proxy's table read by formats/nft/kube_proxy.py: its numgen picks the endpoint.
_READ_NFT = (
    "kube-proxy runs in nftables mode here: its table picks the endpoint (numgen random "
    "vmaps, exact shares over 2^32), read into kpsim's rule model"
)


def _message(
    mode: ProxyMode, live: tuple[ProxyMode, ...], leftovers: tuple[ProxyMode, ...], read: bool
) -> str:
    if mode is ProxyMode.MIXED:
        names = " and ".join(m.label for m in live)
        text = (
            f"rules of several kube-proxy modes are live here ({names}): which of them picks "
            "the endpoint depends on their order in the kernel, which the capture does not show"
        )
    else:
        text = _READ_NFT if mode is ProxyMode.NFTABLES and read else _SAYS[mode]
    if leftovers:
        names = " and ".join(m.label for m in leftovers)
        text += f"; rules left behind by {names} mode are here too, but nothing enters them"
    return text


def _none(ruleset: Ruleset) -> ModeFinding:
    # names only: a capture read on demand makes a chain when it is looked up
    kubelet = [
        n for t in ruleset.tables.values() for n in filter(KUBELET_CHAINS.__contains__, t.chains)
    ]
    text = (
        "no kube-proxy rules in this capture (no KUBE-SERVICES, KUBE-SVC-, IPVS, userspace or "
        "nftables kube-proxy chains): nothing here picks a service endpoint"
    )
    if kubelet:
        text += f" (only kubelet's chains: {', '.join(sorted(set(kubelet)))})"
    return ModeFinding(ProxyMode.NONE, (), text, chooses_endpoints=False)


__all__ = ["ModeFinding", "ProxyMode", "proxy_mode"]
