"""``kpsim show``'s first screen: one services table for the whole fixture set.

Each service once (the nodes' copies merged), with its port, cluster IP, NodePort,
load-balancer / external IPs, endpoints and exact shares; where nodes differ (policy
Local without a local pod, shares that vary) the notes name the node. What a capture
lacks stays on screen as its ``capture:`` line and a count of skipped lines; the
per-capture detail (tables, chains, every diagnostic) is ``kpsim show -v``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from rich import box
from rich.console import Console
from rich.text import Text

from kpsim.kube.services import Service
from kpsim.kube.show import InputSummary, ShowReport
from kpsim.render.capture import capture_text
from kpsim.render.width import Column, ellipsize, fitted_table, hidden_note, short_node

COLUMNS = (
    Column("service"),
    Column("port", 2),
    Column("cluster IP", 3),
    Column("NodePort"),
    Column("LB / external IP", 1),
    Column("endpoints × share"),
)
#: More services than this: a count per kind instead of the table (``-v`` lists them).
ROWS_SHOWN = 40


@dataclass
class _Merged:
    """One service across the nodes that have it."""

    first: Service
    nodes: list[str] = field(default_factory=list)
    shares: set[str] = field(default_factory=set)
    dropped_on: list[str] = field(default_factory=list)
    local_on: list[str] = field(default_factory=list)


def _shares(s: Service) -> str:
    """``3 × 33.33%`` when the kernel gives every endpoint the same share (up to its
    2^-31 steps), else each share in chain order; ``?`` when the capture cannot say."""
    if not s.captured:
        return "?"
    probs = [e.probability for e in s.endpoints]
    if not probs:
        return "none"
    if max(probs) - min(probs) <= Fraction(len(probs), 2**31):
        return f"{len(probs)} × {float(probs[0]) * 100:.2f}%"
    return " / ".join(f"{float(p) * 100:.2f}%" for p in probs)


def _merge(inputs: Sequence[InputSummary]) -> list[_Merged]:
    merged: dict[tuple[str, str], _Merged] = {}
    for i in inputs:
        for s in i.services:
            m = merged.setdefault((s.name, s.protocol or ""), _Merged(s))
            if i.node not in m.nodes:
                m.nodes.append(i.node)
            m.shares.add(_shares(s))
            if s.traffic_policy_local and not s.local_endpoints and i.node not in m.dropped_on:
                m.dropped_on.append(i.node)
            elif s.traffic_policy_local and i.node not in m.local_on:
                m.local_on.append(i.node)
    return [merged[k] for k in sorted(merged)]


def _notes(m: _Merged, many: bool) -> str:
    s, notes = m.first, []
    if s.affinity_seconds is not None:
        notes.append(f"affinity {s.affinity_seconds}s")
    if m.dropped_on:
        where = ", ".join(map(short_node, m.dropped_on)) if many else "this node"
        notes.append(f"policy Local: outside clients DROPPED on {where} (no local pod)")
    elif m.local_on:
        notes.append("policy Local")
    if s.no_endpoints:
        notes.append("NO ENDPOINTS (REJECT)")
    if not s.captured:
        notes.append("chains not captured: endpoints unknown")
    if s.named_by == "chain":
        notes.append("unnamed")
    if len(m.shares) > 1:
        notes.append("shares differ by node (-v)")
    return "; ".join(notes)


def _row(m: _Merged) -> list[str]:
    s = m.first
    fr = s.frontends
    proto = (s.protocol or "?").lower()
    ports = sorted({f.port for f in fr if f.kind == "cluster-ip" and f.port})
    outside = [f"{f.address}:{f.port}" for f in fr if f.kind in ("load-balancer", "external-ip")]
    return [
        s.name,
        ",".join(f"{p}/{proto}" for p in ports) or f"-/{proto}",
        ", ".join(s.cluster_ips) or "-",
        ", ".join(map(str, s.node_ports)) or "-",
        ", ".join(dict.fromkeys(outside)) or "-",
        sorted(m.shares)[0] if len(m.shares) == 1 else "varies by node",
    ]


def _gaps(console: Console, inputs: Sequence[InputSummary]) -> None:
    """What the captures lack: in full for one capture; for several, one line per kind
    of gap with how many captures have it (``-v`` names each)."""
    if len(inputs) == 1:
        line = capture_text(inputs[0].capture)
        if line:
            console.print(Text(line, style="yellow"))
        return
    groups: dict[str, list[str]] = {}
    for i in inputs:
        names = sorted({g.kind.value.replace("-", " ") for g in i.capture.gaps})
        if names:
            groups.setdefault(", ".join(names), []).append(i.path)
    for kinds, paths in groups.items():
        console.print(
            Text(f"capture: {kinds} in {len(paths)} of {len(inputs)} files (-v)", style="yellow")
        )


def overview(console: Console, report: ShowReport) -> None:
    """The one-screen answer: capture warnings, then the merged services table."""
    width = console.width
    console.print(f"fixture set: {report.fixture_set} ({report.origin})")
    nodes = list(dict.fromkeys(i.node for i in report.inputs))
    _gaps(console, report.inputs)
    skipped = sum(len(i.diagnostics) for i in report.inputs)
    if skipped:
        console.print(f"{skipped} line(s) skipped or doubted: `kpsim show -v` lists each")
    merged = _merge(report.inputs)
    if not merged:
        console.print("no kube-proxy services in these captures")
    elif len(merged) > ROWS_SHOWN:
        empty = sum(1 for m in merged if m.first.no_endpoints)
        console.print(
            f"{len(merged)} services ({empty} with no endpoints) on {len(nodes)} node(s): "
            "too many for one screen — `kpsim show -v` lists them"
        )
    else:
        many = len(nodes) > 1
        rows = [_row(m) for m in merged]
        # A column with nothing in any row (no LB IPs anywhere) says nothing: left out.
        cols = [c for k, c in enumerate(COLUMNS) if any(r[k] != "-" for r in rows)]
        rows = [[r[k] for k, c in enumerate(COLUMNS) if c in cols] for r in rows]
        title = f"services on {len(nodes)} node(s)" if many else f"services on {nodes[0]}"
        table, dropped = fitted_table(
            console, cols, rows, title=ellipsize(title, width), title_justify="left",
            box=box.SIMPLE_HEAD, show_edge=False,
        )  # fmt: skip
        console.print(table)
        if dropped:
            console.print(Text(hidden_note(dropped), style="dim"))
        # Notes are sentences: folded out of the table, one line per service, wrapped.
        for m in merged:
            if note := _notes(m, many):
                console.print(f"• {m.first.name}: {note}")
    hint = "(each capture's format, tables and skipped lines: kpsim show -v)"
    console.print(Text(ellipsize(hint, width), style="dim"))
