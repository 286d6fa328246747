"""A shortcut for the rule shapes kube-proxy writes tens of thousands of times.

    -A KUBE-SEP-X -s 10.1.2.3/32 -m comment --comment "ns/svc:p" -j KUBE-MARK-MASQ
    -A KUBE-SEP-X -p tcp -m comment --comment "ns/svc:p" -m tcp -j DNAT --to-destination …
    -A KUBE-SVC-X -m comment --comment "…" -m statistic --mode random --probability P -j …
    -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "…" -m tcp --dport 443 -j …
    -A KUBE-SERVICES -m comment --comment "…" -m tcp -p tcp -d 10.96.0.1 --dport 443 -j …

Why it exists: a dump of 10,000 services × 5 endpoints has ~226k lines, and the
general path (tokenize → getopt-like walk → per-module builders) costs ~20 µs a
rule: parse_save took 3.7 s where ``iptables-restore --test`` takes 1.3 s. Two
whole-line regexes, one for iptables-save's option order and one for the order
kube-proxy writes its restore input in, recognise those shapes; the model is
built straight from the groups, with every repeated value (Jump, CommentMatch,
PortMatch, Address, …) built once and shared — the model is immutable. A line
that does not match exactly, or whose values the general path would reject,
returns None and takes the general path, which stays the definition of record
(``tests/test_parse_fast.py`` checks both give equal models).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Container
from ipaddress import IPv4Network
from typing import cast

from kpsim.model import (
    Address,
    CommentMatch,
    Dnat,
    Jump,
    Match,
    NatRange,
    PortMatch,
    Protocol,
    StatisticMatch,
    StatisticMode,
    Target,
    probability_threshold,
)
from kpsim.parse.construct import constructor
from kpsim.parse.matches import TARGET_KEYWORDS, Loaded, build_target, port_range
from kpsim.parse.tokens import LineError, unescape

# ---------------------------------------------------------------- the shapes

_pack = socket.inet_pton
_INET = socket.AF_INET

#: A dotted quad exactly as ipaddress accepts it (no leading zeros), so no address the
#: regex lets through can fail later; a prefix length 0-32 without leading zeros.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_NET = _IP + r"(?:/(?:3[0-2]|[12]?\d))?"
#: Possessive (3.11+): a failing line fails fast, without backtracking. ASCII only: the
#: Unicode ``\w`` class costs 15% more over a whole dump (measured); any other name
#: simply takes the general path.
_NAME = r"[A-Za-z0-9_.-]++"
_PROTO = r"(tcp|udp|sctp)"
_COMMENT = r' -m comment --comment ("[^"\\]*+(?:\\.[^"\\]*+)*+"|[^ \t"!][^ \t"]*+)'
_STATISTIC = r" -m statistic --mode random --probability ([0-9.]++)"
_TARGET = rf"(?: -j DNAT --to-destination ({_IP})(?::(\d{{1,5}}))?| -j ({_NAME}))"
_SRC = rf"(?: (! )?-s ({_NET}))?"
_DST = rf"(?: (! )?-d ({_NET}))?"

#: iptables-save's order: core fields, then matches as loaded, then the target.
_SAVE_RE = re.compile(
    rf"-A ({_NAME}){_SRC}{_DST}(?: -p {_PROTO})?(?:{_COMMENT})?"
    rf"(?: -m {_PROTO}(?: --dport (\d++))?)?(?:{_STATISTIC})?{_TARGET}"
)
#: kube-proxy's restore input: comment, ``-m tcp -p tcp``, ``-d``, ``--dport``, ``-s``.
_RESTORE_RE = re.compile(
    rf"-A ({_NAME})(?:{_COMMENT})?(?: -m {_PROTO} -p {_PROTO})?{_DST}(?: --dport (\d++))?"
    rf"{_SRC}(?:{_STATISTIC})?{_TARGET}"
)

#: What ``shape`` returns: chain, target, source, destination, protocol, matches.
FastRule = tuple[str, Target, Address | None, Address | None, Protocol | None, tuple[Match, ...]]

_UNSEEN = object()  # a cache miss, where None is a cached "not this shortcut"

_new_address: Callable[..., Address] = constructor(Address)
_new_jump: Callable[..., Jump] = constructor(Jump)
_new_dnat: Callable[..., Dnat] = constructor(Dnat)
_new_nat_range: Callable[..., NatRange] = constructor(NatRange)


class FastRules:
    """Recognises the frequent shapes in one input; caches are per input because a
    target name's meaning depends on the chains that input declares."""

    def __init__(self, declared: Container[str]) -> None:
        self.declared = declared
        self._addresses: dict[str, Address] = {}
        self._comments: dict[str, CommentMatch] = {}  # by the word as written
        self._matches: dict[tuple[str | None, ...], tuple[Match, ...] | object | None] = {}
        self._targets: dict[str, Target] = {}
        self._protocols = {p: Protocol(p) for p in ("tcp", "udp", "sctp")}
        self._order = _RESTORE_RE, _SAVE_RE

    def shape(self, line: str) -> FastRule | None:
        """The rule of an ``-A`` line in one of the known shapes, else None."""
        first, second = self._order
        m = first.fullmatch(line) or second.fullmatch(line)
        if m is None:
            return None
        if m.re is not first:  # a file is in one order: try this one first from now on
            self._order = second, first
        if m.re is _RESTORE_RE:
            (chain, comment, module, proto, dneg, dst, dport, sneg, src, probability,
             dnat, dnat_port, jump) = m.groups()  # fmt: skip
        else:
            (chain, sneg, src, dneg, dst, proto, comment, module, dport, probability,
             dnat, dnat_port, jump) = m.groups()  # fmt: skip
        # A service's rules repeat one comment / port / probability combination: the
        # matches tuple is built once per combination and shared.
        key = (comment, module, dport, probability)
        cached = self._matches.get(key, _UNSEEN)
        if cached is _UNSEEN:
            cached = self._matches[key] = self._build_matches(comment, module, dport, probability)
        if cached is None:
            return None
        matches = cast(tuple[Match, ...], cached)
        if jump is not None:
            target = self._targets.get(jump) or self._target(jump)
        else:
            dnat_target = self._dnat(dnat, dnat_port)
            if dnat_target is None:
                return None
            target = dnat_target
        known = self._addresses.get
        source = destination = None
        if src is not None:
            source = known(src if sneg is None else "!" + src) or self._address(src, sneg)
        if dst is not None:
            destination = known(dst if dneg is None else "!" + dst) or self._address(dst, dneg)
        protocol = None if proto is None else self._protocols[proto]
        return chain, target, source, destination, protocol, matches

    def _build_matches(
        self, comment: str | None, module: str | None, dport: str | None, probability: str | None
    ) -> tuple[Match, ...] | None:
        """The matches of one combination, or None when the general path must decide."""
        matches: list[Match] = []
        if comment is not None:
            found = self._comments.get(comment) or self._comment(comment)
            if found is None:
                return None
            matches.append(found)
        if module is not None:
            port = self._port(module, dport)
            if port is None:
                return None
            matches.append(port)
        elif dport is not None:  # --dport with no module to own it: the general path decides
            return None
        if probability is not None:
            statistic = self._statistic(probability)
            if statistic is None:
                return None
            matches.append(statistic)
        return tuple(matches)

    # -- values, each built as the general path builds it and shared when repeated

    def _address(self, text: str, negated: str | None) -> Address:
        """Most addresses occur once (pod IPs), so the network is built without
        parsing text twice: the regex has already checked the dotted quad."""
        key = text if negated is None else "!" + text
        found = self._addresses.get(key)
        if found is None:
            ip, slash, prefix = text.partition("/")
            packed = _pack(_INET, ip)
            net = IPv4Network((packed, int(prefix)), strict=False) if slash else IPv4Network(packed)
            found = self._addresses[key] = _new_address(net, negated is not None, None)
        return found

    def _comment(self, word: str) -> CommentMatch | None:
        text = unescape(word[1:-1]) if word[0] == '"' else word
        if text == "!":  # once unquoted it is a negation: the general path decides
            return None
        found = self._comments[word] = CommentMatch(text)
        return found

    def _port(self, module: str, dport: str | None) -> PortMatch | None:
        try:
            ports = None if dport is None else port_range(dport, 0)
        except LineError:  # e.g. a port above 65535: the general path reports it
            return None
        return PortMatch(module, ports)

    def _statistic(self, text: str) -> StatisticMatch | None:
        try:
            threshold = probability_threshold(text)
        except ValueError:  # e.g. 1.5 or 0.1.2: the general path reports it
            return None
        return StatisticMatch(StatisticMode.RANDOM, threshold)

    def _target(self, name: str) -> Target:
        if name in TARGET_KEYWORDS:  # ACCEPT, MASQUERADE, …, or a chain of that name
            found = build_target(Loaded(name, 0), False, self.declared, False)
        else:
            found = _new_jump(name, False)
        self._targets[name] = found
        return found

    def _dnat(self, ip: str, port: str | None) -> Target | None:
        """``ip[:port]``: the regex's dotted quad is already in canonical form."""
        if "DNAT" in self.declared:  # then -j DNAT is a jump and its options are opaque
            return None
        number = None if port is None else int(port)
        if number is not None and number > 0xFFFF:
            return None
        return _new_dnat((_new_nat_range(ip, None, number, None),), False, False)
