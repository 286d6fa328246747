"""Mermaid flowchart for a GraphView, for Markdown that GitHub renders in place.

    flowchart LR
      chain_nat_KUBE_NODEPORTS["KUBE-NODEPORTS"]
      chain_nat_KUBE_NODEPORTS -->|"#35;1 -p tcp --dport 30080"| chain_nat_KUBE_EXT_H

Ids are sanitised to ``[A-Za-z0-9_]`` (made unique), labels are quoted with Mermaid's
entity escapes, and the traced path is styled with ``linkStyle`` / ``classDef``.
"""

from __future__ import annotations

import re

from kpsim.graph.model import GraphView, Highlight, NodeKind
from kpsim.render.dot import COLORS, edge_label, node_label

_SHAPE = {
    NodeKind.BUILTIN: ("[[", "]]"),
    NodeKind.CHAIN: ("[", "]"),
    NodeKind.MISSING: ("[/", "/]"),
    NodeKind.DROP: ("{{", "}}"),
    NodeKind.REJECT: ("{{", "}}"),
}
_LEAF = ("([", "])")  # stadium: where the walk ends


def label(text: str) -> str:
    """Quoted Mermaid text: ``#``, quotes and angle brackets as entities, lines as <br/>."""
    for ch, entity in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(ch, entity)
    return '"' + text.replace("\n", "<br/>") + '"'


def _ids(view: GraphView) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for n in view.nodes:
        base = re.sub(r"[^A-Za-z0-9_]", "_", n.id)
        sid, i = base, 2
        while sid in used:  # "a-b" and "a_b" would collide
            sid, i = f"{base}_{i}", i + 1
        used.add(sid)
        out[n.id] = sid
    return out


def graph_mermaid(view: GraphView) -> str:
    """``flowchart LR``: one line per node, one ``-->`` line per edge, then styles."""
    ids = _ids(view)
    out = ["flowchart LR"]
    heads = (view.title, view.selection, *view.notes)
    out += [f"  %% {' '.join(line.split())}" for line in heads if line]  # one line each
    for n in view.nodes:
        left, right = _SHAPE.get(n.kind, _LEAF)
        out.append(f"  {ids[n.id]}{left}{label(node_label(n))}{right}")
    for e in view.edges:
        arrow = "-.->" if e.kind == "goto" else "-->"
        out.append(f"  {ids[e.source]} {arrow}|{label(edge_label(e))}| {ids[e.target]}")
    for mark in Highlight:
        color, width = COLORS[mark]
        style = f"stroke:{color},stroke-width:{width}px"
        links = [str(i) for i, e in enumerate(view.edges) if e.highlight is mark]
        nodes = [ids[n.id] for n in view.nodes if n.highlight is mark]
        if links:
            out.append(f"  linkStyle {','.join(links)} {style}")
        if nodes:
            out.append(f"  classDef {mark.value} {style}")
            out.append(f"  class {','.join(nodes)} {mark.value}")
    return "\n".join(out) + "\n"
