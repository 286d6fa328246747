"""kube-proxy's hot rule shapes lowered straight from ``str.split``, before the general
statement reader (kp_lower.Statement over grammar.py's parse) is asked:

    jump X / goto X                          ip|ip6 saddr A jump mark-for-masquerade
    meta l4proto tcp dnat to A:P             numgen random mod N vmap { 0 : goto X, … }
    ct state new jump X                      ip saddr @affinity-… goto X
    update @affinity-… { ip saddr }          fib saddr type local jump|goto X
    ip daddr A [tcp dport P] ip saddr != C jump X
    any of these + comment "…"

A 10,000-service × 5-endpoint ruleset is ~99.99% these shapes; lowering its rules took
1.34–1.49 s through the general reader, 0.88–0.90 s with this (gc off, as api.load runs;
docs/performance.md, "nftables mode"). Anything else,
or any of these with a value the fast path does not take as it is (quotes, an odd
address), is None: the general reader reads it and reports what is wrong at its column.
tests/test_nft_fast.py and test_nft_grammar.py check both give identical rules on every
fixture and on generated rules.
"""

from __future__ import annotations

from kpsim.formats.nft.kp_literal import Lowered, address
from kpsim.formats.nft.kp_text import NftSet, elements
from kpsim.formats.nft.kp_values import key_part, nat_range, verdict
from kpsim.model import (
    AddrTypeMatch,
    CommentMatch,
    ConntrackMatch,
    Dnat,
    Jump,
    Match,
    PortMatch,
    PortRange,
    Protocol,
    RecentCommand,
    RecentMatch,
    Target,
)
from kpsim.model.nft import NumgenMatch

_PROTOS = ("tcp", "udp", "sctp")
_NEW = ConntrackMatch(("NEW",), False)
_JUMPS = ("jump", "goto")
_DIGITS = "0123456789"
_IP = ("ip", "ip6")  # ip6: an IPv6 table's every endpoint chain (the grammar: ~0.2 ms a rule)
_ADDRTYPES = ("local", "unicast", "broadcast", "multicast", "anycast", "blackhole",
              "unreachable", "prohibit", "unspec")  # fmt: skip


def fast_lower(text: str, sets: dict[str, NftSet]) -> Lowered | None:
    """The rule as kp_lower.Statement would lower it, or None: not a hot shape."""
    if '"' in text:
        return _commented(text, sets)
    if ";" in text:
        return None
    w = text.split()
    n = len(w)
    first = w[0] if w else ""
    if first == "numgen" and n > 7 and w[1:3] == ["random", "mod"] and w[4:6] == ["vmap", "{"]:
        return _numgen(w[3], text)
    if first == "update" and n == 6 and w[2:] == ["{", "ip", "saddr", "}"]:
        name = w[1]
        if name[:1] != "@" or "," in name or "{" in name or "}" in name:
            return None
        return Lowered(matches=[RecentMatch(RecentCommand.SET, name[1:])])
    if "{" in text or "}" in text or "," in text:
        return None
    if n == 2 and first in ("jump", "goto"):
        return Lowered(actions=[Jump(w[1], goto=first == "goto")])
    if n == 5 and first in _IP and w[1] == "saddr" and w[3] in _JUMPS:
        target = Jump(w[4], goto=w[3] == "goto")
        value = w[2]
        if value[0] == "@":
            found = sets.get(value[1:])
            if found is None or not found.dynamic:
                return None
            recent = RecentMatch(RecentCommand.RCHECK, found.name, found.timeout, reap=True)
            return Lowered(matches=[recent], actions=[target])
        if value[0] not in "0123456789abcdefABCDEF:":  # an IPv4 or IPv6 address, not a word
            return None
        addr = address(value, False)
        return None if addr is None else Lowered(source=addr, actions=[target])
    if n == 6 and first == "meta" and w[1] == "l4proto" and w[3:5] == ["dnat", "to"]:
        if w[2] not in _PROTOS:
            return None
        rng = nat_range(w[5])
        return None if rng is None else Lowered(protocol=Protocol(w[2]), actions=[Dnat((rng,))])
    if n == 5 and first == "ct" and w[1:4] == ["state", "new", "jump"]:
        return Lowered(matches=[_NEW], actions=[Jump(w[4])])
    if first == "ip" and w[1] == "daddr" and n in (9, 12) and w[-2] in _JUMPS:
        return _masquerade_check(w)
    if n == 6 and first == "fib" and w[1] == "saddr" and w[2] == "type" and w[4] in _JUMPS:
        if w[3] not in _ADDRTYPES:
            return None
        fib = AddrTypeMatch(src_type=(w[3].upper(),), src_negated=False)
        return Lowered(matches=[fib], actions=[Jump(w[5], goto=w[4] == "goto")])
    return None


def _masquerade_check(w: list[str]) -> Lowered | None:
    """``ip daddr A [tcp dport P] ip saddr != C jump mark-for-masquerade``: the first rule
    of every service chain of a cluster with a cluster CIDR (kube-proxy's own test dumps;
    ~35 µs a rule through the grammar, ~4 µs here)."""
    if w[-6:-3] != ["ip", "saddr", "!="] or w[2][:1] not in _DIGITS or w[-3][:1] not in _DIGITS:
        return None
    port = key_part(w[5], "port") if len(w) == 12 and w[3] in _PROTOS and w[4] == "dport" else None
    if port is None and len(w) == 12:
        return None
    dst, src = address(w[2], False), address(w[-3], True)
    if dst is None or src is None:
        return None
    target = Jump(w[-1], goto=w[-2] == "goto")
    if port is None:
        return Lowered(source=src, destination=dst, actions=[target])
    ports = PortMatch(w[3], dport=PortRange(port.lo, port.hi), dport_negated=False)
    return Lowered(src, dst, Protocol(w[3]), matches=[ports], actions=[target])


def _commented(text: str, sets: dict[str, NftSet]) -> Lowered | None:
    """A hot shape followed by ``comment "…"`` (kube-proxy's ``fib saddr type local``
    rules of every external- chain: 2 of the 10k-service ruleset's 3 commented rules a
    service, ~0.2 s through the grammar); a comment with escapes is the grammar's."""
    head, sep, quoted = text.partition(' comment "')
    if not sep or not quoted.endswith('"') or '"' in quoted[:-1] or "\\" in quoted:
        return None
    low = fast_lower(head, sets)
    if low is None or low.branches is not None:
        return None
    low.matches.append(CommentMatch(quoted[:-1]))
    return low


def _numgen(mod: str, text: str) -> Lowered | None:
    """``numgen random mod N vmap { 0 : goto A, 1 : goto B }``: a NumgenMatch cascade."""
    if (
        not (mod.isascii() and mod.isdigit())
        or mod[0] == "0"
        or text.count("{") != 1
        or not text.endswith("}")
    ):
        return None
    modulus = int(mod)
    branches: list[tuple[Match, Target]] = []
    before: list[int] = []
    for item in elements(text[text.index("{") + 1 : -1]):
        key, sep, value = item.partition(" : ")
        target = verdict(value)
        if not sep or not (key.isascii() and key.isdigit()) or target is None:
            return None
        bucket = int(key)
        branches.append((NumgenMatch(modulus, bucket, tuple(before), 0), target))
        before.append(bucket)
    return Lowered(branches=branches)
