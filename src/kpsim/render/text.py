"""Text renderers (rich). Pure functions: a report in, a string out."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from kpsim.kube.services import Service
from kpsim.kube.show import ChainSummary, InputSummary, ShowReport
from kpsim.model import Diagnostic
from kpsim.render import plain_table
from kpsim.render.capture import capture_text
from kpsim.render.width import Column, detect, ellipsize, fitted_table, hidden_note, trimmed


def make_console(buf: io.StringIO, color: bool, width: int | None = None) -> Console:
    """A console that writes to ``buf`` and lays out for ``width`` (default: the output's
    width, ``render.width.detect``)."""
    return Console(
        file=buf,
        width=width or detect(),
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        markup=False,
        emoji=False,
    )


def _percent(s: Service) -> str:
    if not s.endpoints:
        return "-"
    return " / ".join(f"{float(e.probability) * 100:.2f}%" for e in s.endpoints)


SERVICE_COLUMNS = ("service", "proto", "cluster IP", "NodePort", "endpoints", "shares", "notes")
CHAIN_COLUMNS = ("table", "chain", "policy", "rules", "references")
#: Which columns go first when a table is too wide (higher first; 0 stays).
_PRIORITY = {"proto": 4, "cluster IP": 3, "endpoints": 2, "policy": 2, "references": 1}
# Tables with more rows than this are drawn as plain fixed-width text (plain_table says
# why: rich's layout takes seconds on 10,000 rows). Small outputs keep rich's box table.
RICH_MAX_ROWS = 200
#: The longest name (table, chain, service) a line or a table cell shows, and how many
#: names one line lists: a capture can name anything, at any length.
NAME_SHOWN = 120
NAMES_LISTED = 50
#: Control characters a diagnostic's excerpt is shown without (one column each, so the
#: caret stays under its column): a tab as a blank, the others as U+FFFD.
_CONTROLS = {c: "\ufffd" for c in (*range(32), *range(127, 160))} | {9: " ", 10: "\n"}


def _name(text: str) -> str:
    """A name as a cell or a line shows it: at most ``NAME_SHOWN`` characters."""
    return text if len(text) <= NAME_SHOWN else text[: NAME_SHOWN - 1] + "…"


def _names(items: list[str]) -> str:
    """``a, b, c`` for at most ``NAMES_LISTED`` names, then how many more."""
    shown = ", ".join(items[:NAMES_LISTED])
    more = len(items) - NAMES_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _diagnostics(buf: io.StringIO, diagnostics: tuple[Diagnostic, ...], width: int) -> None:
    """Each diagnostic as ``Diagnostic.render`` has it, each line cut to the width: no
    wrapping (it would part the caret from its column), and no rich layout per line
    (100 µs each: minutes for a million junk lines)."""
    for d in diagnostics:
        text = d.render()
        text = text if text.isprintable() else text.translate(_CONTROLS)
        buf.write("\n".join(_fit_diagnostic(text.split("\n"), width)) + "\n")


def _fit_diagnostic(lines: list[str], width: int) -> list[str]:
    """``path:line:col: message`` folded at the width (never cut: the message matters);
    the excerpt and its caret line cut to the width around the caret, kept aligned."""
    head, rest = lines[0], lines[1:]
    out = [head[i : i + width] for i in range(0, max(len(head), 1), width)]
    if len(rest) != 2 or "^" not in rest[1]:
        return out + [ellipsize(line, width) for line in rest]
    excerpt, caret = rest
    at = caret.index("^")
    if at >= width - 1:  # the caret is off screen: slide the window so it is in the middle
        shift = at - width // 2
        excerpt = "    …" + excerpt[shift + 5 :]
        caret = " " * (at - shift) + "^"
    return [*out, ellipsize(excerpt, width), caret]


def _service_row(s: Service) -> tuple[str, ...]:
    notes = []
    if s.affinity_seconds is not None:
        notes.append(f"affinity {s.affinity_seconds}s")
    if s.traffic_policy_local and not s.local_endpoints:
        notes.append("policy Local: outside clients DROPPED here (no local pod)")
    elif s.traffic_policy_local:
        notes.append(f"policy Local ({len(s.local_endpoints)} local)")
    if s.no_endpoints:
        notes.append("NO ENDPOINTS")
    if not s.captured:
        notes.append("chains not captured: endpoints unknown")
    if s.named_by == "chain":
        notes.append("unnamed")
    return (
        _name(s.name),
        s.protocol or "-",
        ", ".join(s.cluster_ips) or "-",
        ", ".join(str(p) for p in s.node_ports) or "-",
        str(len(s.endpoints)) if s.captured else "?",
        _percent(s) if s.captured else "?",
        ", ".join(notes),
    )


def _chain_columns(chains: tuple[ChainSummary, ...]) -> list[list[str]]:
    return [
        [_name(c.table) for c in chains],
        [_name(c.name) for c in chains],
        [c.policy or "-" for c in chains],
        [str(c.rules) for c in chains],
        [str(c.references) for c in chains],
    ]


def _services_summary(services: tuple[Service, ...]) -> str:
    endpoints = sum(len(s.endpoints) for s in services)
    empty = sum(1 for s in services if s.no_endpoints)
    cut = sum(1 for s in services if not s.captured)
    local = sum(1 for s in services if s.traffic_policy_local)
    affinity = sum(1 for s in services if s.affinity_seconds is not None)
    unnamed = sum(1 for s in services if s.named_by == "chain")
    return (
        f"{len(services)} ({endpoints} endpoints); {empty} with no endpoints, "
        + (f"{cut} not whole in the capture, " if cut else "")
        + f"{local} with policy Local, {affinity} with session affinity, {unnamed} unnamed"
    )


def _table(
    console: Console,
    buf: io.StringIO,
    title: str,
    header: tuple[str, ...],
    columns: list[list[str]],
    summary: Callable[[], str] | None = None,
) -> None:
    """Rich's table up to RICH_MAX_ROWS rows; above, a summary line and a plain table."""
    count = len(columns[0])
    if count <= RICH_MAX_ROWS:
        cols = [Column(h, _PRIORITY.get(h, 0)) for h in header]
        rows = list(zip(*columns, strict=True))
        table, dropped = fitted_table(console, cols, rows, title=title, title_justify="left")
        console.print(table)
        if dropped:
            console.print(Text(hidden_note(dropped), style="dim"))
        return
    console.print(f"{title}: {summary() if summary else count}")
    width = console.width
    keep = list(range(len(header)))
    while True:  # drop the lowest-priority columns until the widest row fits
        lines = plain_table.render([header[i] for i in keep], [columns[i] for i in keep])
        droppable = [i for i in keep if _PRIORITY.get(header[i], 0)]
        if max(map(cell_len, lines)) <= width or not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (_PRIORITY[header[i]], i)))
    console.print(Text(ellipsize(lines[0], width), style="bold"), no_wrap=True)
    buf.write("\n".join(ellipsize(line, width) for line in lines[1:]) + "\n")
    if len(keep) < len(header):
        console.print(hidden_note([h for i, h in enumerate(header) if i not in keep]))


def _input(console: Console, buf: io.StringIO, i: InputSummary) -> None:
    console.rule(Text(f"{i.path}", style="bold"))
    console.print(f"node: {_name(i.node)}    format: {i.format.value}    family: {i.family}")
    tables = [f"{_name(n)}: {c} chains, {r} rules" for n, (c, r) in i.tables.items()]
    more = len(tables) - NAMES_LISTED
    listed = "  ".join(tables[:NAMES_LISTED]) + (f"  and {more} more" if more > 0 else "")
    console.print(f"tables: {listed or 'none'}")
    line = capture_text(i.capture)
    if line:
        console.print(Text(line, style="yellow"))
    for note in i.notes:
        console.print(f"note: {note}")
    if i.missing_chains:
        names = _names([f"{_name(t)}/{_name(c)}" for t, c in i.missing_chains])
        console.print(f"jumps to chains not in this capture: {names}")
    if i.services:
        columns = [list(c) for c in zip(*map(_service_row, i.services), strict=True)]
        summary = partial(_services_summary, i.services)
        _table(console, buf, "kube-proxy services", SERVICE_COLUMNS, columns, summary)
    if i.diagnostics:
        console.print(f"{len(i.diagnostics)} diagnostic(s):")
        _diagnostics(buf, i.diagnostics, console.width)
    console.print()


def show_text(
    report: ShowReport,
    *,
    color: bool = False,
    chains: bool = False,
    details: bool = False,
    width: int | None = None,
) -> str:
    """One services table for the fixture set; ``details`` (or ``chains``): each capture
    in full — tables, its services, every diagnostic (and with ``chains`` every chain)."""
    buf = io.StringIO()
    console = make_console(buf, color, width)
    if not (details or chains):
        from kpsim.render.show_text import overview

        overview(console, report)
        return trimmed(buf.getvalue())
    console.print(f"fixture set: {report.fixture_set} ({report.origin})")
    console.print()
    for i in report.inputs:
        _input(console, buf, i)
        if chains:
            _table(console, buf, "chains", CHAIN_COLUMNS, _chain_columns(i.chains))
    return trimmed(buf.getvalue())
