"""Click commands: options → api → render → echo.

The only module that prints or chooses an exit code (see errors.ExitCode).

Startup cost matters (``kpsim show -o json`` on a big dump should beat
``iptables-restore --test``), so this module and what ``show`` needs import no numpy,
boto3, networkx or rich: the commands kept in their own modules load on first use
(``LazyGroup``), and renderers and trace machinery are imported inside the commands
that use them. tests/test_cli_imports.py holds that line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from kpsim import api
from kpsim.cli.common import (
    color,
    error_boundary,
    fast_exit,
    handles_errors,
    input_options,
    ip_option,
    keep_until_exit,
    load_inputs,
    port_option,
)
from kpsim.errors import UsageError

if TYPE_CHECKING:
    from kpsim.engine.trace import UnknownMode
    from kpsim.kube.scenario import TraceRequest

#: Commands defined in their own modules, imported only when run or when the help lists
#: them (``kpsim --help`` is not a hot path; ``kpsim show`` is).
LAZY_COMMANDS: Mapping[str, str] = {
    "counters": "kpsim.cli.counters:counters_command",
    "diff": "kpsim.cli.diff:diff_command",
    "fetch": "kpsim.cli.fetch:fetch_command",
    "graph": "kpsim.cli.graph:graph_command",
    "lint": "kpsim.cli.lint:lint_command",
    "simulate": "kpsim.cli.simulate:simulate_command",
    "verify": "kpsim.cli.verify:verify_command",
    "why": "kpsim.cli.why:why_command",
}


class LazyGroup(click.Group):
    """A group whose ``lazy`` commands are imported on first use (click docs, "Lazily
    Loading Subcommands")."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}:{attr} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Every command, lazy ones and those without ``handles_errors`` included, runs
        inside the one error boundary (docs/errors.md)."""
        with error_boundary():
            return super().invoke(ctx)


UNKNOWN_MODES: dict[str, UnknownMode] = {
    "stop": "stop",
    "no-match": "assume-no-match",
    "match": "assume-match",
}


def trace_request(
    port: int,
    dest: str | None,
    proto: str,
    source: str | None,
    node_ips: tuple[str, ...],
    node: str | None,
    assumptions: tuple[str, ...],
) -> TraceRequest:
    """Options → a validated TraceRequest (bad values: exit 2 with the value named)."""
    from kpsim.kube.scenario import TraceRequest

    port_option(port)
    extra: dict[str, object] = {}
    if source:
        host, _, sport = source.rpartition(":") if source.count(":") == 1 else (source, "", "")
        extra["source"] = ip_option(host or source, "--source")
        if sport:
            if not sport.isdigit() or not 0 < int(sport) < 65536:
                raise UsageError(f"--source {source}: bad port {sport!r}")
            extra["source_port"] = int(sport)
    affinity: list[str] = []
    for a in assumptions:
        key, _, value = a.partition("=")
        if key == "affinity" and value:
            affinity.append(value)
        elif key == "unknown" and value in UNKNOWN_MODES:
            extra["unknown"] = UNKNOWN_MODES[value]
        else:
            raise UsageError(
                f"--assume {a}: expected affinity=IP:PORT or unknown=stop|no-match|match"
            )
    return TraceRequest(
        port=port,
        dest=ip_option(dest, "--dest") if dest else None,
        protocol=proto,
        node_ips=tuple(ip_option(i, "--node-ip") for i in node_ips),
        node=node,
        affinity=tuple(affinity),
        **extra,  # type: ignore[arg-type]
    )


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="kpsim")
@click.option(
    "--debug",
    is_flag=True,
    help="On an internal error, show its traceback (else written to a file; docs/errors.md).",
)
def main(debug: bool) -> None:
    """Explain how Kubernetes traffic flows through a node's iptables rules."""


def run() -> None:
    """The ``kpsim`` console script and ``python -m kpsim``."""
    fast_exit(main)


@main.command()
@input_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--chains", is_flag=True, help="Also list every chain with its counts.")
@click.option(
    "-v", "--details", is_flag=True, help="Each capture in full: tables, services, diagnostics."
)
@handles_errors
def show(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    output: str,
    chains: bool,
    details: bool,
) -> None:
    """Load captures and say what they hold: one services table (ports, endpoints, exact
    shares); -v: format, tables, chains and diagnostics of each capture."""
    loaded = load_inputs(paths, fixtures_dir, fmt, strict, all_files=True, lazy=True)
    report = keep_until_exit(api.show(loaded))
    if output == "json":
        from kpsim.render.json import write_show_json

        # written as is: click.echo would scan it for ANSI codes to strip, which JSON
        # cannot hold (escaped as \u001b), 7 ms for 10,000 services (measured)
        write_show_json(report, sys.stdout)
    else:
        from kpsim.render.text import show_text

        text = show_text(report, color=color(output), chains=chains, details=details)
        click.echo(text, nl=False)


@main.command()
@input_options
@click.option("--port", type=int, required=True, help="Destination port (a NodePort when alone).")
@click.option("--dest", help="Destination address (default: each node's own address).")
@click.option("--proto", type=click.Choice(["tcp", "udp", "sctp"]), default="tcp")
@click.option("--source", default=None, help="Client IP[:PORT] (default 203.0.113.10:40000).")
@click.option("--node-ip", "node_ips", multiple=True, help="Add a local address of the node.")
@click.option("--node", help="Only this node (name or short name).")
@click.option(
    "--assume",
    "assumptions",
    multiple=True,
    help="What-if: affinity=IP:PORT (the client already sticks to that endpoint), "
    "unknown=stop|no-match|match (how to treat matches kpsim cannot decide).",
)
@click.option("--tree/--no-tree", default=None, help="Rule trees for every node (or none).")
@click.option("-v", "--details", is_flag=True, help="The rules on the path (first node's tree).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "dot"]),
    default="text",
    help="dot: the service's chain graph with the traced paths highlighted (first node, "
    "or --node).",
)
@handles_errors
def trace(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    port: int,
    dest: str | None,
    proto: str,
    source: str | None,
    node_ips: tuple[str, ...],
    node: str | None,
    assumptions: tuple[str, ...],
    tree: bool | None,
    details: bool,
    output: str,
) -> None:
    """Follow a connection's first packet through each node's rules: every outcome,
    its exact probability, the rules on its path, and whether the client IP survives."""
    request = trace_request(port, dest, proto, source, node_ips, node, assumptions)
    # a trace reads a few chains (lazy), its last check made after its walk (api.trace);
    # the graph draws them all
    lazy = output != "dot"
    loaded = load_inputs(paths, fixtures_dir, fmt, strict, lazy=lazy, confirm_later=lazy)
    if output == "dot":
        from kpsim.render.dot import graph_dot

        chosen = api.node(loaded, node)
        click.echo(graph_dot(api.graph(loaded, chosen, port)), nl=False)
        return
    report = api.trace(loaded, request)
    label = f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})"
    if output == "json":
        from kpsim.render.json import trace_json

        click.echo(trace_json(report, label), nl=False)
    else:
        from kpsim.render.trace_text import trace_text

        text = trace_text(report, label, color=color(output), tree=tree, details=details)
        click.echo(text, nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
