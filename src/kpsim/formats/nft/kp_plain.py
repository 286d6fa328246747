"""kube-proxy's base chain headers and set bodies read by a regex, before the pyparsing
grammar (blocks.py) is asked:

    { type nat hook prerouting priority -100 ; }            ─▶ ChainSpec
    type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ;  ─▶ the set's items
    type ipv4_addr . inet_proto . inet_service : verdict ; comment "…" ;

Why: with these, kp_shapes.py and ``fast_command``'s ``add table``, a kube-proxy table is
read without importing pyparsing or building a grammar: ~0.05 s of a ~1.3 s load
(measured). Only the spellings kube-proxy and ``nft list`` write are taken, one blank
between words; anything else is None and the grammar reads it (its errors at their
columns). tests/test_nft_plain.py checks both agree, on generated texts too.
"""

from __future__ import annotations

import re
from functools import lru_cache

from kpsim.formats.nft.blocks import ChainSpec, SetItem

_WORD = r"[a-z][a-z0-9_]*"
#: ``[{ ]type K hook H priority P ;[ policy W ;][ }]`` (``;`` may touch the word before).
_CHAIN_SPEC = re.compile(
    rf"(?:\{{ )?type ({_WORD}) hook ({_WORD}) priority (-?[0-9]+|[a-z]+) ?;"
    rf"(?: policy ({_WORD}) ?;)?(?: \}})?",
    re.ASCII,
)
_KEYS = rf"{_WORD}(?: \. {_WORD})*"
#: One item of a set body, then a blank, a ``;`` or the end.
_ITEM = re.compile(
    rf"(?:type (?P<keys>{_KEYS})(?: : (?P<value>{_KEYS}))?"
    rf"|flags (?P<flags>[a-z]+(?:,[a-z]+)*)"
    r"|timeout (?P<timeout>(?:[0-9]+(?:ms|[dhms]))+)"
    r"|size (?P<size>[0-9]+)"
    r'|comment "(?P<comment>[^"\\\n]*)")(?=[ ;]|$)',
    re.ASCII,
)


def plain_chain_spec(text: str) -> ChainSpec | None:
    """``parse_chain_spec``'s answer for a header in kube-proxy's spelling, or None."""
    m = _CHAIN_SPEC.fullmatch(text)
    if m is None:
        return None
    kind, hook, prio, policy = m.groups()
    return ChainSpec(kind, hook, prio, m.start(3), policy)


@lru_cache(maxsize=256)  # bounded: kube-proxy's 1,000 affinity sets share one body
def plain_set_body(text: str) -> tuple[SetItem, ...] | None:
    """``parse_set_body``'s answer for items in kube-proxy's spelling (``;`` between
    them, blanks around), or None."""
    out: list[SetItem] = []
    pos, end = 0, len(text)
    item_allowed = True  # at the start or after a ``;``
    while True:
        while pos < end and text[pos] == " ":
            pos += 1
        if pos == end:
            return tuple(out)
        if text[pos] == ";":
            pos += 1
            item_allowed = True
            continue
        m = _ITEM.match(text, pos) if item_allowed else None
        if m is None:
            return None
        keys, value, flags, timeout, size, comment = m.groups()
        if keys is not None:
            if value is not None and " . " not in value:  # the grammar's text of a one-word
                value = text[m.start("value") : _blanks_after(text, m.end())]  # value: its
            out.append(("type", (tuple(keys.split(" . ")), value), pos))  # blanks after too
        elif flags is not None:
            out.append(("flags", tuple(flags.split(",")), pos))
        elif timeout is not None:
            out.append(("timeout", timeout, pos))
        elif size is not None:
            out.append(("size", int(size), pos))
        else:
            out.append(("comment", comment, pos))
        pos = m.end()
        item_allowed = False


def _blanks_after(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos
