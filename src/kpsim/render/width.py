"""How wide text output may be, and how to make things fit it without wrapping.

Width: ``$COLUMNS`` when set (a number ≥ 20); else the terminal's width when stdout is
a terminal; else 80 (a pipe, a file, a test). Every text renderer lays out for this width:
tables drop their lowest-priority columns first (and say which), then cut cells with an
ellipsis; trees shorten rule text with an ellipsis and keep ``:line``. No line is longer.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.cells import cell_len, set_cell_size
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

#: Output that is not a terminal (a pipe, a file) is laid out for this width.
DEFAULT = 80
#: Narrower than this nothing useful fits: ``COLUMNS=5`` is taken as this.
MINIMUM = 40


def detect(stream: TextIO | None = None) -> int:
    """``$COLUMNS``, else the terminal's width if ``stream`` (stdout) is one, else 80."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return max(MINIMUM, int(env))
    out = sys.stdout if stream is None else stream
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        tty = False
    if tty:
        return max(MINIMUM, shutil.get_terminal_size((DEFAULT, 24)).columns)
    return DEFAULT


def ellipsize(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells, ending in ``…`` when cut."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return set_cell_size(text, width - 1) + "…"


def trimmed(text: str) -> str:
    """Text without the blanks rich pads lines with (invisible, but they break pasting
    and diffs)."""
    return "\n".join(line.rstrip(" ") for line in text.split("\n"))


def fit_lines(text: str, width: int) -> str:
    """Every line of ``text`` cut to ``width`` cells (for text written around rich)."""
    return "\n".join(ellipsize(line, width) for line in text.split("\n"))


def ellipsize_left(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` cells: ``…/ip-10-11-3-14/iptables-save.txt:41``
    keeps a path's file and ``:line``."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    tail = text[::-1]
    return "…" + set_cell_size(tail, width - 1)[::-1]


def fold(text: str, width: int, indent: str = "", hang: str | None = None) -> list[str]:
    """``text`` folded at word boundaries to ``width`` cells, later lines indented by
    ``hang`` (default: ``indent``). A word (a path, ``file:line``, a code) is never split:
    one longer than the line gets a line of its own, cut from the left only if even that
    line cannot hold it."""
    rest = indent if hang is None else hang
    lines = textwrap.wrap(
        text,
        max(width, len(rest) + 1),
        initial_indent=indent,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent.rstrip()]
    out = []
    for i, line in enumerate(lines):
        lead = indent if i == 0 else rest
        if cell_len(line) > width and line.startswith(lead):
            line = lead + ellipsize_left(line[len(lead) :], max(1, width - len(lead)))
        out.append(line)
    return out


def short_nodes(text: str, names: Iterable[str]) -> str:
    """``text`` with each full node name of ``names`` written as ``short_node`` shows it,
    where that short form names one node only (so it can be pasted into ``--node``)."""
    every = set(names)
    shorts = [short_node(n) for n in every]
    for n in sorted(every, key=len, reverse=True):
        if short_node(n) != n and shorts.count(short_node(n)) == 1:
            # a name standing alone, not part of a path or a longer name
            alone = rf"(?<![\w./-]){re.escape(n)}(?![\w-]|\.[\w-])"
            text = re.sub(alone, short_node(n), text)
    return text


def short_node(name: str) -> str:
    """A node's name as text shows it: ``ip-10-11-3-14`` for
    ``ip-10-11-3-14.ap-northeast-2.compute.internal`` (``--node`` and ``--entry`` take
    both); a name that is an address (``10.0.0.7``) whole — its first label is no name."""
    first = name.split(".", 1)[0]
    return name if first.isdigit() or ":" in name else first


@dataclass(frozen=True, slots=True)
class Column:
    """A table column; ``priority`` 0 is never dropped, higher numbers go first."""

    header: str
    priority: int = 0
    justify: str = "left"


def fitted_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[RenderableType]],
    **table_args: object,
) -> tuple[Table, tuple[str, ...]]:
    """A rich table that fits ``console.width``: the lowest-priority columns are dropped
    until the rows fit unwrapped (returned, so the caller can say so); what still does
    not fit is cut with an ellipsis, never wrapped onto a second line."""
    keep = list(range(len(columns)))
    while True:
        table = _table(columns, rows, keep, table_args)
        unbounded = console.options.update_width(10**6)  # what the rows want, uncut
        natural = Measurement.get(console, unbounded, table).maximum
        droppable = [i for i in keep if columns[i].priority > 0]
        if natural <= console.width or not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    dropped = tuple(c.header for i, c in enumerate(columns) if i not in keep)
    return table, dropped


def _table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[RenderableType]],
    keep: Sequence[int],
    table_args: dict[str, object],
) -> Table:
    table = Table(**table_args)  # type: ignore[arg-type]
    for i in keep:
        c = columns[i]
        table.add_column(c.header, justify=c.justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def hidden_note(dropped: Sequence[str], how: str = "a wider terminal or -o json") -> str:
    """The line under a table that lost columns to the width, and where to see them."""
    return f"(not shown at this width: {', '.join(dropped)} — {how})" if dropped else ""
