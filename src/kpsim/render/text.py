"""Text renderers (rich). Pure functions: a report in, a string out."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kpsim.kube import Service
from kpsim.show import InputSummary, ShowReport

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


def _services_table(services: tuple[Service, ...]) -> Table:
    table = Table(title="kube-proxy services", title_justify="left", show_lines=False)
    for col in ("service", "proto", "cluster IP", "NodePort", "endpoints", "shares", "notes"):
        table.add_column(col)
    for s in services:
        notes = []
        if s.affinity_seconds is not None:
            notes.append(f"affinity {s.affinity_seconds}s")
        if s.traffic_policy_local:
            notes.append(f"policy Local ({len(s.local_endpoints)} local)")
        if s.no_endpoints:
            notes.append("NO ENDPOINTS")
        if s.named_by == "chain":
            notes.append("unnamed")
        table.add_row(
            s.name,
            s.protocol or "-",
            ", ".join(s.cluster_ips) or "-",
            ", ".join(str(p) for p in s.node_ports) or "-",
            str(len(s.endpoints)),
            _percent(s),
            ", ".join(notes),
        )
    return table


def _input(console: Console, i: InputSummary) -> None:
    console.rule(Text(f"{i.path}", style="bold"))
    console.print(f"node: {i.node}    format: {i.format.value}    family: {i.family}")
    tables = "  ".join(f"{n}: {c} chains, {r} rules" for n, (c, r) in i.tables.items())
    console.print(f"tables: {tables or 'none'}")
    for note in i.notes:
        console.print(f"note: {note}")
    if i.missing_chains:
        names = ", ".join(f"{t}/{c}" for t, c in i.missing_chains)
        console.print(f"jumps to chains not in this capture: {names}")
    if i.services:
        console.print(_services_table(i.services))
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
        _input(console, i)
        if chains:
            table = Table(title="chains", title_justify="left")
            for col in ("table", "chain", "policy", "rules", "references"):
                table.add_column(col)
            for c in i.chains:
                table.add_row(c.table, c.name, c.policy or "-", str(c.rules), str(c.references))
            console.print(table)
    return buf.getvalue()
