"""``kpsim counters [PATH [PATH_LATER]]``: rule counters against the rules' shares.

One PATH (a capture, a node folder or a fixture set): each node's counters. Two: two
captures of one node taken some time apart, judged on their difference (later − earlier).
Listed in cli.LAZY_COMMANDS.
"""

from __future__ import annotations

import click

from kpsim import api
from kpsim.cli.common import handles_errors, input_options, load_inputs, port_option
from kpsim.errors import UsageError


@click.command("counters")
@input_options
@click.option("--port", type=int, help="Only the service with this port (NodePort or port).")
@click.option("--service", help="Only this service (ns/name[:port] or name).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("-v", "--details", is_flag=True,
              help="Also the tables of services that counted no connection (given with "
              "--port/--service).")  # fmt: skip
@handles_errors
def counters_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    port: int | None,
    service: str | None,
    output: str,
    details: bool = False,
) -> None:
    """Observed new connections per endpoint (packet counters of kube-proxy's jump rules,
    from iptables-save -c or iptables -L -v) next to the exact shares, with a χ² test and a
    verdict; PATH PATH_LATER judges the counters' difference."""
    from kpsim.render.counters_text import counters_json, counters_text

    if len(paths) > 2:
        raise UsageError("counters takes one PATH, or two captures of one node (earlier, later)")
    if port is not None:
        port_option(port)
    if port is not None and service is not None:
        raise UsageError("--port and --service: give one")
    if len(paths) == 2:
        earlier = load_inputs(paths[:1], fixtures_dir, fmt, strict)
        later = load_inputs(paths[1:], fixtures_dir, fmt, strict)
        reports = api.counters(earlier, later, port=port, service=service)
    else:
        loaded = load_inputs(paths, fixtures_dir, fmt, strict)
        reports = api.counters(loaded, port=port, service=service)
    from kpsim.render.width import detect

    text = (
        counters_json(reports)
        if output == "json"
        else counters_text(reports, detect(), details or port is not None or service is not None)
    )
    click.echo(text, nl=False)
