"""The chain graph: chains as nodes, jumping rules as edges (networkx).

    (nat, PREROUTING) ─rule 1─▶ (nat, KUBE-SERVICES) ─rule 7─▶ (nat, KUBE-SVC-H) ─▶ …

The flow graph adds what a reader wants to see at the bottom — the leaves where a packet's
fate is decided — and the exact share each statistic edge takes:

    KUBE-NODEPORTS ─#1 --dport 30080─▶ KUBE-EXT-H ─▶ KUBE-SVC-H ─p₁─▶ KUBE-SEP-A ─▶ (DNAT ip:port)
                                                              └─p₂─▶ KUBE-SEP-B ─▶ (DNAT ip:port)

``GraphView`` is that graph frozen into plain tuples, so render/ can draw it without networkx.
The only module that imports networkx.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kpsim import kube
from kpsim.errors import UsageError
from kpsim.model import (
    BUILTIN_CHAINS,
    Address,
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConntrackMatch,
    Dnat,
    Jump,
    MarkMatch,
    Masquerade,
    Match,
    MultiportMatch,
    NfacctMatch,
    OpaqueMatch,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentMatch,
    Redirect,
    Reject,
    Rule,
    Ruleset,
    SetMatch,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Verdict,
)

ChainKey = tuple[str, str]  # (table, chain)
K = TypeVar("K")


if TYPE_CHECKING:
    import networkx as nx


def _nx() -> Any:
    """networkx, imported on first use: it costs 0.1 s of start-up that ``show`` and
    ``trace`` do not need."""
    import networkx

    return networkx


def chain_graph(ruleset: Ruleset) -> nx.MultiDiGraph:
    """Every chain a node, every jump/goto an edge keyed by the rule's number.

    Jumps to chains the ruleset does not define still get a node, marked
    ``missing=True``, so callers can report them instead of failing."""
    graph = _nx().MultiDiGraph()
    for tname, table in ruleset.tables.items():
        for cname, chain in table.chains.items():
            graph.add_node((tname, cname), missing=False, policy=chain.policy)
    for tname, table in ruleset.tables.items():
        for cname, chain in table.chains.items():
            for rule in chain.rules:
                if isinstance(rule.target, Jump):
                    dest = (tname, rule.target.chain)
                    if dest not in graph:
                        graph.add_node(dest, missing=True, policy=None)
                    graph.add_edge((tname, cname), dest, key=rule.number, rule=rule)
    return graph


def references(ruleset: Ruleset) -> tuple[dict[ChainKey, int], list[ChainKey]]:
    """How many rules jump to each chain (what ``iptables -L`` prints as references),
    and the chains jumped to that the capture does not define.

    A plain count, not the networkx graph: ``show`` needs only in-degrees, and building
    the graph costs ~2 s on a 10,000-service dump (measured) for nothing more."""
    refs: dict[ChainKey, int] = {}
    missing: list[ChainKey] = []
    for tname, table in ruleset.tables.items():
        # Counter's C loop over a generator, per table, instead of `+= 1` per rule:
        # 0.09 s → 0.06 s on the 226,000 rules of a 10,000-service dump (measured)
        jumps = Counter(
            target.chain
            for chain in table.chains.values()
            for rule in chain.rules
            if isinstance(target := rule.target, Jump)
        )
        for name, n in jumps.items():
            refs[(tname, name)] = n
            if name not in table.chains:
                missing.append((tname, name))
    return refs, sorted(missing)


# ---------------------------------------------------------------- the view renderers draw


class NodeKind(str, Enum):
    """Chains first, then the leaves where a verdict or a NAT ends the packet's walk."""

    BUILTIN = "builtin"
    CHAIN = "chain"
    MISSING = "missing"  # jumped to, not defined in the capture
    DNAT = "dnat"
    SNAT = "snat"
    MASQUERADE = "masquerade"
    REDIRECT = "redirect"
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"

    @property
    def is_leaf(self) -> bool:
        return self not in (NodeKind.BUILTIN, NodeKind.CHAIN, NodeKind.MISSING)


class Highlight(str, Enum):
    """BEST: on the most probable traced path; PATH: on some other traced outcome's path."""

    BEST = "best"
    PATH = "path"


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A chain (``chain`` set) or a leaf (``destination`` set for NAT leaves).

    ``share`` is set for KUBE-SEP chains and the DNAT leaf only they reach: the endpoint's
    exact chance for a new client of its service (kube.services, the KUBE-SVC cascade)."""

    id: str
    kind: NodeKind
    table: str
    label: str
    chain: str | None = None
    destination: str | None = None
    service: str | None = None
    share: Fraction | None = None
    highlight: Highlight | None = None


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """One rule: ``source`` chain ─▶ jumped-to chain or leaf, keyed by the rule number.

    ``probability`` is set in chains with a ``statistic --mode random`` cascade: the share
    of what enters the chain that takes this edge, p_i·Π_{j<i}(1 − p_j), with the kernel's
    integer-over-2^31 p. Other conditions (-d, --dport, addrtype…) are ignored: the share
    is of packets that reach the cascade, not of all packets."""

    source: str
    target: str
    table: str
    chain: str
    number: int
    kind: str  # jump | goto | verdict
    conditions: str
    comment: str | None = None
    probability: Fraction | None = None
    origin: str | None = None
    highlight: Highlight | None = None


@dataclass(frozen=True, slots=True)
class GraphView:
    """What a renderer draws: sorted nodes and edges, a title, and notes to print."""

    title: str
    selection: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    notes: tuple[str, ...] = ()


class PathStep(Protocol):
    """One step of a traced path (``walk.Step``): number 0 is a chain policy."""

    @property
    def table(self) -> str: ...
    @property
    def chain(self) -> str: ...
    @property
    def number(self) -> int: ...


def chain_id(table: str, chain: str) -> str:
    return f"chain:{table}:{chain}"


def fraction_text(f: Fraction) -> str:
    """``715827883/2^31`` rather than ``715827883/2147483648``: kernel shares are over 2^k."""
    den = f.denominator
    if den == 1:
        return str(f.numerator)
    if den > 2 and den & (den - 1) == 0:
        return f"{f.numerator}/2^{den.bit_length() - 1}"
    return f"{f.numerator}/{den}"


# ---------------------------------------------------------------- rule → text


def _addr(flag: str, a: Address | None) -> list[str]:
    if a is None:
        return []
    text = str(a.network) if a.network is not None else (a.unresolved or "?")
    return [f"{'! ' if a.negated else ''}{flag} {text}"]


def _ports(ranges: Iterable[PortRange]) -> str:
    return ",".join(str(r) for r in ranges)


def _match_text(m: Match) -> str | None:
    """A few words per match; comments are kept apart (GraphEdge.comment)."""
    neg = "! " if getattr(m, "negated", False) else ""
    if isinstance(m, CommentMatch):
        return None
    if isinstance(m, PortMatch):
        parts = []
        if m.dport is not None:
            parts.append(f"{'! ' if m.dport_negated else ''}--dport {m.dport}")
        if m.sport is not None:
            parts.append(f"{'! ' if m.sport_negated else ''}--sport {m.sport}")
        parts.extend(f"--{o.name} {' '.join(o.args)}".strip() for o in m.extra)
        return " ".join(parts) or None
    if isinstance(m, MultiportMatch):
        return f"{neg}--{m.direction} {_ports(m.ports)}"
    if isinstance(m, StatisticMatch):
        if m.mode is StatisticMode.RANDOM:
            return f"{neg}statistic {m.printed}"
        return f"{neg}statistic every {m.every}"
    if isinstance(m, RecentMatch):
        secs = f" {m.seconds}s" if m.seconds is not None else ""
        return f"{neg}recent {m.command.value} {m.name}{secs}"
    if isinstance(m, AddrTypeMatch):
        parts = []
        if m.src_type:
            parts.append(f"{'! ' if m.src_negated else ''}src {','.join(m.src_type)}")
        if m.dst_type:
            parts.append(f"{'! ' if m.dst_negated else ''}dst {','.join(m.dst_type)}")
        return "addrtype " + " ".join(parts)
    if isinstance(m, MarkMatch | ConnmarkMatch):
        word = "mark" if isinstance(m, MarkMatch) else "connmark"
        return f"{neg}{word} {m.value:#x}/{m.mask:#x}"
    if isinstance(m, ConntrackMatch):
        return f"{neg}ctstate {','.join(m.ctstate)}" if m.ctstate else m.module
    if isinstance(m, SetMatch):
        return f"{neg}set {m.name} {','.join(m.flags)}"
    if isinstance(m, PhysdevMatch):
        return "physdev " + " ".join(o.name for o in m.options)
    if isinstance(m, NfacctMatch):
        return f"nfacct {m.name}"
    if isinstance(m, OpaqueMatch):
        return m.text or f"-m {m.module}"
    return None


def conditions(rule: Rule) -> str:
    """The rule's conditions in iptables words, e.g. ``-p tcp --dport 30080``."""
    parts = [*_addr("-s", rule.source), *_addr("-d", rule.destination)]
    if rule.protocol is not None:
        parts.append(f"{'! ' if rule.protocol.negated else ''}-p {rule.protocol.name}")
    for flag, iface in (("-i", rule.in_interface), ("-o", rule.out_interface)):
        if iface is not None:
            parts.append(f"{'! ' if iface.negated else ''}{flag} {iface.name}")
    if rule.fragment is not None:
        parts.append("-f" if rule.fragment else "! -f")
    parts.extend(t for m in rule.matches if (t := _match_text(m)))
    return " ".join(parts)


def _leaf(rule: Rule) -> tuple[NodeKind, str, str | None] | None:
    """(kind, label, destination) of a rule that ends the walk, or None."""
    t = rule.target
    if isinstance(t, Dnat):
        dest = ",".join(str(r) for r in t.to)
        return NodeKind.DNAT, f"DNAT {dest}".strip(), dest or None
    if isinstance(t, Snat):
        dest = ",".join(str(r) for r in t.to)
        flag = " --random-fully" if t.random_fully else ""
        return NodeKind.SNAT, f"SNAT {dest}{flag}", dest or None
    if isinstance(t, Masquerade):
        ports = f" --to-ports {t.to_ports}" if t.to_ports else ""
        flag = " --random-fully" if t.random_fully else ""
        return NodeKind.MASQUERADE, f"MASQUERADE{ports}{flag}", None
    if isinstance(t, Redirect):
        to = str(t.to_ports) if t.to_ports else None
        return NodeKind.REDIRECT, f"REDIRECT {to or ''}".strip(), to
    if isinstance(t, Reject):
        return NodeKind.REJECT, f"REJECT {t.with_ or ''}".strip(), None
    if isinstance(t, Standard) and t.verdict in (Verdict.ACCEPT, Verdict.DROP):
        kind = NodeKind.ACCEPT if t.verdict is Verdict.ACCEPT else NodeKind.DROP
        return kind, t.verdict.value, None
    return None


# ---------------------------------------------------------------- probabilities


def _terminating(ruleset: Ruleset, table: str) -> set[str]:
    """Chains from which a packet can end (a leaf reachable). A jump to any other chain
    (KUBE-MARK-MASQ: only MARK) always returns, so it takes no share of a cascade."""
    t = ruleset.table(table)
    if t is None:
        return set()
    ends = {n for n, c in t.chains.items() if any(_leaf(r) for r in c.rules)}
    changed = True
    while changed:  # fixpoint over jumps; chain graphs are shallow
        changed = False
        for name, chain in t.chains.items():
            if name not in ends and any(
                isinstance(r.target, Jump) and r.target.chain in ends for r in chain.rules
            ):
                ends.add(name)
                changed = True
    return ends


def cascade_shares(rules: Sequence[Rule], decisive: set[str]) -> dict[int, Fraction]:
    """Rule number → share of the chain's entrants taking it, from the first
    ``statistic`` rule on: p_i·Π(1 − p_j) (kube.cascade); a rule without statistic
    takes all that is left. Affinity (``recent``) rules and jumps that return are
    skipped, as kube.endpoint_shares does; nth rules count at their long-run share."""
    first = next(
        (i for i, r in enumerate(rules) if any(isinstance(m, StatisticMatch) for m in r.matches)),
        len(rules),
    )

    def counted(rule: Rule) -> bool:
        if any(isinstance(m, RecentMatch) for m in rule.matches):
            return False
        t = rule.target
        return _leaf(rule) is not None or (isinstance(t, Jump) and t.chain in decisive)

    return {r.number: p for r, p in kube.cascade(rules[first:], counted, nth=True)}


# ---------------------------------------------------------------- the flow graph


def flow_graph(ruleset: Ruleset, tables: Sequence[str] = ("nat",)) -> nx.MultiDiGraph:
    """Chains and leaves of ``tables``; edges keyed by rule number carry ``edge``
    (a GraphEdge), nodes carry ``node`` (a GraphNode)."""
    graph = _nx().MultiDiGraph()
    names, shares = _kube_names(ruleset)
    for tname in tables:
        table = ruleset.table(tname)
        if table is None:
            continue
        builtin = set(BUILTIN_CHAINS.get(tname, ()))
        decisive = _terminating(ruleset, tname)
        for cname in table.chains:
            kind = NodeKind.BUILTIN if cname in builtin else NodeKind.CHAIN
            _add_chain(graph, tname, cname, kind, names, shares)
        for chain in table.chains.values():
            probs = cascade_shares(chain.rules, decisive)
            for rule in chain.rules:
                _add_rule_edge(graph, rule, probs.get(rule.number), names, shares)
    return graph


def _kube_names(ruleset: Ruleset) -> tuple[dict[str, str], dict[str, Fraction]]:
    """Chain → service name, and KUBE-SEP chain → its share in the KUBE-SVC cascade."""
    names: dict[str, str] = {}
    shares: dict[str, Fraction] = {}
    for svc in kube.services(ruleset):
        for prefix in kube.SERVICE_PREFIXES:
            names[prefix + svc.hash] = svc.name
        for e in (*svc.local_endpoints, *svc.endpoints):  # the cluster-wide share wins
            names[e.chain] = svc.name
            shares[e.chain] = e.probability
    return names, shares


def _add_chain(
    graph: nx.MultiDiGraph,
    table: str,
    chain: str,
    kind: NodeKind,
    names: dict[str, str],
    shares: dict[str, Fraction],
) -> str:
    nid = chain_id(table, chain)
    if nid not in graph:
        node = GraphNode(
            nid, kind, table, chain, chain=chain, service=names.get(chain), share=shares.get(chain)
        )
        graph.add_node(nid, node=node)
    return nid


def _add_rule_edge(
    graph: nx.MultiDiGraph,
    rule: Rule,
    probability: Fraction | None,
    names: dict[str, str],
    shares: dict[str, Fraction],
) -> None:
    src = chain_id(rule.table, rule.chain)
    t = rule.target
    if isinstance(t, Jump):
        kind = "goto" if t.goto else "jump"
        dst = _add_chain(graph, rule.table, t.chain, NodeKind.MISSING, names, shares)
    elif (leaf := _leaf(rule)) is not None:
        kind = "verdict"
        lkind, label, dest = leaf
        dst = f"leaf:{rule.table}:{label}"
        if dst not in graph:
            graph.add_node(dst, node=GraphNode(dst, lkind, rule.table, label, destination=dest))
    else:
        return
    edge = GraphEdge(
        src,
        dst,
        rule.table,
        rule.chain,
        rule.number,
        kind,
        conditions(rule),
        rule.comment,
        probability,
        str(rule.origin) if rule.origin else None,
    )
    graph.add_edge(src, dst, key=rule.number, edge=edge)


# ---------------------------------------------------------------- one service's view

#: Where kube-proxy sends a service's traffic first (nat), or rejects it (filter).
ENTRY_CHAINS: tuple[ChainKey, ...] = (
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-NODEPORTS"),
    ("filter", "KUBE-SERVICES"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "KUBE-NODEPORTS"),
)


def _dports(rule: Rule) -> list[PortRange]:
    out: list[PortRange] = []
    for m in rule.matches:
        if isinstance(m, PortMatch) and m.dport is not None and not m.dport_negated:
            out.append(m.dport)
        elif isinstance(m, MultiportMatch) and m.direction != "sports" and not m.negated:
            out.extend(m.ports)
    return out


def _hash_of(chain: str) -> str | None:
    for prefix in kube.SERVICE_PREFIXES:
        if chain.startswith(prefix):
            return chain[len(prefix) :]
    return None


def _pick_services(ruleset: Ruleset, wanted: str) -> list[kube.Service]:
    """Exact name first, then without the port name, then the bare service name,
    then the chain hash (or a whole KUBE-SVC-… name)."""
    svcs = kube.services(ruleset)
    tiers: tuple[Callable[[kube.Service], bool], ...] = (
        lambda s: s.name == wanted,
        lambda s: s.name.split(":")[0] == wanted,
        lambda s: s.name.split(":")[0].split("/")[-1] == wanted,
        lambda s: wanted in (s.hash, *(p + s.hash for p in kube.SERVICE_PREFIXES)),
    )
    for matches in tiers:
        found = [s for s in svcs if matches(s)]
        if found:
            return found
    listed = ", ".join(dict.fromkeys(s.name for s in svcs)) or "none"
    raise UsageError(f"--service {wanted}: no such service in {ruleset.path} (services: {listed})")


def entry_rules(ruleset: Ruleset, selector: str | int) -> list[Rule]:
    """The KUBE-SERVICES / KUBE-NODEPORTS (… filter REJECT) rules that start the selection:
    a port matches ``--dport``; a service matches its chain hash or its comment."""
    chains = [ch for t, c in ENTRY_CHAINS if (ch := ruleset.chain(t, c)) is not None]
    entry = [r for ch in chains for r in ch.rules]
    if isinstance(selector, int):
        found = [r for r in entry if any(p.contains(selector) for p in _dports(r))]
        if not found:
            ports = sorted({p.lo for r in entry for p in _dports(r) if p.lo == p.hi})
            listed = ", ".join(str(p) for p in ports) or "none"
            raise UsageError(
                f"--port {selector}: no service rule for this port in {ruleset.path} "
                f"(ports here: {listed})"
            )
        return found
    chosen = _pick_services(ruleset, selector)
    hashes = {s.hash for s in chosen}
    wanted = {s.name for s in chosen}
    out = []
    for r in entry:
        h = _hash_of(r.target.chain) if isinstance(r.target, Jump) else None
        if h in hashes or (r.comment is not None and kube.clean_name(r.comment) in wanted):
            out.append(r)
    return out


def service_subgraph(ruleset: Ruleset, service_name_or_port: str | int) -> nx.MultiDiGraph:
    """Only what the service's entry rules reach: entry chain ─▶ KUBE-EXT/FW/SVC ─▶
    KUBE-SEP ─▶ DNAT leaves, with KUBE-MARK-MASQ on the way (nat and filter tables).

    Other rules of the entry chains are left out, and the walk does not go through an
    entry chain again, so KUBE-SERVICES does not pull in every other service."""
    full = flow_graph(ruleset, ("nat", "filter"))
    rules = entry_rules(ruleset, service_name_or_port)
    entry_ids = {chain_id(t, c) for t, c in ENTRY_CHAINS}
    keep_nodes: set[str] = set()
    keep_edges: set[tuple[str, str, int]] = set()
    todo: list[str] = []
    for r in rules:
        src = chain_id(r.table, r.chain)
        for _, dst, key in full.out_edges(src, keys=True):
            if key == r.number:
                keep_nodes.update((src, dst))
                keep_edges.add((src, dst, key))
                todo.append(dst)
    while todo:
        nid = todo.pop()
        if nid in entry_ids:
            continue
        for _, dst, key in full.out_edges(nid, keys=True):
            keep_edges.add((nid, dst, key))
            if dst not in keep_nodes:
                keep_nodes.add(dst)
                todo.append(dst)
    sub = _nx().MultiDiGraph()
    sub.add_nodes_from((n, full.nodes[n]) for n in sorted(keep_nodes))
    sub.add_edges_from((u, v, k, full.edges[u, v, k]) for u, v, k in sorted(keep_edges))
    kind = "port" if isinstance(service_name_or_port, int) else "service"
    sub.graph["selection"] = f"{kind} {service_name_or_port}"
    return sub


# ---------------------------------------------------------------- freezing and marking

_RANK = {NodeKind.BUILTIN: 0, NodeKind.CHAIN: 1, NodeKind.MISSING: 2}


def graph_view(graph: nx.MultiDiGraph, title: str = "", notes: Sequence[str] = ()) -> GraphView:
    """The graph as sorted tuples: same rules → same view, whatever the insertion order."""
    nodes: list[GraphNode] = [
        _with_leaf_share(graph, n, d["node"]) for n, d in graph.nodes(data=True)
    ]
    edges: list[GraphEdge] = [d["edge"] for _, _, d in graph.edges(data=True)]
    nodes.sort(key=lambda n: (n.table, _RANK.get(n.kind, 3), n.label))
    edges.sort(key=lambda e: (e.table, e.chain, e.number))
    selection = str(graph.graph.get("selection", "whole table"))
    return GraphView(title, selection, tuple(nodes), tuple(edges), tuple(notes))


def _with_leaf_share(graph: nx.MultiDiGraph, nid: str, node: GraphNode) -> GraphNode:
    """A DNAT leaf takes its KUBE-SEP chain's share when that chain is its only way in
    (two services' SEPs may DNAT to one pod address: then no single share applies)."""
    if node.kind is not NodeKind.DNAT:
        return node
    sources = {graph.nodes[u]["node"] for u in graph.predecessors(nid)}
    if len(sources) != 1:
        return node
    (sep,) = sources
    return replace(node, share=sep.share, service=sep.service)


def highlight(view: GraphView, paths: Sequence[Sequence[PathStep]]) -> GraphView:
    """Mark the edges and chains the traced paths go through: ``paths[0]`` (the most
    probable outcome's) as BEST, the others as PATH. Steps outside the view are ignored."""
    by_rule = {(e.table, e.chain, e.number): i for i, e in enumerate(view.edges)}
    edge_marks: dict[int, Highlight] = {}
    node_marks: dict[str, Highlight] = {}
    for i, path in enumerate(paths):
        level = Highlight.BEST if i == 0 else Highlight.PATH
        for step in path:
            if step.number == 0:
                continue
            nid = chain_id(step.table, step.chain)
            _mark(node_marks, nid, level)
            if (idx := by_rule.get((step.table, step.chain, step.number))) is not None:
                _mark(edge_marks, idx, level)
                _mark(node_marks, view.edges[idx].target, level)
    nodes = tuple(
        replace(n, highlight=node_marks[n.id]) if n.id in node_marks else n for n in view.nodes
    )
    edges = tuple(
        replace(e, highlight=edge_marks[i]) if i in edge_marks else e
        for i, e in enumerate(view.edges)
    )
    return replace(view, nodes=nodes, edges=edges)


def _mark(marks: dict[K, Highlight], key: K, level: Highlight) -> None:
    if marks.get(key) is not Highlight.BEST:
        marks[key] = level


# ---------------------------------------------------------------- GraphML


def to_graphml(view: GraphView) -> str:
    """GraphML via networkx. GraphML knows str/int/float/bool only: Fractions become a
    float plus an exact ``n/d`` string; absent values are left out."""
    g = _nx().MultiDiGraph(title=view.title, selection=view.selection, notes="\n".join(view.notes))
    for n in view.nodes:
        attrs: dict[str, object] = {"kind": n.kind.value, "table": n.table, "label": n.label}
        for key, value in (("chain", n.chain), ("destination", n.destination)):
            if value is not None:
                attrs[key] = value
        if n.service is not None:
            attrs["service"] = n.service
        _put_fraction(attrs, "share", n.share)
        if n.highlight is not None:
            attrs["highlight"] = n.highlight.value
        g.add_node(n.id, **attrs)
    for e in view.edges:
        eattrs: dict[str, object] = {
            "table": e.table,
            "chain": e.chain,
            "rule": e.number,
            "kind": e.kind,
            "conditions": e.conditions,
        }
        for key, value in (("comment", e.comment), ("origin", e.origin)):
            if value is not None:
                eattrs[key] = value
        _put_fraction(eattrs, "probability", e.probability)
        if e.highlight is not None:
            eattrs["highlight"] = e.highlight.value
        g.add_edge(e.source, e.target, key=f"{e.chain}#{e.number}", **eattrs)
    buf = io.BytesIO()
    _nx().write_graphml(g, buf, encoding="utf-8")
    return buf.getvalue().decode("utf-8")


def _put_fraction(attrs: dict[str, object], key: str, value: Fraction | None) -> None:
    if value is not None:
        attrs[key] = float(value)
        attrs[f"{key}_exact"] = f"{value.numerator}/{value.denominator}"
