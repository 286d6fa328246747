"""The chain graph: chains as nodes, jumping rules as edges (networkx).

    (nat, PREROUTING) ─rule 1─▶ (nat, KUBE-SERVICES) ─rule 7─▶ (nat, KUBE-SVC-H) ─▶ …

The flow graph adds what a reader wants to see at the bottom — the leaves where a packet's
fate is decided — and the exact share each statistic edge takes:

    KUBE-NODEPORTS ─#1 --dport 30080─▶ KUBE-EXT-H ─▶ KUBE-SVC-H ─p₁─▶ KUBE-SEP-A ─▶ (DNAT ip:port)
                                                              └─p₂─▶ KUBE-SEP-B ─▶ (DNAT ip:port)

``GraphView`` is that graph frozen into plain tuples, so render/ can draw it without networkx.
The only module that imports networkx.

The view's types and ``highlight`` live in model.py, rule text, leaves and cascade
shares in rules.py, the rules a --port / --service selection starts from in
select.py; all are re-exported here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from kpsim.graph.model import (
    ChainKey,
    GraphEdge,
    GraphNode,
    GraphView,
    Highlight,
    NodeKind,
    PathStep,
    chain_id,
    fraction_text,
    highlight,
)
from kpsim.graph.rules import _leaf, _terminating, cascade_shares, conditions
from kpsim.graph.select import ENTRY_CHAINS, entry_rules
from kpsim.kube import services as kube
from kpsim.model import BUILTIN_CHAINS, Jump, Rule, Ruleset

__all__ = [
    "ENTRY_CHAINS",
    "ChainKey",
    "GraphEdge",
    "GraphNode",
    "GraphView",
    "Highlight",
    "NodeKind",
    "PathStep",
    "cascade_shares",
    "chain_graph",
    "chain_id",
    "conditions",
    "entry_rules",
    "flow_graph",
    "fraction_text",
    "graph_view",
    "highlight",
    "service_subgraph",
    "to_graphml",
]

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


# ---------------------------------------------------------------- freezing (highlight: model.py)

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
