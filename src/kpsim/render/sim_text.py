"""``kpsim simulate`` as text: per endpoint the observed share as a bar with the exact
share marked on it, the 95% interval, and the verdict in words.

    10.11.11.70:80  x6mf9 @ 3-14   3354  33.54% ████████████▏│   33.33%  [32.6, 34.5]
                                                            └ exact share
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kpsim.render.capture import capture_lines
from kpsim.render.text import make_console
from kpsim.simulate.run import OutcomeStat, ServiceSim, SimReport

BAR = 24
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(share: float, exact: float, width: int = BAR) -> Text:
    """Observed share as a block bar; the exact share as a ``│`` at its place."""
    cells = [" "] * width
    full = share * width
    whole = min(int(full), width)
    for i in range(whole):
        cells[i] = "█"
    if whole < width:
        cells[whole] = _EIGHTHS[int((full - whole) * 8)] if full > whole else " "
    mark = min(round(exact * width), width - 1)
    text = Text()
    for i, ch in enumerate(cells):
        if i == mark:
            text.append("│" if ch == " " else "┃", style="bold yellow")
        else:
            text.append(ch, style="green" if ch != " " else "")
    return text


def _short(node: str) -> str:
    return node.split(".")[0]


def _who(o: OutcomeStat) -> str:
    if o.pod is None:
        return "-"
    return f"{o.pod.name} @ {_short(o.pod.node).removeprefix('ip-')}"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _outcomes_table(s: ServiceSim) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for col, just in (
        ("destination", "left"), ("pod @ node", "left"), ("count", "right"),
        ("observed", "right"), ("exact", "right"), ("95% interval", "right"),
        ("observed █ vs exact │", "left"),
    ):  # fmt: skip
        t.add_column(col, justify=just, no_wrap=col != "pod @ node")  # type: ignore[arg-type]
    for o in s.outcomes:
        dest = o.destination if o.verdict == "DNAT" else f"{o.verdict} {o.destination}"
        t.add_row(
            dest,
            _who(o),
            str(o.count),
            _pct(o.share),
            _pct(float(o.expected)),
            f"[{o.ci95[0] * 100:.1f}, {o.ci95[1] * 100:.1f}]",
            bar(o.share, float(o.expected)),
        )
    return t


def _entry_table(s: ServiceSim) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title="by entry node", title_justify="left", pad_edge=False)
    t.add_column("entry node")
    t.add_column("connections", justify="right")
    t.add_column("outcomes (count)")
    t.add_column("other node", justify="right")
    for e in s.by_entry:
        cross = "?" if e.cross_node is None else _pct(e.cross_node / (e.connections or 1))
        cross = cross if e.connections else "-"
        got = ", ".join(f"{label} {k}" for label, k in e.counts)
        t.add_row(_short(e.node), str(e.connections), got, cross)
    return t


def _service(console: Console, s: ServiceSim) -> None:
    where = f"{s.target.dest}:{s.target.port}" if s.target.dest else f"NodePort {s.target.port}"
    console.rule(Text(f"{s.target.service} — {where} — {s.n} connections", style="bold"))
    console.print(_outcomes_table(s))
    console.print(_entry_table(s))
    chi = "-" if s.chi2_p is None else f"{s.chi2_p:.3g}"
    tested = f" over {s.tested} fresh picks" if s.tested != s.n else ""
    console.print(f"χ² goodness of fit against the exact shares{tested}: p = {chi}")
    console.print(Text("verdict: ", style="bold").append(s.verdict.text))
    for r in s.remarks:
        console.print(f"• {r}")
    for note in s.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    console.print()


def _summary(console: Console, report: SimReport) -> None:
    t = Table(box=box.SIMPLE_HEAD, title="every NodePort service", title_justify="left")
    for col in (
        "service",
        "port",
        "endpoints: observed / exact",
        "χ² p",
        "other node",
        "dropped",
        "rejected",
        "verdict",
    ):
        t.add_column(col)
    for s in report.services:
        eps = "  ".join(f"{o.share * 100:.1f}/{float(o.expected) * 100:.1f}" for o in s.endpoints)
        cross = "?" if s.cross_node is None else _pct(s.cross_node / (s.n or 1))
        t.add_row(
            s.target.service, str(s.target.port), eps or "-",
            "-" if s.chi2_p is None else f"{s.chi2_p:.3g}", cross,
            str(sum(o.count for o in s.outcomes if o.verdict == "DROP")),
            str(sum(o.count for o in s.outcomes if o.verdict == "REJECT")),
            s.verdict.kind,
        )  # fmt: skip
    console.print(t)
    for s in report.services:
        console.print(Text(f"{s.target.service}: ", style="bold").append(s.verdict.text))
        for r in s.remarks:
            console.print(f"    • {r}")


def simulate_text(
    report: SimReport, label: str = "", *, color: bool = False, detail: bool | None = None
) -> str:
    """``detail`` None: full view for one service, a summary table for several."""
    buf = io.StringIO()
    console = make_console(buf, color)
    r = report.request
    if label:
        console.print(f"fixture set: {label}")
    many = len(report.captures) > 1
    for node, capture, diagnostics in report.captures:
        for line in capture_lines(capture, diagnostics):
            console.print(Text(f"{_short(node)}: {line}" if many else line, style="yellow"))
    entry = ", ".join(
        f"{_short(n)} {float(w) * 100:.0f}%"
        for n, w in zip(report.nodes, report.weights, strict=True)
    )
    console.print(
        f"simulated {r.n} connections per service, seed {r.seed}, {r.clients} client(s), "
        f"{r.rate:g}/s; entry nodes: {entry}"
    )
    console.print()
    if detail or (detail is None and len(report.services) == 1):
        for s in report.services:
            _service(console, s)
    else:
        _summary(console, report)
    return buf.getvalue()
