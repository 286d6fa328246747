"""``kpsim trace``'s verdict in sentences, each from the numbers the table prints: a
random draw only where a node has one, DROP/REJECT as the rules that decide them, the
client IP's fate only for delivered connections and only where POSTROUTING was seen."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from kpsim.engine.trace import Disposition
from kpsim.kube.scenario import NodeTrace, TraceReport
from kpsim.model import StatisticMatch
from kpsim.model.nft import NumgenMatch
from kpsim.render.fractions import pct
from kpsim.render.width import short_node as short


def _blocked(report: TraceReport) -> list[str]:
    """Each DROP/REJECT, per entry node, with the rule that decided it."""
    lines = []
    for t in report.nodes:
        for n in t.outcomes:
            if n.outcome.verdict not in (Disposition.DROP, Disposition.REJECT):
                continue
            last = next((st for st in reversed(n.outcome.path) if st.rule is not None), None)
            why = ""
            if last is not None and last.rule is not None:
                why = f" by {last.table} {last.chain} #{last.number}"
                if last.rule.comment:
                    why += f' ("{last.rule.comment}")'
            lines.append(
                f"via {short(t.node)}: {pct(n.outcome.probability)} {n.outcome.verdict.value}{why}"
            )
    return lines


def verdict_lines(report: TraceReport) -> list[str]:
    s = report.summary
    many = len(report.nodes) > 1
    lines = []
    blocked = _blocked(report)
    drawn = any(0 < v < 1 for r in s.rows if r.verdict == "DNAT" for v in r.by_node.values())
    if any(r.verdict == "DNAT" for r in s.rows) and not drawn:
        lines.append("no random draw: on each node every connection ends the one way shown")
    elif drawn:
        lines.append(
            "on each node the rules draw among the endpoints with the shares above (exact: "
            f"kernel integers over {_scale(report.nodes)}); which endpoint a connection gets "
            "is chance — "
            "`kpsim simulate` shows how far counts wander"
            + ("; the DROP/REJECT lines below are rules, not chance" if blocked else "")
        )
    lines.extend(blocked)
    if s.cross_node is not None and len(report.nodes) > 1:
        if s.cross_node:
            lines.append(
                f"{pct(s.cross_node)} of connections are served by a pod on ANOTHER node than "
                "the one you connected to: the NodePort forwards to endpoints on any node"
            )
        else:
            lines.append("every connection that reaches a pod is served on the node it entered")
    if s.masquerade_unknown:
        lines.append(
            f"whether the client IP is masqueraded is unknown for {pct(s.masquerade_unknown)} "
            "of connections: nat POSTROUTING is not in the capture"
        )
    lines.extend(_client_ip_line(report))
    lines += [f"via {short(t.node)}: {r}" if many else r for t in report.nodes for r in t.remarks]
    return lines


def _client_ip_line(report: TraceReport) -> list[str]:
    """Masqueraded / kept, only for delivered connections and only where POSTROUTING
    decided it (known); what is dropped or unknown is said elsewhere."""
    s = report.summary
    delivered = sum(
        (r.overall for r in s.rows if r.verdict in ("DNAT", "ACCEPT", "LOCAL")), Fraction(0)
    )
    known = delivered - s.masquerade_unknown
    if not delivered or known <= 0:
        return []
    kept = known - s.masquerade
    parts = [
        f"{what} for {pct(x)}" for what, x in (("masqueraded", s.masquerade), ("kept", kept)) if x
    ]
    rest = 1 - delivered
    tail = f" ({pct(rest)} are not delivered)" if rest > 0 else ""
    return [f"client IP {' and '.join(parts)} of connections{tail}"]


def common_scale(report: TraceReport) -> int | None:
    """2^32 when every draw on the paths is nftables' numgen: its shares are then written
    over 2^32, as the kernel counts them; None otherwise (each share reduced)."""
    return 1 << 32 if _scale(report.nodes) == "2^32" else None


def node_scale(trace: NodeTrace) -> int | None:
    """common_scale for one node's paths."""
    return 1 << 32 if _scale((trace,)) == "2^32" else None


def _scale(nodes: Sequence[NodeTrace]) -> str:
    """2^31 (iptables' statistic), 2^32 (nftables' numgen), or both, as the paths show."""
    kinds = {
        "2^32" if isinstance(m, NumgenMatch) else "2^31"
        for node in nodes
        for o in node.result.outcomes
        for step in o.path
        if step.rule is not None
        for m in step.rule.matches
        if isinstance(m, (NumgenMatch, StatisticMatch))
    }
    return " and ".join(sorted(kinds)) or "2^31"
