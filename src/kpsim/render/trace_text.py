"""``kpsim trace`` as text: the path as a tree quoting each rule, exact shares, and the
cross-node summary that answers "why is the load not spread evenly?"."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from rich import box
from rich.cells import cell_len
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
from kpsim.render.fractions import exact, pct
from kpsim.render.text import make_console
from kpsim.render.trace_verdict import common_scale, node_scale, verdict_lines
from kpsim.render.width import Column, ellipsize, fitted_table, hidden_note, short_node, trimmed

_UNSEEN = " (nat POSTROUTING not captured)"


short = short_node


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
            p = Fraction(m.threshold, 2**31) if m.threshold is not None else m.probability
            return f"  ⟶ taken {exact(1 - p if m.negated else p)}"
        if isinstance(m, NumgenMatch):  # nftables: the bucket's own share of the 2^32 draws
            count = numgen_count(m.modulus, m.bucket - m.offset)
            return f"  ⟶ bucket {m.bucket} of {m.modulus}: {count}/2^32 of the draws"
    return ""


_COMMENT = re.compile(r'-m comment --comment (?:"(?:[^"\\]|\\.)*"|\S+) ')


def _shortened(text: str, room: int) -> str:
    """The rule in ``room`` cells: its comment goes first, then the middle (``…``); the
    target (``-j DNAT --to-destination …``) is what decides, so it stays when it fits."""
    if cell_len(text) <= room:
        return text
    text = _COMMENT.sub("", text)
    cut = max(text.rfind(" -j "), text.rfind(" -g "))
    if cut > 0 and cell_len(text) > room and room - cell_len(text[cut:]) >= 6:
        return ellipsize(text[:cut], room - cell_len(text[cut:])) + text[cut:]
    return ellipsize(text, room)


def _step_label(step: Step, room: int) -> Text:
    """One rule on one line of ``room`` cells: the rule text gives way (``…``) before the
    chain, the chance and the ``:line`` it came from."""
    rule = step.rule
    if rule is None:
        return Text(f"{step.table} {step.chain}: end of chain, policy applies", style="dim")
    head = f"{step.table} {step.chain} #{step.number}  "
    chance = _chance(rule)
    where = f"  :{rule.origin.line}" if rule.origin is not None else ""
    text_room = max(room - cell_len(head) - cell_len(chance) - len(where), 8)
    label = Text(head, style="bold")
    label.append(_shortened(_rule_text(rule), text_room))
    label.append(chance, style="cyan")
    label.append(where, style="dim")
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


def _leaf(n: NamedOutcome, after: Sequence[Step], over: int | None) -> Text:
    o = n.outcome
    text = Text("⇒ ", style="bold")
    style = "green" if o.verdict in (Disposition.DNAT, Disposition.ACCEPT) else "red"
    text.append(f"{o.verdict.value} {n.destination}", style=f"bold {style}")
    if n.pod is not None:
        text.append(f"  pod {_pod(n.pod)}")
    text.append(f"  {pct(o.probability)} ({exact(o.probability, over)})", style="cyan")
    ip = client_ip(o)
    if ip is not None:
        text.append("  client IP " + ip + (_UNSEEN if ip == "unknown" else ""))
    if o.egress is not None and ip is not None:
        text.append(f"  out {o.egress}")
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


def _render(parent: Tree, node: _Trie, room: int, over: int | None) -> None:
    """Straight runs of steps print as siblings; only real forks indent (by 4 cells,
    rich's guide, so the labels below get 4 fewer)."""
    while len(node.children) == 1 and not node.leaves:
        node = next(iter(node.children.values()))
        assert node.step is not None
        parent.add(_step_label(node.step, room))
    forks = list(node.children.values())
    if len({(c.step.table, c.step.chain) for c in forks if c.step is not None}) == 1:
        forks.sort(key=lambda c: c.step.number if c.step is not None else 0)  # chain order
    for child in forks:
        assert child.step is not None
        _render(parent.add(_step_label(child.step, room)), child, room - 4, over)
    for outcome, after in node.leaves:
        parent.add(_leaf(outcome, after, over))


def path_tree(trace: NodeTrace, *, policies: bool = False, width: int = 80) -> Tree:
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
    _render(root, trie, width - 4, node_scale(trace))
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


def _outcome_table(
    console: Console, trace: NodeTrace, over: int | None = None
) -> tuple[Table, tuple[str, ...]]:
    columns = (
        Column("verdict"), Column("destination"), Column("pod (node)", 3),
        Column("share", justify="right"), Column("exact", 2), Column("client IP", 1),
    )  # fmt: skip
    rows = [
        (
            n.outcome.verdict.value,
            n.destination,
            _pod(n.pod),
            pct(n.outcome.probability),
            exact(n.outcome.probability, over),
            (client_ip(n.outcome) or "-").lower(),
        )
        for n in trace.outcomes
    ]
    title = f"entry node {short(trace.node)} ({trace.address})"
    return fitted_table(console, columns, rows, title=title, title_justify="left")


def _summary_table(console: Console, report: TraceReport) -> tuple[Table, tuple[str, ...]]:
    """Destinations × entry nodes: the share each node sends to each destination. The
    node columns carry the names ``--node`` takes; the extra columns give way first."""
    nodes = [t.node for t in report.nodes]
    services = sorted({r.service for r in report.summary.rows if r.service})
    title = "share of connections per destination, by the node you connect to"
    if services:
        title += f" — service {', '.join(services)}"
    columns = (
        Column("destination"), Column("pod's node", 4),
        *(Column(short(n), justify="right") for n in nodes),
        Column("all", 1, "right"), Column("exact (each node)", 3), Column("client IP", 2),
    )  # fmt: skip
    rows = []
    for r in report.summary.rows:
        cells = [pct(r.by_node.get(n, Fraction(0))) for n in nodes]
        label = r.destination if r.verdict == "DNAT" else f"{r.verdict} {r.destination}"
        exacts = {exact(v, common_scale(report)) for v in r.by_node.values()}
        rows.append(
            (
                label,
                short(r.pod.node) if r.pod else "-",
                *cells,
                pct(r.overall),
                exacts.pop() if len(exacts) == 1 and len(r.by_node) == len(nodes) else "varies",
                _row_client_ip(r),
            )
        )
    return fitted_table(
        console, columns, rows, title=title, title_justify="left", box=box.SIMPLE_HEAD,
        show_edge=False,
    )  # fmt: skip


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


def trace_text(
    report: TraceReport,
    fixture_set: str,
    *,
    color: bool = False,
    tree: bool | None = None,
    policies: bool = False,
    details: bool = False,
) -> str:
    """The answer first: the endpoints × nodes table (one node: its outcomes) and the
    verdict. ``details``: the first node's rule tree too; ``tree``: every node's (False:
    none)."""
    buf = io.StringIO()
    console: Console = make_console(buf, color)
    console.print(f"fixture set: {fixture_set}")
    many = len(report.nodes) > 1
    for t in report.nodes:
        for line in capture_lines(t.capture, t.diagnostics):
            console.print(Text(f"{short(t.node)}: {line}" if many else line, style="yellow"))
    console.print(Text(_headline(report), style="bold"))
    if tree is None:
        shown: Sequence[NodeTrace] = report.nodes[:1] if details else ()
    else:
        shown = report.nodes if tree else ()
    for t in shown:
        console.print()
        if many and tree:
            _print_table(console, _outcome_table(console, t, common_scale(report)))
        console.print(path_tree(t, policies=policies, width=console.width))
        masq = next((n for n in t.outcomes if n.outcome.masquerade), None)
        if masq is not None:
            console.print("why masqueraded: " + masquerade_reason(masq))
        for note in (*t.context_notes, *t.result.notes):
            console.print(Text(f"note: {note}", style="dim"))
    if many:
        _print_table(console, _summary_table(console, report))
    else:
        _print_table(console, _outcome_table(console, report.nodes[0], common_scale(report)))
    for line in verdict_lines(report):
        console.print(f"• {line}")
    if tree is None and not details:
        hint = "(the rules on the path: -v; every node's: --tree; one node: --node NAME)"
        console.print(Text(hint, style="dim"))
    return trimmed(buf.getvalue())


def _print_table(console: Console, fitted: tuple[Table, tuple[str, ...]]) -> None:
    table, dropped = fitted
    console.print(table)
    if dropped:
        console.print(Text(hidden_note(dropped), style="dim"))
