"""``kpsim diff``: options → api.load (twice, or once with --nodes) → api.diff → render.

    kpsim diff tests/data/snapshots/before tests/data/snapshots/after
    kpsim diff --nodes tests/data/snapshots/after

Listed in cli.LAZY_COMMANDS: imported only when ``kpsim diff`` runs.
"""

from __future__ import annotations

import click

from kpsim import api
from kpsim.cli.common import FORMAT_CHOICES, handles_errors, load_inputs
from kpsim.errors import UsageError
from kpsim.render.diff_json import diff_json
from kpsim.render.diff_text import diff_text
from kpsim.render.width import detect


@click.command("diff")
@click.argument("paths", nargs=-1, type=click.Path(readable=False, allow_dash=True))
@click.option("--nodes", "nodes_dir", type=click.Path(readable=False),
              help="Compare the nodes of this one snapshot with each other.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES),
              help="Input format; auto-detected when omitted.")  # fmt: skip
@click.option("--strict", is_flag=True, help="Stop at the first line that does not parse (exit 2).")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text, or json (schema kpsim/diff/v1).",
)  # fmt: skip
@handles_errors
def diff_command(
    paths: tuple[str, ...], nodes_dir: str | None, fmt: str | None, strict: bool, output: str
) -> None:
    """Compare by meaning: services, frontends and endpoints added or removed, shares
    (exact), policy, affinity and masquerade changes. A B: two captures, or two
    snapshot folders matched node by node. --nodes DIR: nodes of one snapshot that
    disagree about a service (a node lagging behind)."""
    if nodes_dir is not None:
        if paths:
            raise UsageError("--nodes DIR compares one snapshot: give no other PATH")
        loaded = load_inputs([nodes_dir], None, fmt, strict)
        report = api.diff_nodes(loaded)
    else:
        if len(paths) != 2:
            raise UsageError(f"diff needs two PATHs (before, after), got {len(paths)}")
        before, after = (load_inputs([p], None, fmt, strict) for p in paths)
        report = api.diff(before, after)
    click.echo(diff_json(report) if output == "json" else diff_text(report, detect()), nl=False)
