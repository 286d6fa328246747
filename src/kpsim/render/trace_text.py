"""``kpsim trace`` as text: the path as a tree quoting each rule, exact shares, and the
cross-node summary that answers "why is the load not spread evenly?"."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kpsim.engine.trace import Disposition, Step
from kpsim.kube.scenario import NamedOutcome, NodeTrace, Pod, SummaryRow, TraceReport
from kpsim.model import (
    Dnat,
    Jump,
    MarkTarget,
    Masquerade,
    Rule,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
)
from kpsim.model.nft import NumgenMatch, numgen_count
from kpsim.render.capture import capture_lines, client_ip
from kpsim.render.text import make_console

TWO31 = "2³¹"
TWO32 = "2³²"
_UNSEEN = " (nat POSTROUTING not captured)"


def pct(f: Fraction) -> str:
    return f"{float(f) * 100:.2f}%"


def exact(f: Fraction) -> str:
    """Exact fractions over powers of two read best with the power spelled out."""
    den = f.denominator
    if den & (den - 1) == 0 and den > 1:
        return f"{f.numerator}/2^{den.bit_length() - 1}"
    return f"{f.numerator}/{den}"


def short(node: str) -> str:
    return node.split(".")[0]


def _pod(p: Pod | None) -> str:
    return "-" if p is None else f"{p.name} @ {short(p.node)}"


def _rule_text(rule: Rule) -> str:
    """The rule as the capture has it, minus the ``-A CHAIN`` the label already says."""
    if rule.origin is not None and rule.origin.text:
        text = rule.origin.text.strip()
    else:
        from kpsim.formats.iptables.write import render_rule

        text = render_rule(rule)
    prefix = f"-A {rule.chain} "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _chance(rule: Rule | None) -> str:
    if rule is None:
        return ""
    for m in rule.matches:
        if isinstance(m, StatisticMatch) and m.mode is StatisticMode.RANDOM:
            p = m.probability if not m.negated else 1 - m.probability
            return f"  ⟶ taken {pct(p)} = {m.threshold}/{TWO31} of the time it is reached"
        if isinstance(m, NumgenMatch):  # nftables: the bucket's own share of the 2^32 draws
            count = numgen_count(m.modulus, m.bucket - m.offset)
            return f"  ⟶ bucket {m.bucket} of {m.modulus}: {count}/{TWO32} of the draws"
    return ""


def _step_label(step: Step) -> Text:
    rule = step.rule
    if rule is None:
        return Text(f"{step.table} {step.chain}: end of chain, policy applies", style="dim")
    label = Text(f"{step.table} {step.chain} #{step.number}  ", style="bold")
    label.append(_rule_text(rule))
    label.append(_chance(rule), style="cyan")
    if rule.origin is not None:
        label.append(f"  :{rule.origin.line}", style="dim")
    return label


def _then(steps: Sequence[Step]) -> str:
    """The decisive rules after the DNAT, in one line: where the packet is accepted,
    dropped or rewritten again."""
    parts = []
    for st in steps:
        if st.rule is None or isinstance(st.rule.target, Jump) or st.rule.target is None:
            continue
        name = type(st.rule.target).__name__
        if isinstance(st.rule.target, Standard):
            name = st.rule.target.verdict.value
        elif isinstance(st.rule.target, MarkTarget):
            continue
        parts.append(f"{st.table} {st.chain} #{st.number} {name.upper()}")
    return " · ".join(parts)


def _leaf(n: NamedOutcome, after: Sequence[Step]) -> Text:
    o = n.outcome
    text = Text("⇒ ", style="bold")
    style = "green" if o.verdict in (Disposition.DNAT, Disposition.ACCEPT) else "red"
    text.append(f"{o.verdict.value} {n.destination}", style=f"bold {style}")
    if n.pod is not None:
        text.append(f"  pod {_pod(n.pod)}")
    text.append(f"  {pct(o.probability)} ({exact(o.probability)})", style="cyan")
    ip = client_ip(o)
    if ip is not None:
        text.append("  client IP " + ip + (_UNSEEN if ip == "unknown" else ""))
    if after:
        text.append(f"\n  then {_then(after)}", style="dim")
    if o.reason:
        text.append(f"\n  {o.reason}", style="yellow")
    for a in o.assumptions:
        text.append(f"\n  assumption: {a}", style="yellow")
    return text


@dataclass
class _Trie:
    step: Step | None = None
    children: dict[tuple[str, str, int], _Trie] = field(default_factory=dict)
    leaves: list[tuple[NamedOutcome, tuple[Step, ...]]] = field(default_factory=list)


def _split(n: NamedOutcome, policies: bool) -> tuple[list[Step], tuple[Step, ...]]:
    """Steps up to the DNAT (the kube-proxy part that branches), and the rest."""
    steps = [s for s in n.outcome.path if policies or s.rule is not None]
    for i, st in enumerate(steps):
        if st.rule is not None and isinstance(st.rule.target, Dnat):
            return steps[: i + 1], tuple(steps[i + 1 :])
    return steps, ()


def _render(parent: Tree, node: _Trie) -> None:
    """Straight runs of steps print as siblings; only real forks indent."""
    while len(node.children) == 1 and not node.leaves:
        node = next(iter(node.children.values()))
        assert node.step is not None
        parent.add(_step_label(node.step))
    for child in node.children.values():
        assert child.step is not None
        _render(parent.add(_step_label(child.step)), child)
    for outcome, after in node.leaves:
        parent.add(_leaf(outcome, after))


def path_tree(trace: NodeTrace, *, policies: bool = False) -> Tree:
    """All outcome paths as one prefix tree: shared steps once, forks where the kernel's
    random draw (or an assumption) splits them."""
    rules_file = next(
        (
            s.rule.origin.path
            for n in trace.outcomes
            for s in n.outcome.path
            if s.rule and s.rule.origin
        ),
        "?",
    )
    head = Text(f"{short(trace.node)}: {trace.result.packet}", style="bold")
    head.append(f"   rules: {rules_file}", style="dim")
    root = Tree(head)
    trie = _Trie()
    for n in trace.outcomes:
        before, after = _split(n, policies)
        node = trie
        for st in before:
            node = node.children.setdefault((st.table, st.chain, st.number), _Trie(st))
        node.leaves.append((n, after))
    _render(root, trie)
    return root


def _line(step: Step) -> str:
    return str(step.rule.origin.line) if step.rule and step.rule.origin else "?"


def masquerade_reason(n: NamedOutcome) -> str:
    """Which rules replaced the client's address, quoted, or why it survives."""
    marks = [
        s for s in n.outcome.path if s.rule is not None and isinstance(s.rule.target, MarkTarget)
    ]
    nat = [
        s
        for s in n.outcome.path
        if s.rule is not None and isinstance(s.rule.target, Masquerade | Snat)
    ]
    if not nat:
        return "the client IP reaches the pod unchanged: no SNAT/MASQUERADE on this path"
    parts = []
    if marks:
        m = marks[0]
        parts.append(f"marked by {m.chain} #{m.number} (:{_line(m)})")
    last = nat[-1]
    parts.append(f"rewritten by {last.chain} #{last.number} (:{_line(last)})")
    return "the pod sees the node's address, not the client's: " + ", then ".join(parts)


def _outcome_table(trace: NodeTrace) -> Table:
    table = Table(title=f"entry node {short(trace.node)} ({trace.address})", title_justify="left")
    for col in ("verdict", "destination", "pod (node)", "share", "exact", "client IP"):
        table.add_column(col)
    for n in trace.outcomes:
        o = n.outcome
        table.add_row(
            o.verdict.value,
            n.destination,
            _pod(n.pod),
            pct(o.probability),
            exact(o.probability),
            (client_ip(o) or "-").lower(),
        )
    return table


def _summary_table(report: TraceReport) -> Table:
    nodes = [t.node for t in report.nodes]
    services = sorted({r.service for r in report.summary.rows if r.service})
    title = "share of connections per destination, by the node you connect to"
    if services:
        title += f" — service {', '.join(services)}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("destination", no_wrap=True)
    table.add_column("pod's node", no_wrap=True)
    for n in nodes:
        table.add_column(f"via {short(n).removeprefix('ip-')}", justify="right", no_wrap=True)
    table.add_column("all", justify="right", no_wrap=True)
    table.add_column("exact (each node)", no_wrap=True)
    table.add_column("client IP", no_wrap=True)
    for r in report.summary.rows:
        cells = [pct(r.by_node.get(n, Fraction(0))) for n in nodes]
        label = r.destination if r.verdict == "DNAT" else f"{r.verdict} {r.destination}"
        exacts = {exact(v) for v in r.by_node.values()}
        table.add_row(
            label,
            short(r.pod.node) if r.pod else "-",
            *cells,
            pct(r.overall),
            exacts.pop() if len(exacts) == 1 and len(r.by_node) == len(nodes) else "varies",
            _row_client_ip(r),
        )
    return table


def _row_client_ip(r: SummaryRow) -> str:
    if r.verdict not in ("DNAT", "ACCEPT", "LOCAL"):
        return "-"
    return {True: "masqueraded", False: "kept", None: "unknown"}[r.masquerade]


def _headline(report: TraceReport) -> str:
    req = report.request
    if req.dest is None:
        return (
            f"NodePort {req.port}/{req.protocol} from an outside client "
            f"{req.source}:{req.source_port} to each node's own address"
        )
    src = report.nodes[0].result.packet.src if report.nodes else req.source
    return f"{req.protocol} {src}:{req.source_port} → {req.dest}:{req.port}"


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


def _scale(report: TraceReport) -> str:
    """2^31 (iptables' statistic), 2^32 (nftables' numgen), or both, as the paths show."""
    kinds = {
        "2^32" if isinstance(m, NumgenMatch) else "2^31"
        for node in report.nodes
        for o in node.result.outcomes
        for step in o.path
        if step.rule is not None
        for m in step.rule.matches
        if isinstance(m, (NumgenMatch, StatisticMatch))
    }
    return " and ".join(sorted(kinds)) or "2^31"


def _verdict_lines(report: TraceReport) -> list[str]:
    s = report.summary
    many = len(report.nodes) > 1
    lines = []
    if any(r.verdict == "DNAT" for r in s.rows):
        lines.append(
            "on each node the rules pick among the endpoints with the exact shares above "
            f"(kernel integers over {_scale(report)}); unevenness over a few requests is "
            "chance — `kpsim simulate` shows how much"
        )
    lines.extend(_blocked(report))
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
    delivered = any(r.verdict in ("DNAT", "ACCEPT", "LOCAL") and r.overall for r in s.rows)
    if s.masquerade or (delivered and not s.masquerade_unknown):
        lines.append(f"client IP masqueraded for {pct(s.masquerade)} of connections")
    lines += [f"via {short(t.node)}: {r}" if many else r for t in report.nodes for r in t.remarks]
    return lines


def trace_text(
    report: TraceReport,
    fixture_set: str,
    *,
    color: bool = False,
    tree: bool | None = None,
    policies: bool = False,
) -> str:
    """One node: its tree and table. Several: the cross-node summary and the tree of the
    first node (every node's tree and table with ``tree=True``, none with False)."""
    buf = io.StringIO()
    console: Console = make_console(buf, color)
    console.print(f"fixture set: {fixture_set}")
    many = len(report.nodes) > 1
    for t in report.nodes:
        for line in capture_lines(t.capture, t.diagnostics):
            console.print(Text(f"{short(t.node)}: {line}" if many else line, style="yellow"))
    console.print(Text(_headline(report), style="bold"))
    console.print()
    if tree is None:
        shown: Sequence[NodeTrace] = report.nodes[:1]
    else:
        shown = report.nodes if tree else ()
    for t in shown:
        if many and tree:
            console.print(_outcome_table(t))
        console.print(path_tree(t, policies=policies))
        masq = next((n for n in t.outcomes if n.outcome.masquerade), None)
        if masq is not None:
            console.print("why masqueraded: " + masquerade_reason(masq))
        for note in (*t.context_notes, *t.result.notes):
            console.print(Text(f"note: {note}", style="dim"))
        console.print()
    if many:
        console.print(_summary_table(report))
    else:
        console.print(_outcome_table(report.nodes[0]))
    for line in _verdict_lines(report):
        console.print(f"• {line}")
    if many and tree is None:
        hint = (
            f"(tree shown for {short(report.nodes[0].node)}; every node: --tree; one: --node NAME)"
        )
        console.print(Text(hint, style="dim"))
    return buf.getvalue()
