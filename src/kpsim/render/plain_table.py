"""Plain fixed-width tables, for reports too big for rich's Table.

Why by hand: rich's Table measures every cell of every column (min and max width, then
wrapping) before it draws a line — 6.0 s for the 10,000-service table of a synthetic
10,000-service × 5-endpoint dump, and 21 s for its 61,322-chain ``--chains`` table
(measured, rich 15). Here the widths come from the data in one pass per column (C-level
``max(map(len, ...))`` when a column is ASCII) and each row is one ``str.format``: ~0.1 s
for both tables. Cells are never wrapped or cut; a long cell just makes its line longer.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len

SEP = "  "


def _clean(cell: str) -> str:
    """Show control characters (a hostile comment's ESC, a tab) escaped, not raw."""
    if cell.isprintable():
        return cell
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in cell)


def render(header: Sequence[str], columns: Sequence[Sequence[str]]) -> list[str]:
    """The header line, a rule under it, then one line per row; columns are left-aligned,
    ``SEP`` apart, and every row's column starts at the same terminal cell.

    Column-major on purpose: a tuple per row would be ~60,000 more objects for the cyclic
    collector to count, and it then runs a full collection (0.1 s, measured)."""
    cols = [[h, *col] for h, col in zip(header, columns, strict=True)]
    specs: list[str] = []
    widths: list[int] = []
    last = len(cols) - 1
    for i, col in enumerate(cols):  # whole-column checks first: per-cell work only if needed
        joined = "".join(col)
        if not joined.isprintable():
            col[:] = map(_clean, col)
            joined = "".join(col)
        if joined.isascii():
            width = max(map(len, col))
            specs.append("%s" if i == last else f"%-{width}s")
        else:  # wide or combining characters: pad by terminal cells, not code points
            width = max(map(cell_len, col))
            if i != last:
                col[:] = [c + " " * (width - cell_len(c)) for c in col]
            specs.append("%s")
        widths.append(width)
    # map() over zip() lets zip reuse its row tuple: no allocation per row.
    lines = list(map(str.rstrip, map(SEP.join(specs).__mod__, zip(*cols, strict=True))))
    lines.insert(1, SEP.join("-" * w for w in widths))
    return lines
