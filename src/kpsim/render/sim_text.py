"""``kpsim simulate`` as text: per endpoint the observed share as a bar with the exact
share marked on it, the 95% interval, and the verdict in words.

    10.11.11.70:80  x6mf9 @ 3-14   3354  33.54% ████████████▏│   33.33%  [32.6, 34.5]
                                                            └ exact share
"""

from __future__ import annotations

import io
from fractions import Fraction

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kpsim.render.capture import capture_lines
from kpsim.render.text import make_console
from kpsim.render.width import Column, fitted_table, hidden_note, short_node, trimmed
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


_short = short_node


def _who(o: OutcomeStat) -> str:
    if o.pod is None:
        return "-"
    return f"{o.pod.name} @ {_short(o.pod.node)}"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _outcomes_table(console: Console, s: ServiceSim) -> tuple[Table, tuple[str, ...]]:
    columns = (
        Column("destination"), Column("pod @ node", 4), Column("count", 0, "right"),
        Column("observed", 0, "right"), Column("exact", 0, "right"),
        Column("95% interval", 2, "right"), Column("observed █ vs exact │", 3),
    )  # fmt: skip
    rows = [
        (
            o.destination if o.verdict == "DNAT" else f"{o.verdict} {o.destination}",
            _who(o),
            str(o.count),
            _pct(o.share),
            _pct(float(o.expected)),
            f"[{o.ci95[0] * 100:.1f}, {o.ci95[1] * 100:.1f}]",
            bar(o.share, float(o.expected)),
        )
        for o in s.outcomes
    ]
    return fitted_table(console, columns, rows, box=box.SIMPLE_HEAD, pad_edge=False)


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
    table, dropped = _outcomes_table(console, s)
    console.print(table)
    if dropped:
        console.print(Text(hidden_note(dropped), style="dim"))
    console.print(_entry_table(s))
    chi = "-" if s.chi2_p is None else f"{s.chi2_p:.3g}"
    tested = f" over {s.tested} fresh picks" if s.tested != s.n else ""
    console.print(f"χ² goodness of fit, endpoint counts vs exact shares{tested}: p = {chi}")
    console.print(Text("verdict: ", style="bold").append(s.verdict.text))
    for r in s.remarks:
        console.print(f"• {r}")
    for note in s.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    console.print()


def _shares(s: ServiceSim) -> str:
    """The exact shares: ``3 × 33.33%`` when equal (to the kernel's 2^-31 steps)."""
    exact = [o.expected for o in s.endpoints]
    if not exact:
        return "-"
    if max(exact) - min(exact) <= Fraction(len(exact), 2**31):
        return f"{len(exact)} × {_pct(float(exact[0]))}"
    return " ".join(_pct(float(x)) for x in exact)


def _summary(console: Console, report: SimReport, remarks: bool) -> None:
    """A row per service (counts, exact shares, what else happened, verdict), then the
    verdicts that need words; within-range chance is one line for all."""
    columns = (
        Column("service"), Column("port"), Column("counts per endpoint"),
        Column("exact shares"), Column("other outcomes", 1), Column("χ² p", 3, "right"),
        Column("verdict", 2),
    )  # fmt: skip
    rows = []
    for s in report.services:
        others = ", ".join(
            f"{o.verdict} {o.count}" for o in s.outcomes if o.verdict != "DNAT" and o.count
        )
        rows.append((
            s.target.service, str(s.target.port),
            " ".join(str(o.count) for o in s.endpoints) or "-", _shares(s), others or "-",
            "-" if s.chi2_p is None else f"{s.chi2_p:.2g}", s.verdict.kind,
        ))  # fmt: skip
    table, dropped = fitted_table(
        console, columns, rows, box=box.SIMPLE_HEAD, title="every NodePort service",
        title_justify="left", show_edge=False,
    )  # fmt: skip
    console.print(table)
    if dropped:
        console.print(Text(hidden_note(dropped), style="dim"))
    calm = [s for s in report.services if not remarks and "is within that" in s.verdict.text]
    if calm:
        ports = ", ".join(str(s.target.port) for s in calm)
        console.print(
            f"• {ports}: every count within the 95% range of its exact share — "
            "the unevenness is chance"
        )
    for s in report.services:
        if s in calm:
            pass
        else:
            console.print(f"• {s.target.port}: {s.verdict.text}")
        for r in s.remarks:  # rules, not chance: a drop or reject stays on the first screen
            if remarks or " the rules DROP " in r or " the rules REJECT " in r or ", by rule " in r:
                r = r.removeprefix("via ")
                console.print(f"    {s.target.port} via {r}")


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
        _summary(console, report, remarks=bool(detail))
        console.print(Text("(each service in full: -v; one: --port N)", style="dim"))
    return trimmed(buf.getvalue())
