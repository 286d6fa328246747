"""``kpsim verify`` as text: per node the verdict first, then the evidence.

ip-10-11-28-53 (10.11.28.53): AGREE ───────────────────────────────────────
 destination     pod @ node    kernel  kernel share  kpsim exact  kpsim N·p  masquerade
 10.11.11.70:80  x6mf9 @ 3-14     100        33.33%       33.33%      100.0  yes / yes
 rule counters (kernel vs kpsim N·p), then the address map (fixture ↔ replayed as)
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Sequence
from fractions import Fraction

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kpsim.render.capture import capture_lines
from kpsim.render.text import make_console
from kpsim.render.width import Column, fitted_table, hidden_note, short_node, trimmed
from kpsim.verify.run import AffinityCheck, CounterRow, NodeVerdict, VerifyReport


def _pct(f: Fraction | float) -> str:
    return f"{float(f) * 100:.2f}%"


def _yes(b: bool | None) -> str:
    return {True: "yes", False: "no", None: "mixed"}[b]


def _masq(seen: bool | None, predicted: bool | None, reached: int, expected: Fraction) -> str:
    left = "-" if not reached else _yes(seen)
    right = "-" if not expected else _yes(predicted)
    return f"{left} / {right}"


_short = short_node


def _endpoints(console: Console, v: NodeVerdict) -> tuple[Table, tuple[str, ...]]:
    """Kernel vs kpsim per destination; at a narrow width the pod, the share of the
    kernel's count and N·p give way before the counts, kpsim's exact share and masquerade."""
    columns = (
        Column("destination"), Column("pod @ node", 4), Column("kernel", 0, "right"),
        Column("share", 2, "right"), Column("kpsim exact", 0, "right"),
        Column("kpsim N·p", 3, "right"), Column("masquerade kernel / kpsim", 1),
    )  # fmt: skip
    rows = [
        (
            e.destination,
            e.name or "-",
            str(e.kernel_count),
            _pct(e.kernel_share),
            _pct(e.expected_share),
            f"{e.expected_count:.1f}",
            _masq(e.masquerade_seen, e.masquerade_predicted, e.kernel_count, e.expected_share),
        )
        for e in v.endpoints
    ]
    rows += [
        (
            f"{row.verdict} ({what})",
            "-",
            str(row.kernel_count),
            _pct(Fraction(row.kernel_count, v.n or 1)),
            _pct(row.expected_share),
            f"{row.expected_count:.1f}",
            "",
        )
        for row, what in ((v.refused, "refused"), (v.timed_out, "timed out"))
    ]
    return fitted_table(console, columns, rows, box=box.SIMPLE_HEAD, pad_edge=False)


def _counter_label(c: CounterRow) -> str:
    return f"{c.table} {c.chain} #{c.number}"


def _counters(v: NodeVerdict) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("rule")
    t.add_column("kernel", justify="right")
    t.add_column("kpsim N·p", justify="right")
    t.add_column("counts")
    for c in v.counters:
        exp = f"{c.expected:.1f}" + ("" if c.exact else " (≥)")
        t.add_row(
            _counter_label(c),
            str(c.kernel_packets),
            exp,
            "connections" if c.per_connection else "packets",
        )
    return t


def _affinity(console: Console, a: AffinityCheck) -> None:
    expiry = f"{a.seconds} s" if a.seconds is not None else "no expiry"
    console.print(
        f"session affinity (recent lists: {expiry}, {a.recent_capacity} entries each): "
        f"{a.clients} clients in a seeded random order"
    )
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("first pick")
    t.add_column("clients", justify="right")
    t.add_column("kpsim K·p", justify="right")
    for cat, count, expected in a.first_picks:
        t.add_row(cat, str(count), f"{expected:.1f}")
    console.print(t)
    console.print(f"first picks: χ² p = {a.first_pick_p:.3g}")
    share = _pct(a.changed_kernel / a.repeats) if a.repeats else "-"
    kshare = _pct(a.changed_kpsim / a.repeats) if a.repeats else "-"
    console.print(
        f"repeat connections that changed endpoint: kernel {a.changed_kernel} of {a.repeats} "
        f"({share}); kpsim {a.changed_kpsim:.1f} ({kshare}, mean of {a.runs} simulated runs "
        f"in the same order); p = {a.p_value:.3g}"
    )
    console.print()


def _next(a: str, b: str) -> bool:
    """b is the host after a (single addresses, not networks)."""
    if "/" in a or "/" in b:
        return False
    return int(ipaddress.IPv4Address(b)) == int(ipaddress.IPv4Address(a)) + 1


def _runs(rows: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive addresses mapped to consecutive addresses (the clients) in one row."""
    out: list[list[str]] = []  # [first orig, first mapped, last orig, last mapped]
    for orig, mapped in rows:
        if out and _next(out[-1][2], orig) and _next(out[-1][3], mapped):
            out[-1][2:] = [orig, mapped]
        else:
            out.append([orig, mapped, orig, mapped])
    return [(a, b) if a == c else (f"{a} … {c}", f"{b} … {d}") for a, b, c, d in out]


def _address_map(v: NodeVerdict) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("fixture")
    t.add_column("replayed as")
    for orig, mapped in _runs(v.address_map):
        t.add_row(orig, mapped)
    return t


def _node(console: Console, v: NodeVerdict, counters: bool, nodeport: bool) -> None:
    where = f" ({v.address})" if nodeport else ""  # else the destination is the header's
    head = Text(f"{_short(v.node)}{where}: ", style="bold")
    head.append("AGREE" if v.agree else "DISAGREE", style="bold green" if v.agree else "bold red")
    console.rule(head, align="left")
    test = "first-pick χ² p" if v.affinity is not None else "χ² p"
    console.print(f"{v.n} connections; {test} = {v.p_value:.3g}")
    if v.agree:
        console.print(f"agree: {v.reason}")
    else:
        for r in v.reasons:
            console.print(Text(f"• {r}", style="red"))
    table, dropped = _endpoints(console, v)
    console.print(table)
    if dropped:
        console.print(Text(hidden_note(dropped), style="dim"))
    if v.affinity is not None:
        _affinity(console, v.affinity)
    if v.unreachable or v.errors:
        console.print(f"also: {v.unreachable} unreachable (counted as refused), {v.errors} errors")
    if counters and v.counters:
        console.print("rule counters on kpsim's paths: kernel vs kpsim N·p (nat rules see a")
        console.print("connection's first packet only; other tables count every packet of it)")
        console.print(_counters(v))
    console.print("address map: the fixture's addresses as the replay used them")
    console.print(_address_map(v))
    for note in v.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    for line in capture_lines(v.capture, v.diagnostics):
        console.print(Text(line, style="yellow"))
    console.print()


def verify_text(
    report: VerifyReport, label: str = "", *, color: bool = False, counters: bool = True
) -> str:
    """The whole report; the last line is the overall verdict."""
    buf = io.StringIO()
    console = make_console(buf, color)
    r = report.request
    if label:
        console.print(f"fixture set: {label}")
    target = f"{r.dest}:{r.port}" if r.dest else f"NodePort {r.port}/tcp on each node's address"
    clients = f"{r.source}" + (f" (+{r.clients - 1} more)" if r.clients > 1 else "")
    console.print(f"replayed {r.n} real TCP connections per node to {target}")
    console.print(
        f"from {clients}, each from a fresh source port; timeout {r.connect_timeout_s:g}s"
    )
    console.print()
    for v in report.nodes:
        _node(console, v, counters, r.dest is None)
    agree = sum(1 for v in report.nodes if v.agree)
    total = len(report.nodes)
    verdict = Text("verdict: ", style="bold")
    if report.agree:
        verdict.append(f"all {total} node(s) agree with kpsim", style="green")
    else:
        bad = ", ".join(_short(v.node) for v in report.nodes if not v.agree)
        verdict.append(f"{total - agree} of {total} node(s) disagree: {bad}", style="red")
    verdict.append(f" (lowest χ² p = {report.p_value:.3g})")
    console.print(verdict)
    if report.kept:
        console.print()
        console.print("kept for inspection (responders stopped; rules, addresses and counters")
        console.print("remain), e.g. ip netns exec NS iptables-save -c. Remove them with:")
        width = max(len(ns) for ns, _, _ in report.kept) + len("ip netns del ")
        for ns, node, role in report.kept:
            console.print(f"  {'ip netns del ' + ns:<{width}}  # {_short(node)} {role}")
    return trimmed(buf.getvalue())
