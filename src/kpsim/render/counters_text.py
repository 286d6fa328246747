"""``kpsim counters``: per service, observed new connections next to the exact shares."""

from __future__ import annotations

from typing import Any

from kpsim.explain.counters import SCHEMA, CascadeCounts, CountersReport
from kpsim.render.fit_text import fit_doc, fit_lines
from kpsim.render.json import dumps
from kpsim.render.width import DEFAULT, fold, short_node, short_nodes


def _title(c: CascadeCounts) -> str:
    fronts = [f"NodePort {p}" for p in c.node_ports] + [f"ClusterIP {a}" for a in c.cluster_ips]
    return f"{c.service} — {c.chain} ({c.scope}) — {', '.join(fronts) or 'no frontend'}"


def _idle(c: CascadeCounts) -> bool:
    """No connection counted at all: 0 on every jump and every DNAT rule (a DNAT counter
    above 0 with no draw counted — affinity's repeats — is something to show)."""
    return c.fit is not None and c.fit.n == 0 and all(e.dnat == 0 for e in c.endpoints)


def counters_text(
    reports: list[CountersReport], width: int = DEFAULT, details: bool = False
) -> str:
    """Each node, then each service's table and verdict; folded at ``width``. Services
    that counted nothing share one line unless ``details``."""
    out: list[str] = []
    nodes = [r.node for r in reports]
    for r in reports:
        what = (
            f"difference {r.paths[1]} − {r.paths[0]}" if r.difference else f"capture {r.paths[0]}"
        )
        out += fold(f"node {short_node(r.node)}: {what}", width, "", "  ")
        out += [x for n in r.notes for x in fold(f"note: {short_nodes(n, nodes)}", width, "", "  ")]
        if not r.has_counters:
            out.append("")
            continue
        idle = [c for c in r.cascades if not details and _idle(c)]
        for c in r.cascades:
            if c in idle:
                continue
            out += ["", *fold(_title(c), width, "", "  ")]
            out += [x for n in c.notes for x in fold(f"note: {n}", width, "  ", "    ")]
            if c.fit is None:
                out.append("  no counters for these rules: not judged")
                continue
            out += fit_lines(c.fit, width=width)
            dnat = ", ".join(
                f"{e.destination or e.sep_chain} {e.dnat if e.dnat is not None else '?'}"
                for e in c.endpoints
            )
            out += fold(f"DNAT rule counters (all connections to each pod): {dnat}", width, "  ",
                        "    ")  # fmt: skip
        if idle:
            names = ", ".join(f"{c.service} ({c.scope})" for c in idle)
            line = f"0 connections counted (every jump and DNAT rule at 0; tables: -v): {names}"
            out += ["", *fold(line, width, "", "  ")]
        out.append("")
    return "\n".join(out) + "\n"


def _cascade_doc(c: CascadeCounts) -> dict[str, Any]:
    return {
        "service": c.service,
        "chain": c.chain,
        "scope": c.scope,
        "node_ports": list(c.node_ports),
        "cluster_ips": list(c.cluster_ips),
        "affinity_seconds": c.affinity_seconds,
        "endpoints": [
            {
                "chain": e.sep_chain,
                "destination": e.destination,
                "share": round(float(e.share), 6),
                "share_exact": f"{e.share.numerator}/{e.share.denominator}",
                "picked": e.picked,
                "dnat": e.dnat,
                "location": e.location,
            }
            for e in c.endpoints
        ],
        "fit": fit_doc(c.fit) if c.fit is not None else None,
        "notes": list(c.notes),
    }


def counters_json(reports: list[CountersReport]) -> str:
    return dumps(
        {
            "schema": SCHEMA,
            "nodes": [
                {
                    "node": r.node,
                    "paths": list(r.paths),
                    "difference": r.difference,
                    "has_counters": r.has_counters,
                    "notes": list(r.notes),
                    "services": [_cascade_doc(c) for c in r.cascades],
                }
                for r in reports
            ],
        }
    )
