"""``kpsim simulate``: options → SimRequest → kpsim.simulate → render → echo.

The only simulate module that prints. Listed in cli.LAZY_COMMANDS: imported (with
numpy) only when ``kpsim simulate`` runs.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import click

from kpsim import api
from kpsim.cli.common import (
    color,
    handles_errors,
    input_options,
    ip_option,
    load_inputs,
    port_option,
)
from kpsim.errors import UsageError
from kpsim.simulate.run import Progress, SimRequest

#: Runs shorter than this finish before a progress bar would be worth drawing.
PROGRESS_FROM = 2_000_000


#: ``--seed``: what ``api.generator`` draws a fresh one from, and what JSON readers hold.
SEED_LIMIT = 1 << 63
#: An entry weight: 2, 0.5 or 1/3 (no exponent: Fraction("1e999999999") never returns).
_WEIGHT = re.compile(r"\d{1,30}(?:\.\d{1,30})?(?:/\d{1,30})?")


def parse_entry(text: str) -> tuple[tuple[str, Fraction], ...]:
    """``uniform`` or ``NODE=WEIGHT,NODE=WEIGHT`` (weights: 2, 0.5 or 1/3)."""
    if text.strip() in ("", "uniform"):
        return ()
    out = []
    for part in text.split(","):
        name, eq, weight = part.strip().partition("=")
        try:
            if not eq or not name or not _WEIGHT.fullmatch(weight.strip()):
                raise ValueError
            out.append((name, Fraction(weight.strip())))
        except (ValueError, ZeroDivisionError):
            raise UsageError(
                f"--entry {text!r}: expected 'uniform' or NODE=WEIGHT,… (bad part {part!r})"
            ) from None
    return tuple(out)


def check_numbers(n: int, clients: int, rate: float, seed: int | None) -> None:
    """The numeric options, before anything is read (the library checks them again)."""
    if n < 1:
        raise UsageError(f"-n {n}: simulate at least one connection")
    if clients < 1:
        raise UsageError(f"--clients {clients}: at least one client")
    if not math.isfinite(rate) or rate <= 0:
        raise UsageError(f"--rate {rate}: connections per second, a number > 0")
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"--seed {seed}: a seed is a whole number from 0 to 2**63-1")


def check_plot(plot: str | None) -> str:
    """``--plot``'s format (png, svg), its folder checked before a long run."""
    if not plot:
        return ""
    suffix = Path(plot).suffix.lower().lstrip(".")
    if suffix not in ("png", "svg"):
        raise UsageError(f"--plot {plot}: the file must end in .png or .svg")
    folder = os.path.dirname(plot) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"--plot {plot}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--plot {plot}: cannot write in {folder}")
    return suffix


def write_plot(plot: str, data: bytes) -> None:
    try:
        Path(plot).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"--plot {plot}: cannot write: {exc.strerror or exc}") from exc


@contextmanager
def _progress(show: bool) -> Iterator[Progress | None]:
    """A rich bar on stderr while the library calls back; nothing when not wanted."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("sim", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.command("simulate")
@input_options
@click.option(
    "-n",
    "n",
    type=int,
    default=10_000,
    show_default=True,
    help="Connections to simulate (per service).",
)
@click.option("--port", type=int, help="Destination port (a NodePort when alone).")
@click.option("--dest", help="Destination address (a ClusterIP, say); needs --port.")
@click.option("--service", help="A service by name (ns/name[:port] or name).")
@click.option("--proto", type=click.Choice(["tcp", "udp", "sctp"]), default="tcp")
@click.option(
    "--entry",
    default="uniform",
    show_default=True,
    help="Entry-node weights: uniform, or NODE=WEIGHT,… (short names work).",
)
@click.option(
    "--clients",
    type=int,
    default=10,
    show_default=True,
    help="Distinct client IPs (matters for session affinity).",
)
@click.option(
    "--rate",
    type=float,
    default=100.0,
    show_default=True,
    help="Connections per second, for affinity timeouts.",
)
@click.option("--seed", type=int, help="Random seed (default: a fresh one, printed).")
@click.option("--node-ip", "node_ips", multiple=True, help="Add a local address of the node.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("-v", "--details", is_flag=True, help="Each service in full: outcomes, entry nodes.")
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False),
    help="Also write a chart: FILE.png or FILE.svg.",
)
@click.option(
    "--observed",
    type=click.Path(dir_okay=False),
    help="Also judge your own per-pod counts (CSV pod_or_ip,count or JSON) against the shares.",
)
@handles_errors
def simulate_command(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    n: int,
    port: int | None,
    dest: str | None,
    service: str | None,
    proto: str,
    entry: str,
    clients: int,
    rate: float,
    seed: int | None,
    node_ips: tuple[str, ...],
    output: str,
    details: bool,
    plot: str | None,
    observed: str | None = None,
) -> None:
    """Send N simulated connections through the rules, drawing random numbers as the
    kernel does, and compare what happens with the exact shares: per endpoint, per entry
    node, across nodes, with a verdict on whether an uneven split is chance."""
    from kpsim.render.sim_json import simulate_json
    from kpsim.render.sim_text import simulate_text

    if dest is not None and port is None:
        raise UsageError("--dest needs --port")
    if port is not None:
        port_option(port)
    check_numbers(n, clients, rate, seed)
    suffix = check_plot(plot)
    request = SimRequest(
        n=n, port=port, dest=ip_option(dest, "--dest") if dest else None, service=service,
        protocol=proto, entry=parse_entry(entry), clients=clients, rate=rate,
        node_ips=tuple(ip_option(i, "--node-ip") for i in node_ips),
    )  # fmt: skip
    try:
        seed, rng = api.generator(seed)
    except (ValueError, TypeError, OverflowError) as exc:  # numpy's word on a seed
        raise UsageError(f"--seed {seed}: {exc}") from None
    request = replace(request, seed=seed)
    loaded = load_inputs(paths, fixtures_dir, fmt, strict)
    show = output == "text" and sys.stderr.isatty() and n >= PROGRESS_FROM
    with _progress(show) as progress:
        report = api.simulate(loaded, request, rng, progress)
    label = f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})"
    if plot:
        from kpsim.render.sim_plot import simulate_plot

        write_plot(plot, simulate_plot(report, suffix))
    judged = api.observed(report, observed) if observed else None
    if output == "json":
        text = simulate_json(report, label)
        if judged is not None:
            from kpsim.render.observed_text import with_observed

            text = with_observed(text, judged)
        click.echo(text, nl=False)
    else:
        text = simulate_text(report, label, color=color(output), detail=details or None)
        click.echo(text, nl=False)
        if judged is not None:
            from kpsim.render.observed_text import observed_text
            from kpsim.render.width import detect

            click.echo(observed_text(judged, detect()), nl=False)
        if plot:
            click.echo(f"chart written to {plot}")
