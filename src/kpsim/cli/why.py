"""``kpsim why --port N | --service NS/NAME``: what explains uneven load, ranked.
Listed in cli.LAZY_COMMANDS (imports numpy for the connection-reuse simulation)."""

from __future__ import annotations

import click

from kpsim import api
from kpsim.cli.common import handles_errors, input_options, load_inputs, port_option
from kpsim.errors import UsageError


@click.command("why")
@input_options
@click.option("--port", type=int, help="The service with this port (NodePort or port).")
@click.option("--service", help="The service (ns/name[:port] or name).")
@click.option("--observed", type=click.Path(dir_okay=False),
              help="Your per-pod counts: CSV pod_or_ip,count or JSON {\"ip\": count}.")  # fmt: skip
@click.option("-n", "n", type=int, default=1_000, show_default=True,
              help="Connections for the noise ranges when nothing was observed.")  # fmt: skip
@click.option("--connections", type=int, default=4, show_default=True,
              help="Long-lived connections in the reuse example.")  # fmt: skip
@click.option("--requests", type=int, default=1_000, show_default=True,
              help="Requests each connection carries in the reuse example.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the reuse simulation.")  # fmt: skip
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("-v", "--details", is_flag=True,
              help="Every cause in full: why ruled out, what to look up and where.")  # fmt: skip
@handles_errors
def why_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    port: int | None,
    service: str | None,
    observed: str | None,
    n: int,
    connections: int,
    requests: int,
    seed: int,
    output: str,
    details: bool = False,
) -> None:
    """Why is load on a service uneven? Each cause (sampling noise, session affinity,
    traffic policy Local, cross-node hops, topology, connection reuse, UDP conntrack)
    judged against the captures: explains, likely, possible, or ruled out and why."""
    from kpsim.render.why_text import why_json, why_text
    from kpsim.render.width import detect

    if (port is None) == (service is None):
        raise UsageError("why needs exactly one of --port N or --service NS/NAME")
    if port is not None:
        port_option(port)
    if n < 1 or connections < 1 or requests < 1:
        raise UsageError("-n, --connections and --requests must be ≥ 1")
    if connections > 10_000 or requests > 10**9:
        raise UsageError("--connections at most 10000, --requests at most 10^9")
    if not 0 <= seed < 1 << 63:
        raise UsageError(f"--seed {seed}: a whole number from 0 to 2**63-1")
    loaded = load_inputs(paths, fixtures_dir, fmt, strict)
    _, rng = api.generator(seed)
    report = api.why(loaded, rng, port=port, service=service, observed=observed, n=n,
                     connections=connections, requests=requests)  # fmt: skip
    text = why_json(report) if output == "json" else why_text(report, detect(), details)
    click.echo(text, nl=False)
