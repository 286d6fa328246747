"""``kpsim why``: causes of uneven load, strongest first, in plain words (and JSON)."""

from __future__ import annotations

import textwrap
from typing import Any

from kpsim.explain.why import SCHEMA, WhyReport
from kpsim.render.fit_text import fit_doc, fit_lines, share_text
from kpsim.render.json import dumps

_MARK = {"explains": "EXPLAINS", "likely": "LIKELY", "possible": "POSSIBLE",
         "ruled-out": "RULED OUT"}  # fmt: skip


def why_text(r: WhyReport) -> str:
    out = [f"why: {r.service} (shares from {r.node}; n = {r.n}, {r.source})"]
    out += [f"note: {n}" for n in r.notes]
    if r.fit is not None:
        out += ["", "observed against the rules:", *fit_lines(r.fit, r.pods)]
    else:
        out += ["", "exact shares (per new connection):"]
        out += [
            f"  {lab}  {share_text(q)}" + (f"  {pod}" if pod else "")
            for lab, q, pod in zip(r.labels, r.shares, r.pods, strict=True)
        ]
    out += ["", "causes, strongest first:"]
    for i, c in enumerate(r.causes, 1):
        body = textwrap.fill(
            c.text, 96, initial_indent="     ", subsequent_indent="     ", break_on_hyphens=False
        )
        out += [f"{i:2}. [{_MARK[c.status]}] {c.title}", body]
        if c.evidence:
            out.append("     rules: " + ", ".join(e for e in c.evidence if e))
        link = f" — {c.doc_url}" if c.doc_url else ""
        out.append(f"     look up: {c.doc_term}{link}")
    return "\n".join(out) + "\n"


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
