"""The columns of an ``iptables -L`` rule line: which ones the listing has (``Layout``),
what the interface, address and counter columns say, and an author's ``← N`` note.

    num  pkts bytes  target  prot  opt  in   out   source   destination
    └ --line-numbers ┘                  └ -v ┘     └ -n: numbers; without: names ┘
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kpsim.formats.numbers import U64, decimal
from kpsim.model import Interface

#: The ``opt`` column: ``--``, ``-f`` (fragments only), ``!f``.
OPTS = {"--": None, "-f": True, "!f": False}
_ANY_IFACE = ("*", "any")
_COUNT = re.compile(r"(?P<n>[0-9]+)(?P<unit>[KMGT]?)")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
#: What may follow an author's ``←`` at the end of a line: ``← 1``.
_NOTE_TAIL = re.compile(r"\s*+[0-9]*+\s*+")


@dataclass(frozen=True, slots=True)
class Layout:
    num: bool = False
    verbose: bool = False
    io: bool = False


def iface(text: str) -> Interface | None:
    if text in _ANY_IFACE:
        return None
    if text.startswith("!"):
        return Interface(text[1:], negated=True)
    return Interface(text)


def named(text: str) -> bool:
    """An address column as ``-L`` without ``-n`` prints it: ``anywhere``, a host name."""
    body = text.removeprefix("!")
    return body == "anywhere" or (
        any(c.isalpha() for c in body.partition("/")[0]) and (":" not in body)
    )


def guess_layout(words: list[str]) -> Layout:
    """Without a columns line, count the words before the opt column."""
    opt = next((k for k, w in enumerate(words) if w in OPTS), -1)
    before = max(opt - 1, 0)  # words before prot
    if before >= 4:
        return Layout(num=True, verbose=True, io=True)
    if before == 3:
        return Layout(verbose=True, io=True)
    if before == 2:
        return Layout(num=True)
    return Layout()


def counter(text: str) -> tuple[int, bool] | None:
    """A ``-v`` counter: ``1651K`` → (1651000, True): iptables divides by 1000 per unit,
    so one with a unit is approximate. None unless ``[0-9]+`` and a unit, 2^64-1 at most."""
    m = _COUNT.fullmatch(text)
    if m is None:
        return None
    unit = _UNITS[m["unit"]]
    count = decimal(m["n"], U64 // unit)
    return None if count is None else (count * unit, unit > 1)


def author_note(line: str) -> tuple[int, int] | None:
    """Where an author's trailing ``← N`` note starts (with the blanks before it, and
    its arrow), or None. One ``rfind``: a regex search would try every blank."""
    at = line.rfind("←")
    if at < 0 or _NOTE_TAIL.fullmatch(line, at + 1) is None:
        return None
    return len(line[:at].rstrip()), at
