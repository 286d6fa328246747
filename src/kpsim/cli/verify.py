"""``kpsim verify``: options → load → verify (trace + kernel replay) → render → echo.

    sudo kpsim verify fixtures/iptables/eks-nodeport-workshop --port 30080 -n 300

Exit 0 when every node agrees with kpsim, 1 when one disagrees, 2 for bad input or a
machine that cannot replay (not root, no iptables); 130 / 143 / 129 when SIGINT, SIGTERM
or SIGHUP ended the run (its namespaces removed first). Each run first removes what runs
killed earlier left (``--cleanup`` does only that). Listed in cli.LAZY_COMMANDS: imported
only when ``kpsim verify`` runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import ExitStack
from dataclasses import replace

import click

from kpsim import api
from kpsim.cli.common import color, handles_errors, input_options, load_inputs
from kpsim.errors import ExitCode, UsageError
from kpsim.kube.scenario import DEFAULT_CLIENT
from kpsim.render.verify_json import verify_json
from kpsim.render.verify_text import verify_text
from kpsim.verify import netns
from kpsim.verify import run as verification


@click.command("verify")
@input_options
@click.option("--port", type=int, help="Destination port (a NodePort when alone). Required.")
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
@click.option(
    "--cleanup",
    is_flag=True,
    help="Only remove the namespaces that verify runs which are gone (killed, --keep) left "
    "behind, and list them. Every run does this first.",
)
@click.option("--counters/--no-counters", default=True, help="Show per-rule counters (text).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@handles_errors
def verify_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    port: int | None,
    dest: str | None,
    n: int,
    clients: int,
    source: str,
    node: str | None,
    seed: int,
    connect_timeout: float,
    keep: bool,
    cleanup: bool,
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
    if cleanup:
        if paths or port is not None:
            raise UsageError("--cleanup takes no PATH and no --port: it only removes leftovers")
        _cleanup(output)
    if port is None:
        raise UsageError("--port is required (or --cleanup)")
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
    with verification.signals_unwind() as unwinding:
        try:
            _stale_note()
            loaded = load_inputs(paths, fixtures_dir, fmt, strict)
            label = f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})"
            if not keep:
                report = api.verify(loaded, request)
                _emit(report, label, output, counters)
                sys.exit(int(ExitCode.OK if report.agree else ExitCode.FAILURE))
            _keep(loaded, request, label, output, counters)
        except BaseException:
            if unwinding.signum is None:
                raise
            _interrupted(unwinding.signum)  # whatever the signal turned into on its way out


def _keep(
    loaded: api.Loaded,
    request: verification.VerifyRequest,
    label: str,
    output: str,
    counters: bool,
) -> None:
    """``--keep``: report, then end the process with the sessions still open."""
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


def _interrupted(signum: int) -> None:
    """The run's namespaces are gone (the ``with``s unwound; this removes any they left):
    one line, exit 128 + signum."""
    left = netns.cleanup_created()
    name = signal.Signals(signum).name
    if left:
        gone = f"could not remove {', '.join(left)} (ip netns del NAME)"
    else:
        gone = "its network namespaces were removed"
    click.echo(f"kpsim: verify interrupted by {name}; {gone}", err=True)
    sys.exit(128 + signum)


def _stale_note() -> None:
    """Before a run: remove what killed runs left; say so on stderr (stdout stays the report)."""
    if not netns.available():  # a stand-in kernel (tests): nothing of ours to sweep
        return
    try:
        removed = verification.remove_stale()
    except (netns.NetnsError, OSError) as exc:
        click.echo(f"kpsim: note: leftovers of earlier runs remain: {exc}", err=True)
        return
    if removed:
        names = ", ".join(removed)
        click.echo(
            f"kpsim: note: removed {len(removed)} namespace(s) of gone runs: {names}", err=True
        )


def _cleanup(output: str) -> None:
    """``--cleanup``: remove the leftovers, list them, exit 0 (1 if one would not go)."""
    try:
        removed = verification.remove_stale()
    except netns.NetnsError as exc:
        raise verification.VerifyError(f"--cleanup: {exc}") from exc
    if output == "json":
        doc = {"schema": "kpsim/verify-cleanup/v1", "removed": removed}
        click.echo(json.dumps(doc, indent=2))
    else:
        for name in removed:
            click.echo(f"removed {name}")
        click.echo(
            f"removed {len(removed)} namespace(s) left by verify runs that are gone"
            if removed
            else "nothing to remove: no namespace of a verify run that is gone"
        )
    sys.exit(int(ExitCode.OK))


def _emit(report: verification.VerifyReport, label: str, output: str, counters: bool) -> None:
    if output == "json":
        click.echo(verify_json(report, label), nl=False)
    else:
        click.echo(verify_text(report, label, color=color(output), counters=counters), nl=False)
