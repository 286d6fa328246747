"""``kpsim/graph/v1``: the GraphView as JSON (documented in docs/graph.md).

Sorted keys, nodes and edges in the view's order, exact probabilities as ``n/d`` strings
next to their float, so the same rules give byte-identical output.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from kpsim.graph.model import GraphEdge, GraphNode, GraphView
from kpsim.render.capture import capture_doc

GRAPH_SCHEMA = "kpsim/graph/v1"


def _exact(f: Fraction | None) -> str | None:
    return None if f is None else f"{f.numerator}/{f.denominator}"


def node_doc(n: GraphNode) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind.value,
        "leaf": n.kind.is_leaf,
        "table": n.table,
        "label": n.label,
        "chain": n.chain,
        "destination": n.destination,
        "service": n.service,
        "share": None if n.share is None else float(n.share),
        "share_exact": _exact(n.share),
        "highlight": n.highlight.value if n.highlight else None,
    }


def edge_doc(e: GraphEdge) -> dict[str, Any]:
    return {
        "source": e.source,
        "target": e.target,
        "table": e.table,
        "chain": e.chain,
        "rule": e.number,
        "kind": e.kind,
        "conditions": e.conditions,
        "comment": e.comment,
        "probability": None if e.probability is None else float(e.probability),
        "probability_exact": _exact(e.probability),
        "origin": e.origin,
        "highlight": e.highlight.value if e.highlight else None,
    }


def graph_json(view: GraphView) -> str:
    doc = {
        "schema": GRAPH_SCHEMA,
        "title": view.title,
        "selection": view.selection,
        "notes": list(view.notes),
        "capture": capture_doc(view.capture),
        "nodes": [node_doc(n) for n in view.nodes],
        "edges": [edge_doc(e) for e in view.edges],
    }
    return json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n"
