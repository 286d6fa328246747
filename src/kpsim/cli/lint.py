"""``kpsim lint``: options → api.load → api.lint → render → echo, and an exit code a
pipeline can fail on.

    kpsim lint --fail-on warning fixtures/iptables/eks-nodeport-workshop

Listed in cli.LAZY_COMMANDS: imported only when ``kpsim lint`` runs.
"""

from __future__ import annotations

import sys

import click

from kpsim import api
from kpsim.cli.common import handles_errors, input_options, ip_option, load_inputs
from kpsim.errors import ExitCode
from kpsim.lint import Severity, at_or_above
from kpsim.render.lint_json import lint_json
from kpsim.render.lint_text import lint_text
from kpsim.render.width import detect


@click.command("lint")
@input_options
@click.option("--node", help="Lint only this node (name or short name; default: all).")
@click.option(
    "--node-ip", "node_ips", multiple=True,
    help="A local address of the node (repeatable; adds to the capture's metadata): "
    "NodePorts limited by nodePortAddresses are checked against it.",
)  # fmt: skip
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text, or json (schema kpsim/lint/v1).",
)
@click.option(
    "--fail-on", type=click.Choice(["info", "warning", "error", "never"]), default="error",
    show_default=True, help="Exit 1 when a finding is at or above this severity.",
)  # fmt: skip
@handles_errors
def lint_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    node: str | None,
    node_ips: tuple[str, ...],
    output: str,
    fail_on: str,
) -> None:
    """Find the problems in captured rules: services without endpoints, Local-policy
    black holes (and which nodes serve them), cascades that do not give equal shares,
    rules that never match, missing and stale chains, both iptables back-ends, partial
    captures. Each finding has a stable code and the file:line behind it."""
    loaded = load_inputs(paths, fixtures_dir, fmt, strict)
    ips = tuple(ip_option(i, "--node-ip") for i in node_ips)
    report = api.lint(loaded, node, ips)
    click.echo(lint_json(report) if output == "json" else lint_text(report, detect()), nl=False)
    if fail_on != "never" and at_or_above(report.findings, Severity(fail_on)):
        sys.exit(int(ExitCode.FAILURE))
