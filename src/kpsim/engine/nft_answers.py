"""How nftables' own matches answer (model/nft.py): set and map lookups by their
concatenated keys, and ``numgen random`` buckets with the kernel's exact chances.

    SetLookup   ─▶ True / False, or the reason it cannot be decided (a str)
    NumgenMatch ─▶ exact chance, a Fraction whose parts are counts of 2^32 random values

Kept apart from answers.py (which wraps these) so the iptables matches and the nft ones
change independently; no import of answers.py, so no cycle.
"""

from __future__ import annotations

from fractions import Fraction

from kpsim.engine.flow import Flow
from kpsim.model.nft import KEY_KINDS, NumgenMatch, SetLookup

#: nft protocol names → numbers, as ``meta l4proto`` compares them.
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
_PORTED = {"tcp", "udp", "sctp"}


def key_value(key: str, flow: Flow) -> int | None:
    """The flow's value of one key selector, as the integer the kernel compares; None when
    the packet has no such field (``tcp dport`` of a UDP packet)."""
    if key.endswith("saddr"):
        return int(flow.src)
    if key.endswith("daddr"):
        return int(flow.dst)
    if KEY_KINDS.get(key) == "proto":
        return PROTO_NUMBERS.get(flow.protocol, -1)
    head, _, field = key.partition(" ")
    if head != "th" and head != flow.protocol:
        return None  # tcp dport on a non-TCP packet: the rule's protocol check fails
    if flow.protocol not in _PORTED:
        return None
    return flow.dport if field == "dport" else flow.sport


def set_lookup(m: SetLookup, flow: Flow) -> bool | str:
    """Is the flow's concatenated key in the set? A str says why kpsim cannot tell."""
    if any(k not in KEY_KINDS for k in m.keys):
        unknown = [k for k in m.keys if k not in KEY_KINDS]
        return f"nft key {' . '.join(unknown)} in {m.text or m.name} is not modelled"
    values = []
    for k in m.keys:
        v = key_value(k, flow)
        if v is None:
            return False  # nft's implicit protocol dependency fails: never a match
        values.append(v)
    if m.dynamic and m.name.lstrip("@") in flow.recent:
        return not m.negated
    hit = any(
        all(part.contains(v) for part, v in zip(element, values, strict=True))
        for element in m.elements
    )
    return hit != m.negated


def numgen(m: NumgenMatch) -> bool | Fraction:
    """The exact chance this bucket's rule matches, given the earlier ones missed."""
    p = m.chance
    return p if 0 < p < 1 else p == 1
