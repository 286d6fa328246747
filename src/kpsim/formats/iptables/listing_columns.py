"""The columns of an ``iptables -L`` rule line: which ones the listing has (``Layout``),
and what the interface and address columns say.

    num  pkts bytes  target  prot  opt  in   out   source   destination
    └ --line-numbers ┘                  └ -v ┘     └ -n: numbers; without: names ┘
"""

from __future__ import annotations

from dataclasses import dataclass

from kpsim.model import Interface

#: The ``opt`` column: ``--``, ``-f`` (fragments only), ``!f``.
OPTS = {"--": None, "-f": True, "!f": False}
_ANY_IFACE = ("*", "any")


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
