"""A deferred chain's rules built straight from its lines' words (kp_lazy ``_BODY``'s
shapes, one space between words, vouched for by the scan): the rules
``kp_fast.fast_lower`` and ``kube_proxy._lower_chain`` build from the same lines.

    ip saddr 10.0.0.1 jump mark-for-masquerade   ─▶ Rule(-s 10.0.0.1, Jump)
    meta l4proto tcp dnat to 10.0.0.1:80         ─▶ Rule(-p tcp, Dnat 10.0.0.1:80)
    numgen random mod 3 vmap { 0 : goto A, … }   ─▶ a Rule per bucket (NumgenMatch cascade)

Why: 114,000 such lines in a 10,000-service table; through fast_lower (a ``Lowered`` per
line, its checks, lists made tuples, ipaddress-rule parsing) 0.74 s in all, here 0.36 s
(CPU, a cold process: docs/performance.md, "nftables mode"), the objects every chain
shares (a numgen bucket's cascade, a protocol, the masquerade jump) made once.
``tests/test_nft_lazy.py`` checks these rules against the whole reader's on every nft
input, and line by line (hypothesis) on generated ones.
"""

from __future__ import annotations

from _socket import inet_aton  # socket's own: ``socket`` itself costs ~3 ms to import
from collections.abc import Callable, Iterator
from functools import lru_cache

from kpsim.formats.iptables.construct import constructor, new_chain, new_location, new_rule
from kpsim.formats.iptables.lazynet import LazyIPv4Network
from kpsim.formats.nft.kp_literal import address
from kpsim.formats.nft.kp_text import NftChain, NftSet
from kpsim.model import (
    Address,
    Chain,
    ConntrackMatch,
    Dnat,
    Jump,
    NatRange,
    Protocol,
    RecentCommand,
    RecentMatch,
    Rule,
)
from kpsim.model.nft import NumgenMatch

# Positional constructors (construct.py): a Jump, a Dnat and its range, an Address for
# each of 50,000 endpoints
_new_jump: Callable[[str, bool], Jump] = constructor(Jump)
_new_dnat: Callable[..., Dnat] = constructor(Dnat)
_new_range: Callable[..., NatRange] = constructor(NatRange)
_new_address: Callable[..., Address] = constructor(Address)
_PROTOCOLS = {p: Protocol(p) for p in ("tcp", "udp", "sctp")}
#: A dnat line's protocol by its first letter (the scan vouched tcp, udp or sctp) and where
#: its address starts: ``meta l4proto tcp dnat to A:P`` cut, not split (~4 ms, measured)
_L4 = {p[0]: (_PROTOCOLS[p], len(f"meta l4proto {p} dnat to ")) for p in _PROTOCOLS}
_from_bytes = int.from_bytes  # big-endian by default (3.11); bound once: ~3 ms (measured)
_NEW = (ConntrackMatch(("NEW",), False),)


@lru_cache(maxsize=1024)
def _cascade(modulus: int, buckets: tuple[int, ...]) -> tuple[tuple[NumgenMatch], ...]:
    """Each bucket's matches (its NumgenMatch, the buckets before it in ``before``): every
    service with N endpoints has the same cascade."""
    return tuple((NumgenMatch(modulus, b, buckets[:i], 0),) for i, b in enumerate(buckets))


@lru_cache(maxsize=1024)
def _cascade_of(modulus: str, keys: tuple[str, ...]) -> tuple[tuple[NumgenMatch], ...]:
    """``_cascade`` of a vmap's modulus and keys as the line spells them."""
    return _cascade(int(modulus), tuple(map(int, keys)))


def _source(value: str) -> Address | None:
    """``kp_literal.address(value, False)`` for the scan's dotted quad (``inet_aton`` reads
    it as ``kp_values.ipv4`` does: no leading zeros, octets ≤ 255, vouched by the scan):
    0.4 µs against 2.5 µs; a network (``/16``) is left to ``address``."""
    if "/" in value:
        return address(value, False)
    return _new_address(LazyIPv4Network(int.from_bytes(inet_aton(value), "big")), False, None)


def _dnat(to: str) -> Dnat:
    """``kp_values.nat_range``'s ``A:P`` (or ``A``) for the scan's dotted quad and port."""
    addr, _, port = to.partition(":")
    number = int(port) if port else None
    return _new_dnat((_new_range(addr, addr, number, number),), False, False)


_MASQUERADE = Jump("mark-for-masquerade")


class NotHot(ValueError):
    """A deferred line ``hot_rules`` cannot build as ``fast_lower`` would: ``ip saddr
    @set`` of a set not dynamic (or not there)."""


def endpoint_rules(
    table: str, chain: str, number: int, first: str, second: str, path: str
) -> tuple[Rule, Rule]:
    """An endpoint chain's two rules from its two whole lines (kp_lazy's ``_ENDPOINT``,
    vouched for by the scan): ``… ip saddr A jump mark-for-masquerade`` and ``… meta
    l4proto P dnat to A:P``, lines ``number`` and ``number + 1``. Each piece is cut at
    its known place, for 50,000 chains (~4 µs a chain, measured, against ~6 µs through
    ``_source`` and ``_dnat``)."""
    cut = 24 + len(chain)  # len("add rule ip kube-proxy ") + the name + " "
    one, two = first[cut:], second[cut:]
    source = one[9:-25]  # "ip saddr " A " jump mark-for-masquerade"
    _, _, protocol, _, _, to = two.split(" ")
    addr, _, port = to.partition(":")
    at = int(port) if port else None
    dnat = _new_dnat((_new_range(addr, addr, at, at),), False, False)
    host = _new_address(LazyIPv4Network(int.from_bytes(inet_aton(source), "big")), False, None)
    return (
        new_rule(table, chain, 1, _MASQUERADE, host, None, None, None, None, None, (), None,
                 new_location(path, number, one)),
        new_rule(table, chain, 2, dnat, None, None, _PROTOCOLS[protocol], None, None, None,
                 (), None, new_location(path, number + 1, two)),
    )  # fmt: skip


def endpoint_chains(
    lines: Iterator[str],
    number: int,
    chains: dict[str, NftChain],
    endpoints: dict[str, tuple[int, str, str]],
    ready: dict[str, Chain],
    path: str,
    stand_in: NftChain,
) -> int:
    """A whole load's run of endpoint chains (kp_lazy's ``_ENDPOINT``: ``add chain``, then
    ``ip saddr A jump mark-for-masquerade`` and ``meta l4proto P dnat to A:P``, three
    ``lines`` a chain from line ``number``): each one's NftChain, its rule lines (kept for
    ``Deferred``) and its nat Chain, ``endpoint_rules`` inlined (49,000 chains: ~15 ms
    less, measured). Each chain's NftChain is ``stand_in``, one for all (nothing reads an
    endpoint chain's; kp_lazy puts the chain's own back where one is read): ~25 ms less.
    The number of the line after the run; NotHot for a chain added again (its earlier
    lines are elsewhere)."""
    for head, first, second in zip(lines, lines, lines, strict=True):
        ep = head[24:]  # len("add chain ip kube-proxy ")
        if ep in chains:
            raise NotHot(ep)
        chains[ep] = stand_in
        endpoints[ep] = (number + 1, first, second)
        cut = 24 + len(ep)  # len("add rule ip kube-proxy ") + the name + " "
        one, two = first[cut:], second[cut:]
        protocol, start = _L4[two[13]]  # "meta l4proto " P " dnat to " A:P
        addr, _, port = two[start:].partition(":")
        at = int(port) if port else None
        dnat = _new_dnat((_new_range(addr, addr, at, at),), False, False)
        source = LazyIPv4Network(_from_bytes(inet_aton(one[9:-25])))  # big-endian
        rules = (
            new_rule("nat", ep, 1, _MASQUERADE, _new_address(source, False, None), None, None,
                     None, None, None, (), None, new_location(path, number + 1, one)),
            new_rule("nat", ep, 2, dnat, None, None, protocol, None, None, None,
                     (), None, new_location(path, number + 2, two)),
        )  # fmt: skip
        ready[ep] = new_chain(ep, rules, None, None, new_location(path, number, head))
        number += 3
    return number


def hot_rules(
    table: str,
    chain: str,
    text: str,
    runs: list[tuple[int, int, int]],
    cut: int,
    path: str,
    sets: dict[str, NftSet],
    n: int = 0,
) -> tuple[Rule, ...]:
    """The model rules of the chain's deferred lines: ``runs`` of them in ``text``
    (start, end, first line number), each line's statement after ``cut`` characters;
    numbered after ``n``."""
    rules: list[Rule] = []
    add = rules.append
    for start, end, first in runs:
        for number, line in enumerate(text[start + 1 : end].split("\n"), first):
            stmt = line[cut:]
            origin = new_location(path, number, stmt)
            if stmt[0] == "n":  # numgen random mod N vmap { 0 : goto A, 1 : goto B }
                brace = stmt.index("{")  # "… mod " N " vmap {"
                # keys and verdicts by one split of the items (no blank in a NAME): 10,000
                # lines' 50,000 buckets ~6 ms less than two partitions each (measured)
                parts = stmt[brace + 2 : -2].replace(", ", " : ").split(" : ")
                cascade = _cascade_of(stmt[18 : brace - 6], tuple(parts[0::2]))
                for matches, verdict in zip(cascade, parts[1::2], strict=True):
                    n += 1
                    target = _new_jump(verdict[5:], verdict[0] == "g")  # "jump X", "goto X"
                    add(new_rule(table, chain, n, target, None, None, None, None, None, None,
                                 matches, None, origin))  # fmt: skip
                continue
            w = stmt.split(" ")
            head = w[0]
            n += 1
            if head == "meta":  # meta l4proto tcp dnat to A:P
                add(new_rule(table, chain, n, _dnat(w[5]), None, None, _PROTOCOLS[w[2]], None,
                             None, None, (), None, origin))  # fmt: skip
            elif head == "ip":  # ip saddr A jump X / ip saddr @affinity goto X
                target = _new_jump(w[4], w[3] == "goto")
                value = w[2]
                if value[0] == "@":
                    found = sets.get(value[1:])
                    if found is None or not found.dynamic:  # kp_fast leaves it to the
                        raise NotHot(value)  # general reader (a whole load asks here)
                    recent = RecentMatch(RecentCommand.RCHECK, found.name, found.timeout, reap=True)
                    add(new_rule(table, chain, n, target, None, None, None, None, None, None,
                                 (recent,), None, origin))  # fmt: skip
                else:
                    add(new_rule(table, chain, n, target, _source(value), None, None, None,
                                 None, None, (), None, origin))  # fmt: skip
            elif head == "ct":  # ct state new jump X
                add(new_rule(table, chain, n, _new_jump(w[4], False), None, None, None, None,
                             None, None, _NEW, None, origin))  # fmt: skip
            elif head == "update":  # update @affinity { ip saddr }
                recent = RecentMatch(RecentCommand.SET, w[1][1:])
                add(new_rule(table, chain, n, None, None, None, None, None, None, None,
                             (recent,), None, origin))  # fmt: skip
            else:  # jump X / goto X
                add(new_rule(table, chain, n, _new_jump(w[1], head == "goto"), None, None,
                             None, None, None, None, (), None, origin))  # fmt: skip
    return tuple(rules)
