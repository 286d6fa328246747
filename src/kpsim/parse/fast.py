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
from typing import Any

from kpsim.model import (
    Address,
    CommentMatch,
    Dnat,
    Jump,
    Match,
    NatRange,
    PortMatch,
    Protocol,
    Rule,
    SourceLocation,
    StatisticMatch,
    StatisticMode,
    Target,
    probability_threshold,
)
from kpsim.parse.matches import TARGET_KEYWORDS, Loaded, build_target, port_range
from kpsim.parse.tokens import LineError, unescape

# ---------------------------------------------------------------- cheap construction


def _constructor(cls: type) -> Callable[..., Any]:
    """A positional constructor for the frozen slots dataclass ``cls``, twice as fast.

    The generated ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__``: 1.5 µs for a ``Rule`` (0.7 µs even setting the slot
    descriptors directly), and a big dump has 165k rules and 226k locations. A
    plain twin class with the very same slots is built at 0.26 µs, then given
    ``cls`` as its class (allowed: the layouts are identical). The result is an
    ordinary ``cls`` instance, still frozen, equal and hashed as ``cls(*args)``;
    ``tests/test_parse_fast.py`` checks that for every class built this way."""
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    params = ", ".join(names)
    source = (
        f"class Twin:\n    __slots__ = {names!r}\n"
        f"    def __init__(self, {params}):\n"
        + "".join(f"        self.{n} = {n}\n" for n in names)
        + f"def new({params}):\n    obj = Twin({params})\n    obj.__class__ = cls\n    return obj\n"
    )
    scope: dict[str, Any] = {"cls": cls}
    exec(source, scope)  # generated from the class's own slot names only
    new: Callable[..., Any] = scope["new"]
    return new


#: ``new_rule(table, chain, number, target, source, destination, protocol,
#: in_interface, out_interface, fragment, matches, counters, origin)``
new_rule: Callable[..., Rule] = _constructor(Rule)
#: ``new_location(path, line, text)``
new_location: Callable[[str, int, str], SourceLocation] = _constructor(SourceLocation)


# ---------------------------------------------------------------- the shapes

_pack = socket.inet_pton
_INET = socket.AF_INET

#: A dotted quad exactly as ipaddress accepts it (no leading zeros), so no address the
#: regex lets through can fail later; a prefix length 0-32 without leading zeros.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_NET = _IP + r"(?:/(?:3[0-2]|[12]?\d))?"
_NAME = r"[\w.-]++"  # possessive (3.11+): a failing line fails fast, without backtracking
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

_new_address: Callable[..., Address] = _constructor(Address)
_new_jump: Callable[..., Jump] = _constructor(Jump)
_new_dnat: Callable[..., Dnat] = _constructor(Dnat)
_new_nat_range: Callable[..., NatRange] = _constructor(NatRange)


class FastRules:
    """Recognises the frequent shapes in one input; caches are per input because a
    target name's meaning depends on the chains that input declares."""

    def __init__(self, declared: Container[str]) -> None:
        self.declared = declared
        self._addresses: dict[str, Address] = {}
        self._comments: dict[str, CommentMatch] = {}  # by the word as written
        self._ports: dict[tuple[str, str | None], PortMatch | None] = {}
        self._statistics: dict[str, StatisticMatch | None] = {}
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
        matches: list[Match] = []
        if comment is not None:
            found = self._comments.get(comment) or self._comment(comment)
            if found is None:
                return None
            matches.append(found)
        if module is not None:
            port = self._ports.get((module, dport)) or self._port(module, dport)
            if port is None:
                return None
            matches.append(port)
        elif dport is not None:  # --dport with no module to own it: the general path decides
            return None
        if probability is not None:
            statistic = self._statistics.get(probability) or self._statistic(probability)
            if statistic is None:
                return None
            matches.append(statistic)
        if dnat is not None:
            target = self._dnat(dnat, dnat_port)
            if target is None:
                return None
        else:
            target = self._targets.get(jump) or self._target(jump)
        return (
            chain,
            target,
            None if src is None else self._address(src, sneg),
            None if dst is None else self._address(dst, dneg),
            None if proto is None else self._protocols[proto],
            tuple(matches),
        )

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
        found = self._ports[(module, dport)] = PortMatch(module, ports)
        return found

    def _statistic(self, text: str) -> StatisticMatch | None:
        try:
            threshold = probability_threshold(text)
        except ValueError:  # e.g. 1.5 or 0.1.2: the general path reports it
            return None
        found = self._statistics[text] = StatisticMatch(StatisticMode.RANDOM, threshold)
        return found

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
