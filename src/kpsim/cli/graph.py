"""``kpsim graph``: options → api.load → api.graph (traced to highlight) → render → echo.

    kpsim graph --port 30080 -o dot | dot -Tsvg > graph.svg

Listed in cli.LAZY_COMMANDS: imported only when ``kpsim graph`` runs.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from kpsim import api
from kpsim.cli.common import (
    handles_errors,
    input_options,
    ip_option,
    load_inputs,
    port_option,
)
from kpsim.errors import UsageError
from kpsim.graph import build as graph
from kpsim.graph.model import GraphView
from kpsim.render.dot import graph_dot
from kpsim.render.graphjson import graph_json
from kpsim.render.mermaid import graph_mermaid

RENDERERS: dict[str, Callable[[GraphView], str]] = {
    "dot": graph_dot,
    "mermaid": graph_mermaid,
    "graphml": graph.to_graphml,
    "json": graph_json,
}


@click.command("graph")
@input_options
@click.option("--port", type=int, help="Only this port's service (a NodePort or service port).")
@click.option("--service", help="Only this service (ns/name[:port], name, or chain hash).")
@click.option("--node", help="Graph this node (name or short name; default: the first).")
@click.option(
    "--node-ip",
    "node_ips",
    multiple=True,
    help="Add a local address of the node (for --port; else the capture's or a stand-in).",
)
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
    node_ips: tuple[str, ...],
    output: str,
) -> None:
    """Draw a node's nat chains as a graph: jumps with their conditions and exact
    statistic shares, down to DNAT/MASQUERADE/DROP/REJECT leaves. With --port, the
    paths a connection takes are highlighted (most probable path in red)."""
    if port is not None and service is not None:
        raise UsageError("--port and --service: give one or the other")
    if port is not None:
        port_option(port)
    node_ips = tuple(ip_option(i, "--node-ip") for i in node_ips)
    loaded = load_inputs(paths, fixtures_dir, fmt, strict)
    view = api.graph(loaded, api.node(loaded, node), port, service, node_ips)
    for note in view.notes:
        if note.startswith(("not highlighted", "capture:", "no node address")):
            click.echo(f"kpsim: {note}", err=True)
    click.echo(RENDERERS[output](view), nl=False)
