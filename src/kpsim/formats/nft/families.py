"""Whole ``table FAMILY NAME { … }`` blocks of an ``nft list ruleset``, found by their
braces and blanked out when a reader must not see them (line numbers kept).

    table ip nat { … }        ── kept: the IPv4 tables an IPv4 packet passes
    table ip6 nat { … }       ── blanked: an IPv4 packet never passes an ip6 table;
                                 the caller names it and its lines in a note

Why: ``nft list ruleset`` on a node prints ip and ip6 tables with the same names
(``ip6 nat``, ``ip6 filter`` from ip6tables-nft). The model holds one family, so read
together the ip6 chains would be appended to the IPv4 ones and walked by IPv4 packets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from kpsim.formats.nft.kp_text import _depth


@dataclass(frozen=True, slots=True)
class Block:
    """A table left out: its family, name and first and last line (1-based)."""

    family: str
    name: str
    first: int
    last: int

    def note(self, why: str) -> str:
        return f"table {self.family} {self.name} (lines {self.first}-{self.last}) not read: {why}"


def blank_tables(text: str, drop: Callable[[str, str], bool]) -> tuple[str, tuple[Block, ...]]:
    """The text with every table block ``drop(family, name)`` selects blanked, and those
    blocks. A table without its closing brace is blanked to the end of the text."""
    out: list[str] = []
    blocks: list[Block] = []
    depth, inside, start = 0, None, 0
    for number, line in enumerate(text.split("\n"), 1):
        words = line.split()
        if inside is None and len(words) >= 3 and words[0] == "table" and drop(words[1], words[2]):
            inside, depth, start = (words[1], words[2]), 0, number
        if inside is None:
            out.append(line)
            continue
        depth += _depth(line)
        out.append("")
        if depth <= 0 and "}" in line:
            blocks.append(Block(inside[0], inside[1], start, number))
            inside = None
    if inside is not None:
        blocks.append(Block(inside[0], inside[1], start, len(out)))
    return "\n".join(out), tuple(blocks)


_HEADER = re.compile(r"^table (\S+) ", re.M)


def families(text: str) -> set[str]:
    """The families of the ``table`` headers at the start of a line (one C-speed scan)."""
    return set(_HEADER.findall(text))


def other_family(text: str, family: str | None) -> tuple[str, tuple[Block, ...]]:
    """``text`` without the tables of the other IP family: ``family`` given (the family
    of kube-proxy's table), or ip when the text has ip tables. Only ip tables: unchanged."""
    present = families(text)
    keep = family or ("ip" if "ip" in present else None)
    gone = ({"ip", "ip6"} - {keep}) & present if keep in ("ip", "ip6") else set()
    if not gone:
        return text, ()
    return blank_tables(text, lambda f, _n: f in gone)


def why_left_out(block: Block, family: str) -> str:
    """The note for a table of the other family."""
    packet = "IPv4" if family == "ip" else "IPv6"
    return block.note(f"an {packet} packet never passes a table of family {block.family}")
