"""What renderers draw: the flow graph frozen into plain, sorted tuples (no networkx).

    GraphView(title, selection, nodes=(GraphNode…), edges=(GraphEdge…), notes)
        GraphNode: a chain (builtin, chain, missing) or a leaf (DNAT, SNAT, ACCEPT, DROP…)
        GraphEdge: one rule, source chain ─▶ target, with its exact share of a cascade

``highlight`` marks the chains and rules traced paths go through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from fractions import Fraction
from typing import Protocol, TypeVar

from kpsim.model import Capture

ChainKey = tuple[str, str]  # (table, chain)
K = TypeVar("K")


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
    capture: Capture = field(default_factory=Capture)  # what the drawn capture lacks


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
