"""A service port's frontends: the KUBE-SERVICES / KUBE-NODEPORTS rules that lead to its
chains (cluster IP, NodePort, external IP, load balancer), grouped by the chains' hash,
and the filter-table REJECTs kube-proxy writes for services without endpoints.

    KUBE-SERVICES -d 172.20.1.5 --dport 80 -j KUBE-SVC-H   ─▶ Frontend(cluster-ip, …) of H
    KUBE-NODEPORTS --dport 30080 -j KUBE-EXT-H             ─▶ Frontend(node-port, …) of H
"""

from __future__ import annotations

from _socket import inet_ntoa  # socket's own: ``socket`` costs ~3 ms to import
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from itertools import compress, count
from typing import NamedTuple

from kpsim.formats.iptables.construct import constructor
from kpsim.kube.names import (
    FRONTEND_SUFFIXES,
    SERVICE_PREFIXES,
    clean_name,
    comment_name,
    hash_part,
)
from kpsim.model import (
    Address,
    Chain,
    CommentMatch,
    Jump,
    PortMatch,
    Reject,
    Rule,
    Ruleset,
    RuleSketch,
)


class RuleAt(NamedTuple):
    """A frontend's rule not built yet: ``chain.rule(at)``, which jumps to ``jump``."""

    chain: Chain
    at: int
    jump: str


@dataclass(frozen=True, slots=True)
class Frontend:
    """An address:port a client can use: ``kind`` is cluster-ip, node-port,
    external-ip or load-balancer; ``source`` its rule, or where it is (``RuleAt``: read
    off a sketch, its rule built when asked for)."""

    kind: str
    address: str | None
    port: int | None
    protocol: str | None
    source: Rule | RuleAt = field(compare=False)

    @property
    def rule(self) -> Rule:
        source = self.source
        return source if isinstance(source, Rule) else source.chain.rule(source.at)

    @property
    def jump(self) -> str | None:
        """The chain its rule jumps to (None: another target)."""
        source = self.source
        if isinstance(source, RuleAt):
            return source.jump
        return source.target.chain if isinstance(source.target, Jump) else None


_new_frontend: Callable[..., Frontend] = constructor(Frontend)


def address(a: Address | None) -> str | None:
    if a is None or a.negated:
        return None
    if a.network is None:
        return a.unresolved
    net = a.network
    if net.prefixlen != net.max_prefixlen:
        return str(net)
    host = net.network_address
    # inet_ntoa prints what str() does, in C: 0.9 µs → 0.5 µs an address (measured)
    return inet_ntoa(host.packed) if isinstance(host, IPv4Address) else str(host)


class Draft:
    """A service port taking shape: its frontends, grouped by the chains' hash. (A plain
    class: as a dataclass its definition took 0.55 ms of every ``kpsim`` start.)"""

    __slots__ = ("frontends", "hash", "names", "protocol")

    def __init__(self, chain_hash: str) -> None:
        self.hash = chain_hash
        self.names: list[str] = []  # from the frontends' comments
        self.protocol: str | None = None
        self.frontends: list[Frontend] = []


def _frontend_kind(comment: str, default: str) -> str:
    if comment.endswith(" cluster IP"):  # nearly all of them: one test, not three
        return "cluster-ip"
    for suffix, kind in FRONTEND_SUFFIXES.items():
        if comment.endswith(suffix):
            return kind
    return default


def frontend(rule: Rule, kind_default: str) -> tuple[Frontend, str | None]:
    """A KUBE-SERVICES / KUBE-NODEPORTS rule's frontend, and the name its comment gives."""
    text, dport = None, None
    for m in rule.matches:  # one pass for what rule.comment and a --dport scan would find
        if isinstance(m, CommentMatch):
            text = m.text if text is None else text
        elif isinstance(m, PortMatch) and dport is None and (r := m.dport) is not None:
            dport = r.lo if r.lo == r.hi else None
    text = text or ""
    proto = rule.protocol.name if rule.protocol else None
    kind = _frontend_kind(text, kind_default)
    front = _new_frontend(kind, address(rule.destination), dport, proto, rule)
    # the first comment is the named one, nearly always: no second scan for it
    return front, clean_name(text) if "/" in text else comment_name(rule)


def collect_frontends(
    ruleset: Ruleset, drafts: dict[str, Draft], only: Collection[str] | None = None
) -> None:
    """The frontends of every service (or of those whose chain hash is in ``only``)."""
    for chain_name, kind_default in (
        ("KUBE-SERVICES", "cluster-ip"),
        ("KUBE-NODEPORTS", "node-port"),
    ):
        chain = ruleset.chain("nat", chain_name)
        if chain is None:
            continue
        sketch = chain.sketch()
        if sketch is not None and only is None:  # read on demand: no rule built
            _sketch_frontends(chain, sketch, kind_default, drafts)
            continue
        rules: Iterable[Rule] = chain.rules if sketch is None else ()
        if sketch is not None and only is not None:  # read on demand: build only these
            # the jumps to their chains, picked in C: ``hash_part`` of each of KUBE-SERVICES'
            # 10,001 jumps took 14 ms of a trace (measured)
            own = {p + h for h in only for p in SERVICE_PREFIXES}
            rules = map(sketch.rule, compress(count(), map(own.__contains__, sketch.jumps)))
        for rule in rules:
            target = rule.target
            # one C call rejects the ~50k KUBE-SEP- jumps
            if not isinstance(target, Jump) or not target.chain.startswith(SERVICE_PREFIXES):
                continue
            h = hash_part(target.chain)
            if only is not None and h not in only:
                continue
            d = drafts.get(h) or drafts.setdefault(h, Draft(h))
            front, name = frontend(rule, kind_default)
            d.protocol = d.protocol or front.protocol
            d.frontends.append(front)
            if name is not None:
                d.names.append(name)


def _sketch_frontends(
    chain: Chain, sketch: RuleSketch, kind_default: str, drafts: dict[str, Draft]
) -> None:
    """``frontend`` of each rule of a sketched chain (``formats.iptables.sketch``) that
    jumps to a service chain, read off the sketch: building KUBE-SERVICES' 10,001 rules
    took ~0.2 s of ``show`` on a 10,000-service dump, this ~0.03 s (measured). A vouched
    line has at most one comment and one port match; a ``-d`` with a prefix (its network
    address is computed) is read from its rule."""
    lists = (sketch.jumps, sketch.dsts, sketch.dports, sketch.protos, sketch.comments)
    fields = zip(*lists, strict=True)
    prefixes, kind_of, new = SERVICE_PREFIXES, _frontend_kind, _new_frontend
    for at, (jump, dst, dport, proto, text) in enumerate(fields):
        if not jump.startswith(prefixes):
            continue
        h = jump[jump.index("-", 5) + 1 :]  # hash_part, inline here and below: 10,000 calls
        d = drafts.get(h) or drafts.setdefault(h, Draft(h))
        if "/" in dst and not dst.endswith("/32"):
            front, name = frontend(chain.rule(at), kind_default)
        else:
            # a vouched address is a dotted quad as ``address`` prints it
            where = dst.removesuffix("/32") if dst and dst[0] != "!" else None
            source = tuple.__new__(RuleAt, (chain, at, jump))  # RuleAt's __new__ is Python
            kind = "cluster-ip" if text.endswith(" cluster IP") else kind_of(text, kind_default)
            front = new(kind, where, int(dport) if dport else None, proto or None, source)
            name = clean_name(text) if "/" in text else None
        d.protocol = d.protocol or front.protocol
        d.frontends.append(front)
        if name is not None:
            d.names.append(name)


def collect_rejects(ruleset: Ruleset) -> dict[str, list[Rule]]:
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
