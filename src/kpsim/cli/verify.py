"""``kpsim verify``: options → load → verify (trace + kernel replay) → render → echo.

    sudo kpsim verify fixtures/iptables/eks-nodeport-workshop --port 30080 -n 300

Exit 0 when every node agrees with kpsim, 1 when one disagrees, 2 for bad input or a
machine that cannot replay (not root, no iptables). Listed in cli.LAZY_COMMANDS: imported
only when ``kpsim verify`` runs.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from dataclasses import replace

import click

from kpsim import api
from kpsim.cli.common import color, handles_errors, input_options
from kpsim.errors import ExitCode
from kpsim.kube.scenario import DEFAULT_CLIENT
from kpsim.model import Format
from kpsim.render.verify_json import verify_json
from kpsim.render.verify_text import verify_text
from kpsim.verify import run as verification


@click.command("verify")
@input_options
@click.option("--port", type=int, required=True, help="Destination port (a NodePort when alone).")
@click.option("--dest", help="Destination address (default: each node's own address).")
@click.option("-n", "n", type=int, default=200, show_default=True, help="Connections per node.")
@click.option("--clients", type=int, default=1, show_default=True, help="Client addresses (1-250).")
@click.option("--source", default=DEFAULT_CLIENT, show_default=True, help="First client IP.")
@click.option("--node", help="Only this node (name or short name).")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Session affinity: seeds the clients' order and kpsim's simulated runs.",
)
@click.option(
    "--connect-timeout",
    "connect_timeout",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds before a connection counts as timed out (DROP); each DROP costs this long.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the namespaces (rules, addresses, counters; responders stop) for inspection "
    "and print the `ip netns del` commands that remove them. The process then ends without "
    "its own cleanup, which would delete them.",
)
@click.option("--counters/--no-counters", default=True, help="Show per-rule counters (text).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@handles_errors
def verify_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    port: int,
    dest: str | None,
    n: int,
    clients: int,
    source: str,
    node: str | None,
    seed: int,
    connect_timeout: float,
    keep: bool,
    counters: bool,
    output: str,
) -> None:
    """Replay each node's rules in the real kernel (throw-away network namespaces,
    addresses moved into 198.18.0.0/15) with N real TCP connections, and check them
    against kpsim's exact trace: endpoints reached, shares (χ² test), masquerade,
    REJECT / DROP, per-rule counters. Under session affinity (ClientIP) the clients
    connect in a seeded random order; each client's first pick is tested against the
    shares, and repeat connections that changed endpoint against kpsim's simulated
    recent lists. Needs root and iptables."""
    request = verification.VerifyRequest(
        port=port,
        dest=dest,
        n=n,
        clients=clients,
        source=source,
        node=node,
        connect_timeout_s=connect_timeout,
        seed=seed,
    )
    request.check()
    verification.require_kernel()  # before loading: fail fast, exit 2
    loaded = api.load(
        paths,
        fixtures_dir=fixtures_dir,
        fmt=Format(fmt) if fmt else None,
        strict=strict,
        all_files=False,
    )
    label = f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})"
    if not keep:
        report = api.verify(loaded, request)
        _emit(report, label, output, counters)
        sys.exit(int(ExitCode.OK if report.agree else ExitCode.FAILURE))
    stack = ExitStack()
    try:
        probe = verification.KeepingProbe(stack)
        report = api.verify(loaded, request, probe)
        report = replace(report, kept=tuple(probe.namespaces))
        _emit(report, label, output, counters)
    except BaseException:
        stack.close()  # a failed or interrupted run keeps nothing
        raise
    # Leaving normally would close the sessions and run netns's atexit cleanup, which
    # deletes every namespace this process made: end here instead, output flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(ExitCode.OK if report.agree else ExitCode.FAILURE))


def _emit(report: verification.VerifyReport, label: str, output: str, counters: bool) -> None:
    if output == "json":
        click.echo(verify_json(report, label), nl=False)
    else:
        click.echo(verify_text(report, label, color=color(output), counters=counters), nl=False)
