"""Graphviz DOT for a GraphView: ``kpsim graph -o dot | dot -Tsvg > graph.svg``.

    "chain:nat:KUBE-SVC-H" -> "chain:nat:KUBE-SEP-A" [label="#1 statistic 0.33333333349\\np = …"]

Every id and label is quoted (chain names have dashes; comments have anything), and the
highlighted trace is drawn thick and coloured. Same view → byte-identical text.
"""

from __future__ import annotations

from kpsim.graph.model import GraphEdge, GraphNode, GraphView, Highlight, NodeKind, fraction_text

#: Thick red for the most probable traced path, blue for the other traced outcomes.
COLORS = {Highlight.BEST: ("#d62728", "3"), Highlight.PATH: ("#1f77b4", "2")}

_SHAPES: dict[NodeKind, str] = {
    NodeKind.BUILTIN: 'shape=box, style="rounded,filled,bold", fillcolor="#e8e8e8"',
    NodeKind.CHAIN: 'shape=box, style="rounded"',
    NodeKind.MISSING: 'shape=box, style="rounded,dashed", color="#999999"',
    NodeKind.DNAT: 'shape=ellipse, style=filled, fillcolor="#d9f2d9"',
    NodeKind.SNAT: 'shape=ellipse, style=filled, fillcolor="#fff2cc"',
    NodeKind.MASQUERADE: 'shape=ellipse, style=filled, fillcolor="#fff2cc"',
    NodeKind.REDIRECT: 'shape=ellipse, style=filled, fillcolor="#dae8fc"',
    NodeKind.ACCEPT: 'shape=ellipse, style=filled, fillcolor="#dae8fc"',
    NodeKind.DROP: 'shape=octagon, style=filled, fillcolor="#f8cecc"',
    NodeKind.REJECT: 'shape=octagon, style=filled, fillcolor="#f8cecc"',
}


def quote(text: str) -> str:
    """A DOT double-quoted string. Backslashes are doubled so a comment's ``\\n`` or
    ``\\N`` is not read as a DOT escape; newlines become DOT's own ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def node_label(n: GraphNode) -> str:
    lines = [n.label]
    if n.service and n.kind is not NodeKind.MISSING:
        lines.append(n.service)
    if n.kind is NodeKind.MISSING:
        lines.append("(not in the capture)")
    if n.share is not None:
        lines.append(f"share {fraction_text(n.share)} ≈ {float(n.share):.4f}")
    return "\n".join(lines)


def edge_label(e: GraphEdge) -> str:
    head = f"#{e.number}" + (" goto" if e.kind == "goto" else "")
    lines = [f"{head} {e.conditions}".strip()]
    if e.probability is not None:
        lines.append(f"p = {fraction_text(e.probability)} ≈ {float(e.probability):.4f}")
    return "\n".join(lines)


def _attrs(parts: list[str], mark: Highlight | None, node: bool) -> str:
    if mark is not None:
        color, width = COLORS[mark]
        parts += [f'color="{color}"', f"penwidth={width}"]
        if not node:
            parts.append(f'fontcolor="{color}"')
    return ", ".join(parts)


def graph_dot(view: GraphView) -> str:
    """The whole view as one ``digraph``, left to right."""
    title = "\n".join([view.title or "kpsim graph", view.selection, *view.notes])
    out = [
        "digraph kpsim {",
        f"  graph [rankdir=LR, fontname=Helvetica, labelloc=t, label={quote(title)}];",
        "  node [fontname=Helvetica, fontsize=10];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    for n in view.nodes:
        parts = [f"label={quote(node_label(n))}", _SHAPES[n.kind]]
        out.append(f"  {quote(n.id)} [{_attrs(parts, n.highlight, True)}];")
    for e in view.edges:
        parts = [f"label={quote(edge_label(e))}"]
        if e.comment:
            parts.append(f"tooltip={quote(e.comment)}")
        if e.kind == "goto":
            parts.append("style=dashed")
        out.append(
            f"  {quote(e.source)} -> {quote(e.target)} [{_attrs(parts, e.highlight, False)}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"
