"""``kpsim why``: causes of uneven load, strongest first, in plain words (and JSON)."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console

from kpsim.explain.why import SCHEMA, WhyReport
from kpsim.render.fit_text import fit_doc, fit_lines, share_text
from kpsim.render.fractions import exact
from kpsim.render.json import dumps
from kpsim.render.width import (
    DEFAULT,
    Column,
    ellipsize,
    ellipsize_left,
    fitted_table,
    fold,
    hidden_note,
    short_node,
    short_nodes,
    trimmed,
)

_MARK = {"explains": "EXPLAINS", "likely": "LIKELY", "possible": "POSSIBLE",
         "ruled-out": "RULED OUT"}  # fmt: skip
#: A node's full DNS name in a cause's text (EKS, GKE and the like).
_NODE = re.compile(r"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:internal|local|com|net|io)\b")


def why_text(r: WhyReport, width: int = DEFAULT, details: bool = False) -> str:
    """The causes, strongest first, folded at ``width``. By default a ruled-out cause is
    one line and no cause carries its link; ``details`` gives every reason and link."""
    nodes = (r.node,)
    out = fold(f"why: {r.service} (shares from {short_node(r.node)}; n = {r.n}, {r.source})",
               width, "", "  ")  # fmt: skip
    out += [x for n in r.notes for x in fold(f"note: {short_nodes(n, nodes)}", width, "", "  ")]
    if r.fit is not None:
        out += ["", "observed against the rules:", *fit_lines(r.fit, r.pods, width=width)]
    else:
        out += ["", "exact shares (per new connection):", *_shares(r, width)]
    out += ["", "causes, strongest first:"]
    hidden = 0
    for i, c in enumerate(r.causes, 1):
        head = f"{i:2}. [{_MARK[c.status]}] {c.title}"
        if c.status == "ruled-out" and not details:
            out.append(ellipsize(head, width))
            hidden += 1
            continue
        out += fold(head, width, "", "     ")
        out += fold(_short(c.text, r), width, "     ")
        out += _evidence([e for e in c.evidence if e], width)
        if details:
            out += fold(f"look up: {c.doc_term}", width, "     ", "       ")
            out += [_url(c.doc_url, width)] if c.doc_url else []
    if not details:
        why = f"why the {hidden} ruled out, " if hidden else ""
        out += fold(f"({why}what to look up and where: -v)", width)
    return "\n".join(out) + "\n"


def _shares(r: WhyReport, width: int) -> list[str]:
    """Endpoint, share, exact fraction and pod; the fraction, then the pod, give way."""
    columns = [Column("endpoint"), Column("share", justify="right"),
               Column("fraction", priority=2), Column("pod", priority=1)]  # fmt: skip
    rows = [[lab, share_text(q), exact(q), pod or ""]
            for lab, q, pod in zip(r.labels, r.shares, r.pods, strict=True)]  # fmt: skip
    buf = io.StringIO()
    console = Console(file=buf, width=width - 2, no_color=True, highlight=False, markup=False)
    table, dropped = fitted_table(console, columns, rows, box=None, pad_edge=False,
                                  show_header=False)  # fmt: skip
    console.print(table)
    lines = ["  " + x for x in trimmed(buf.getvalue()).split("\n") if x.strip()]
    return lines + (fold(hidden_note(dropped), width, "  ", "    ") if dropped else [])


def _evidence(where: list[str], width: int) -> list[str]:
    """The rules behind a cause: on the ``rules:`` line when they fit, else one
    ``file:line`` a line, as far left as needed to keep each whole."""
    if not where:
        return []
    line = "     rules: " + ", ".join(where)
    if len(line) <= width:
        return [line]
    items = [w + ("," if i < len(where) - 1 else "") for i, w in enumerate(where)]
    pad = max(2, min(7, width - max(len(t) for t in items)))  # one margin for the list
    return ["     rules:", *(" " * pad + ellipsize_left(t, width - pad) for t in items)]


def _url(url: str, width: int) -> str:
    """A link is never cut (a cut one leads nowhere): indented when that fits, else at
    the margin, and one longer than the width alone on its line."""
    return " " * max(0, min(7, width - len(url))) + url


def _short(text: str, r: WhyReport) -> str:
    """Node names in a cause's text as ``--node`` takes them back."""
    return short_nodes(text, {r.node, *_NODE.findall(text)})


def why_doc(r: WhyReport) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "service": r.service,
        "node": r.node,
        "n": r.n,
        "source": r.source,
        "endpoints": [
            {
                "endpoint": lab,
                "pod": pod,
                "share": round(float(q), 6),
                "share_exact": f"{q.numerator}/{q.denominator}",
            }
            for lab, q, pod in zip(r.labels, r.shares, r.pods, strict=True)
        ],
        "fit": fit_doc(r.fit) if r.fit is not None else None,
        "causes": [
            {
                "rank": i,
                "key": c.key,
                "title": c.title,
                "status": c.status,
                "text": c.text,
                "evidence": [e for e in c.evidence if e],
                "doc_term": c.doc_term,
                "doc_url": c.doc_url or None,
                "numbers": dict(c.numbers),
            }
            for i, c in enumerate(r.causes, 1)
        ],
        "notes": list(r.notes),
    }


def why_json(r: WhyReport) -> str:
    return dumps(why_doc(r))
