"""The library API: one call per stage, usable from a notebook as from the CLI.

    fetch ─▶ fixtures ─▶ load (parse) ─▶ show / trace / graph / simulate / verify ─▶ render

One function per command: ``fetch_ssm``/``fetch_local``, ``load``, ``show``, ``trace``,
``graph``, ``simulate``, ``verify``, ``lint``, ``diff``/``diff_nodes``, ``counters``, ``why``
(``observed`` for ``simulate --observed``). The CLI (kpsim.cli) only turns options into
these calls. load.py reads, commands.py asks, analyze.py judges; import from here.

>>> from kpsim import api
>>> loaded = api.load([])            # the default fixture set
>>> report = api.show(loaded)
"""

from __future__ import annotations

from kpsim.api.analyze import counters, diff, diff_nodes, lint, observed, why
from kpsim.api.commands import (
    fetch_local,
    fetch_ssm,
    generator,
    graph,
    show,
    simulate,
    trace,
    verify,
)
from kpsim.api.load import Loaded, LoadedNode, confirmed, load, node

__all__ = [
    "Loaded",
    "LoadedNode",
    "confirmed",
    "counters",
    "diff",
    "diff_nodes",
    "fetch_local",
    "fetch_ssm",
    "generator",
    "graph",
    "lint",
    "load",
    "node",
    "observed",
    "show",
    "simulate",
    "trace",
    "verify",
    "why",
]
