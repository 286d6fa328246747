"""Where a chain read on demand (``lazy``) was declared: its line number, found when first
asked (a chain is built with its declaration's location)."""

from __future__ import annotations

from kpsim.formats.iptables.lazy_scan import Lines

#: Declarations found by a search (a trace asks a few); past this many, by one index
SEARCHED = 64


class Places:
    """The declaration lines of one table's chains (``:NAME - [0:0]``, one a line, in
    blocks whose offsets ``declared`` maps each name to, in order)."""

    def __init__(self) -> None:
        self.asked = 0
        self.positions: dict[str, int] | None = None  # chain → its place in ``declared``
        self.firsts: dict[int, int] = {}  # block → the place of its first chain

    def line(self, text: str, lines: Lines, declared: dict[str, int], name: str) -> int:
        """The line number of ``name``'s declaration. A search from its block's start per
        chain was quadratic once every chain is built (``show`` on a capture the lazy
        reader could not serve alone: 23 s for 61,000 chains, measured); past ``SEARCHED``
        chains, their places in ``declared`` less their block's first place."""
        block = declared[name]
        self.asked += 1
        if self.asked <= SEARCHED:
            return lines.at(text.index(f"\n:{name} - [0:0]\n", block) + 1)
        if self.positions is None:
            self.positions = {n: k for k, n in enumerate(declared)}
        first = self.firsts.get(block)
        if first is None:  # the place of the first chain of the block
            before = text.count("\n", block, text.index(f"\n:{name} - [0:0]\n", block))
            first = self.firsts[block] = self.positions[name] - before
        return lines.at(block + 1) + self.positions[name] - first
