"""Text renderers (rich). Pure functions: a report in, a string out."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kpsim.kube.services import Service
from kpsim.kube.show import ChainSummary, InputSummary, ShowReport
from kpsim.render import plain_table
from kpsim.render.capture import capture_text

WIDTH = 140


def make_console(buf: io.StringIO, color: bool) -> Console:
    return Console(
        file=buf,
        width=WIDTH,
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
# Tables with more rows than this are drawn as plain fixed-width text (plain_table says
# why: rich's layout takes seconds on 10,000 rows). Small outputs keep rich's box table.
RICH_MAX_ROWS = 200


def _service_row(s: Service) -> tuple[str, ...]:
    notes = []
    if s.affinity_seconds is not None:
        notes.append(f"affinity {s.affinity_seconds}s")
    if s.traffic_policy_local:
        notes.append(f"policy Local ({len(s.local_endpoints)} local)")
    if s.no_endpoints:
        notes.append("NO ENDPOINTS")
    if not s.captured:
        notes.append("chains not captured: endpoints unknown")
    if s.named_by == "chain":
        notes.append("unnamed")
    return (
        s.name,
        s.protocol or "-",
        ", ".join(s.cluster_ips) or "-",
        ", ".join(str(p) for p in s.node_ports) or "-",
        str(len(s.endpoints)) if s.captured else "?",
        _percent(s) if s.captured else "?",
        ", ".join(notes),
    )


def _chain_columns(chains: tuple[ChainSummary, ...]) -> list[list[str]]:
    return [
        [c.table for c in chains],
        [c.name for c in chains],
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
        table = Table(title=title, title_justify="left", show_lines=False)
        for col in header:
            table.add_column(col)
        for row in zip(*columns, strict=True):
            table.add_row(*row)
        console.print(table)
        return
    console.print(f"{title}: {summary() if summary else count}", soft_wrap=True)
    lines = plain_table.render(header, columns)
    console.print(Text(lines[0], style="bold"), soft_wrap=True)
    buf.write("\n".join(lines[1:]) + "\n")


def _input(console: Console, buf: io.StringIO, i: InputSummary) -> None:
    console.rule(Text(f"{i.path}", style="bold"))
    console.print(f"node: {i.node}    format: {i.format.value}    family: {i.family}")
    tables = "  ".join(f"{n}: {c} chains, {r} rules" for n, (c, r) in i.tables.items())
    console.print(f"tables: {tables or 'none'}")
    line = capture_text(i.capture)
    if line:
        console.print(Text(line, style="yellow"))
    for note in i.notes:
        console.print(f"note: {note}")
    if i.missing_chains:
        names = ", ".join(f"{t}/{c}" for t, c in i.missing_chains)
        console.print(f"jumps to chains not in this capture: {names}")
    if i.services:
        columns = [list(c) for c in zip(*map(_service_row, i.services), strict=True)]
        summary = partial(_services_summary, i.services)
        _table(console, buf, "kube-proxy services", SERVICE_COLUMNS, columns, summary)
    if i.diagnostics:
        console.print(f"{len(i.diagnostics)} diagnostic(s):")
        for d in i.diagnostics:
            console.print(Text(d.render()))
    console.print()


def show_text(report: ShowReport, *, color: bool = False, chains: bool = False) -> str:
    buf = io.StringIO()
    console = make_console(buf, color)
    console.print(f"fixture set: {report.fixture_set} ({report.origin})")
    console.print()
    for i in report.inputs:
        _input(console, buf, i)
        if chains:
            _table(console, buf, "chains", CHAIN_COLUMNS, _chain_columns(i.chains))
    return buf.getvalue()
