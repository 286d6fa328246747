"""``kpsim simulate``: options → SimRequest → kpsim.simulate → render → echo.

The only simulate module that prints. Listed in cli.LAZY_COMMANDS: imported (with
numpy) only when ``kpsim simulate`` runs.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import click

from kpsim import api
from kpsim.cli.common import color, handles_errors, input_options, keep_until_exit
from kpsim.errors import UsageError
from kpsim.model import Format
from kpsim.simulate.run import Progress, SimRequest

#: Runs shorter than this finish before a progress bar would be worth drawing.
PROGRESS_FROM = 2_000_000


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an IP address") from None


def parse_entry(text: str) -> tuple[tuple[str, Fraction], ...]:
    """``uniform`` or ``NODE=WEIGHT,NODE=WEIGHT`` (weights: 2, 0.5 or 1/3)."""
    if text.strip() in ("", "uniform"):
        return ()
    out = []
    for part in text.split(","):
        name, eq, weight = part.strip().partition("=")
        try:
            if not eq or not name:
                raise ValueError
            out.append((name, Fraction(weight.strip())))
        except (ValueError, ZeroDivisionError):
            raise UsageError(
                f"--entry {text!r}: expected 'uniform' or NODE=WEIGHT,… (bad part {part!r})"
            ) from None
    return tuple(out)


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
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False),
    help="Also write a chart: FILE.png or FILE.svg.",
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
    plot: str | None,
) -> None:
    """Send N simulated connections through the rules, drawing random numbers as the
    kernel does, and compare what happens with the exact shares: per endpoint, per entry
    node, across nodes, with a verdict on whether an uneven split is chance."""
    from kpsim.render.sim_json import simulate_json
    from kpsim.render.sim_text import simulate_text

    if dest is not None and port is None:
        raise UsageError("--dest needs --port")
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--port {port}: not a port (1-65535)")
    suffix = Path(plot).suffix.lower().lstrip(".") if plot else ""
    if plot and suffix not in ("png", "svg"):
        raise UsageError(f"--plot {plot}: the file must end in .png or .svg")
    seed, rng = api.generator(seed)
    request = SimRequest(
        n=n, port=port, dest=_ip(dest, "--dest") if dest else None, service=service,
        protocol=proto, entry=parse_entry(entry), clients=clients, rate=rate, seed=seed,
        node_ips=tuple(_ip(i, "--node-ip") for i in node_ips),
    )  # fmt: skip
    loaded = api.load(
        paths, fixtures_dir=fixtures_dir, fmt=Format(fmt) if fmt else None, strict=strict,
        all_files=False,
    )  # fmt: skip
    keep_until_exit(loaded)
    show = output == "text" and sys.stderr.isatty() and n >= PROGRESS_FROM
    with _progress(show) as progress:
        report = api.simulate(loaded, request, rng, progress)
    label = f"{loaded.fixture_set.label} ({loaded.fixture_set.origin})"
    if plot:
        from kpsim.render.sim_plot import simulate_plot

        Path(plot).write_bytes(simulate_plot(report, suffix))
    if output == "json":
        click.echo(simulate_json(report, label), nl=False)
    else:
        click.echo(simulate_text(report, label, color=color(output)), nl=False)
        if plot:
            click.echo(f"chart written to {plot}")
