"""The prescan's messages as the parent reads them back (``prescan``): each one unpacked
only when it has the shape the child (``prescan_child``) gives it, else nothing, and
the reader does that work itself."""

from __future__ import annotations

import marshal

from kpsim.formats.iptables.lazy_scan import BLOCK, Runs
from kpsim.formats.iptables.line_shapes import Columns

#: Jump targets that name no run's chain, by table bounds (a later message).
Targets = dict[tuple[int, int], list[str]]


def unpack_items(data: bytes, text: str) -> tuple[int, Runs] | None:
    """The message as ``scan``'s answer, when it has its shape (items that cover the text
    from its first newline to its end); else None."""
    try:
        order, names, offsets, blocks = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    if order not in (0, 1) or not all(type(x) is list for x in (names, offsets, blocks)):
        return None
    if len(offsets) != len(names) + 1 or offsets[0] != text.index("\n"):
        return None
    if offsets[-1] != len(text) or not all(
        type(at) is int and 0 <= at < len(names) and names[at] is None for at in blocks
    ):
        return None
    return order, Runs(names, offsets, frozenset(blocks))


def unpack_marks(data: bytes, text: str) -> list[int] | None:
    """A message as ``marks_ahead`` gives it; None when not in its shape."""
    try:
        found = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    if type(found) is not list or len(found) != len(text) // BLOCK + 1 or found[:1] != [0]:
        return None
    return found if set(map(type, found)) <= {int} else None


def unpack_repeats(
    data: bytes, text: str
) -> tuple[dict[str, list[int]], set[tuple[int, int, str]]] | None:
    """A message as ``repeats_ahead`` gives it, with the big chains the child sketches
    next (``sketch_ahead`` waits only for those); None when not in its shape."""
    try:
        found = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    if not (type(found) is tuple and len(found) == 2):
        return None
    several, big = found
    if type(several) is not dict or type(big) is not list:
        return None
    for name, items in several.items():
        if type(name) is not str or type(items) is not list or not set(map(type, items)) <= {int}:
            return None
    if not all(type(key) is tuple and len(key) == 3 for key in big):
        return None
    return several, set(big)


def unpack_targets(data: bytes, text: str = "") -> Targets:
    """A message as ``unruled_ahead`` keeps it; empty when not in its shape."""
    try:
        found = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return {}
    out: Targets = {}
    if type(found) is not list:
        return {}
    for item in found:
        if not (type(item) is tuple and len(item) == 3):
            return {}
        lo, hi, names = item
        if type(lo) is not int or type(hi) is not int:
            return {}
        if type(names) is not list or not set(map(type, names)) <= {str}:
            return {}
        out[lo, hi] = names
    return out


def unpack_sketches(data: bytes, text: str) -> dict[tuple[int, int, str], Columns]:
    """A message as ``sketch_ahead`` keeps it; empty when not in its shape (lists as
    long as each other)."""
    try:
        found = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return {}
    out: dict[tuple[int, int, str], Columns] = {}
    if type(found) is not list:
        return {}
    for item in found:
        if not (type(item) is tuple and len(item) == 4):
            return {}
        lo, hi, name, cols = item
        if type(lo) is not int or type(hi) is not int or type(name) is not str:
            return {}
        if not (type(cols) is tuple and len(cols) == 7 and set(map(type, cols)) == {list}):
            return {}
        if len(set(map(len, cols))) != 1:
            return {}
        out[lo, hi, name] = cols
    return out
