"""The two whole-line shapes of the fast path (``fast``), and the columns a big chain's
sketch reads off its lines with them (``sketch``): standard library only, so the prescan's
child (``prescan_child``) reads the same columns with the same code, without the model.

    line_re(0): kube-proxy's restore input    ┐ fast.FastRules: fullmatch, a line
    line_re(1): iptables-save's option order  ┘ columns(joined, …): findall over lines
"""

from __future__ import annotations

import re
from functools import cache
from itertools import repeat

from kpsim.formats.iptables.patterns import IP as _IP
from kpsim.formats.iptables.patterns import NAME as _NAME
from kpsim.formats.iptables.patterns import NET as _NET

_PROTO = r"(tcp|udp|sctp)"
_COMMENT = r' -m comment --comment ("[^"\\]*+(?:\\.[^"\\]*+)*+"|[^ \t"!][^ \t"]*+)'
_STATISTIC = r" -m statistic --mode random --probability ([0-9.]{1,32}+)"
_TARGET = rf"(?: -j DNAT --to-destination ({_IP})(?::(\d{{1,5}}))?| -j ({_NAME}))"
_SRC = rf"(?: (! )?-s ({_NET}))?"
_DST = rf"(?: (! )?-d ({_NET}))?"

#: Session affinity, kube-proxy's only ``-m recent`` shapes: ``--set`` in a KUBE-SEP
#: chain, ``--rcheck --seconds N --reap`` in a KUBE-SVC chain; as saved, as written.
_RECENT_COMMAND = r"(--set|--rcheck --seconds (\d{1,10}+) --reap)"
_RECENT_SAVED = (
    rf" -m recent {_RECENT_COMMAND} --name ({_NAME}) --mask 255\.255\.255\.255 --rsource"
)
_RECENT_WRITTEN = rf" -m recent --name ({_NAME}) {_RECENT_COMMAND}"
#: ``-m addrtype --src-type LOCAL`` (KUBE-EXT masquerade, 668 lines of a 10,000-service dump)
#: and ``--dst-type LOCAL`` (KUBE-EXTERNAL-SERVICES): the general path took ~50 µs a line.
_ADDRTYPE = r"(?: -m addrtype --(src|dst)-type LOCAL)?"

#: kube-proxy's restore input: comment, ``-m tcp -p tcp``, ``-d``, ``--dport``, ``-s``;
#: iptables-save's order: core fields, then matches as loaded, then the target.
_SHAPES = (
    rf"^-A ({_NAME})(?:{_COMMENT})?(?:{_RECENT_WRITTEN})?{_ADDRTYPE}(?: -m {_PROTO} -p {_PROTO})?"
    rf"{_DST}"
    rf"(?: --dport (\d{{1,5}}+))?{_SRC}(?:{_STATISTIC})?{_TARGET}$",
    rf"^-A ({_NAME}){_SRC}{_DST}(?: -p {_PROTO})?(?:{_COMMENT})?(?:{_RECENT_SAVED})?{_ADDRTYPE}"
    rf"(?: -m {_PROTO}(?: --dport (\d{{1,5}}+))?)?(?:{_STATISTIC})?{_TARGET}$",
)


@cache
def line_re(order: int) -> re.Pattern[str]:
    """The shape of that order (0: kube-proxy's restore input, 1: iptables-save's), each
    one a whole line: ``fullmatch`` of one line, ``findall`` over lines joined by
    newlines (MULTILINE), one compiled pattern for both (~1.6 ms each to compile). ASCII:
    ``\\d`` is [0-9] (Unicode digits, which ``int()`` reads and iptables does not, take
    the general path and its diagnostics)."""
    return re.compile(_SHAPES[order], re.ASCII | re.MULTILINE)


#: Chains of this many rules or more are sketched rather than built for a trace's questions
#: (as many as ``engine.prepare`` indexes: a walk reads shorter chains rule by rule).
SKETCH_MIN_RULES = 32
#: The group of each field in each order's shape: dneg, dst, proto, module, dport,
#: recent, jump, comment; and how many groups a shape has.
FIELDS = {0: (8, 9, 7, 6, 10, 3, 16, 1), 1: (3, 4, 5, 11, 12, 7, 16, 6)}
_GROUPS = 17

#: A big chain's columns, one entry a line: jumps (as written, keywords too), ``-d``
#: (with its "!"), ``-p``, ``--dport``, the port match's module ("" without a port),
#: whether ``-m recent`` is there, the comment's text.
Columns = tuple[list[str], list[str], list[str], list[str], list[str], list[bool], list[str]]


def columns(joined: str, lines: int, order: int) -> Columns | None:
    """The columns of ``lines`` lines joined by newlines, each in that order's shape; None
    when not one match a line (the caller builds the rules). Only for lines the scan
    vouched for: such a line has no match but a comment, ``-m recent``, ``-m addrtype``,
    one port match and ``-m statistic``. Each field's column by one transpose in C, then
    in C where a field needs a touch: KUBE-SERVICES' 10,001 lines 9 → 3 ms after the
    findall (measured)."""
    found = line_re(order).findall(joined)
    if len(found) != lines:
        return None
    dneg, dst, proto, module, dport, recent, jump, comment = FIELDS[order]
    cols: list[tuple[str, ...]] = list(zip(*found, strict=True)) if found else [()] * _GROUPS
    dsts, negated = cols[dst], cols[dneg]
    return (
        list(cols[jump]),
        [("!" + d if n else d) for n, d in zip(negated, dsts, strict=True)]
        if any(negated)
        else list(dsts),
        list(cols[proto]),
        list(cols[dport]),
        # a module only with its port (``p and m``: "" when there is no port)
        [p and m for p, m in zip(cols[dport], cols[module], strict=True)],
        # the fast path's matches, in either order: comment, recent, addrtype, port,
        # statistic; so only a recent match comes before the port match
        list(map(bool, cols[recent])),
        # a vouched comment has no escapes: its text is the word, without its quotes
        list(map(str.strip, cols[comment], repeat('"'))),
    )
