"""``kpsim graph``: options → load → graph view (→ trace to highlight) → render → echo.

    kpsim graph --port 30080 -o dot | dot -Tsvg > graph.svg

Listed in cli.LAZY_COMMANDS: imported only when ``kpsim graph`` runs.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from kpsim import api, graph
from kpsim.cli_common import handles_errors, input_options, keep_until_exit
from kpsim.errors import TraceError, UsageError
from kpsim.graph import GraphView
from kpsim.model import Format
from kpsim.render.dot import graph_dot
from kpsim.render.graphjson import graph_json
from kpsim.render.mermaid import graph_mermaid
from kpsim.scenario import TraceRequest

RENDERERS: dict[str, Callable[[GraphView], str]] = {
    "dot": graph_dot,
    "mermaid": graph_mermaid,
    "graphml": graph.to_graphml,
    "json": graph_json,
}


def pick_node(loaded: api.Loaded, wanted: str | None) -> api.LoadedNode:
    """The first node, or the one named (full or short name), as ``trace --node``."""
    if wanted is None:
        return loaded.nodes[0]
    for node in loaded.nodes:
        if wanted in (node.name, node.name.split(".")[0], node.source.name):
            return node
    names = ", ".join(n.name for n in loaded.nodes)
    raise UsageError(f"--node {wanted}: no such node (nodes: {names})")


def build_view(
    loaded: api.Loaded, node: api.LoadedNode, port: int | None, service: str | None
) -> GraphView:
    """The whole nat table, or one service's subgraph; with ``--port``, the traced paths
    marked (most probable first). A port kpsim cannot trace still draws, with a note."""
    rs = node.primary
    selector: str | int | None = port if port is not None else service
    g = graph.flow_graph(rs) if selector is None else graph.service_subgraph(rs, selector)
    view = graph.graph_view(g, title=f"{node.name} ({rs.path})")
    if port is None:
        return view
    try:
        report = api.trace(loaded, TraceRequest(port=port, node=node.name))
    except TraceError as exc:
        return graph.graph_view(g, view.title, [f"not highlighted: {exc}"])
    outcomes = report.nodes[0].outcomes if report.nodes else ()
    if not outcomes:
        return view
    best = outcomes[0]
    note = (
        f"highlighted: trace of {report.nodes[0].result.packet}; most probable: "
        f"{best.outcome.verdict.value} {best.destination} "
        f"(p = {graph.fraction_text(best.outcome.probability)})"
    )
    marked = graph.highlight(view, [o.outcome.path for o in outcomes])
    return GraphView(marked.title, marked.selection, marked.nodes, marked.edges, (note,))


@click.command("graph")
@input_options
@click.option("--port", type=int, help="Only this port's service (a NodePort or service port).")
@click.option("--service", help="Only this service (ns/name[:port], name, or chain hash).")
@click.option("--node", help="Graph this node (name or short name; default: the first).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(sorted(RENDERERS)),
    default="dot",
    show_default=True,
    help="dot (Graphviz), mermaid, graphml, or json (schema kpsim/graph/v1).",
)
@handles_errors
def graph_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    port: int | None,
    service: str | None,
    node: str | None,
    output: str,
) -> None:
    """Draw a node's nat chains as a graph: jumps with their conditions and exact
    statistic shares, down to DNAT/MASQUERADE/DROP/REJECT leaves. With --port, the
    paths a connection takes are highlighted (most probable path in red)."""
    if port is not None and service is not None:
        raise UsageError("--port and --service: give one or the other")
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--port {port}: not a port (1-65535)")
    loaded = api.load(
        paths,
        fixtures_dir=fixtures_dir,
        fmt=Format(fmt) if fmt else None,
        strict=strict,
        all_files=False,
    )
    keep_until_exit(loaded)
    view = build_view(loaded, pick_node(loaded, node), port, service)
    for note in view.notes:
        if note.startswith("not highlighted"):
            click.echo(f"kpsim: {note}", err=True)
    click.echo(RENDERERS[output](view), nl=False)
