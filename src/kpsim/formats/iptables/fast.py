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
from _socket import AF_INET, inet_pton  # socket's own: ``socket`` costs ~3 ms to import
from collections.abc import Callable, Container
from ipaddress import IPv4Network
from typing import cast

from kpsim.formats.common import ChainDraft
from kpsim.formats.iptables.construct import constructor, new_location, new_rule
from kpsim.formats.iptables.lazynet import LazyIPv4Network
from kpsim.formats.iptables.line_shapes import line_re
from kpsim.formats.iptables.options import Loaded, port_range
from kpsim.formats.iptables.targets import TARGET_KEYWORDS, build_target
from kpsim.formats.iptables.tokens import LineError, unescape
from kpsim.formats.numbers import U32, BadNumber, decimal, probability
from kpsim.model import (
    Address,
    AddrTypeMatch,
    CommentMatch,
    Dnat,
    Jump,
    Match,
    NatRange,
    PortMatch,
    Protocol,
    RecentCommand,
    RecentMatch,
    Rule,
    StatisticMatch,
    StatisticMode,
    Target,
)

# ---------------------------------------------------------------- the shapes

_pack = inet_pton
_from_bytes = int.from_bytes  # big-endian, as inet_pton packs
_INET = AF_INET

# the two shapes (``line_shapes``, which the scan's child reads a sketch with too)
_COMMENT_LONGEST = 1024
_RESTORE_RE = line_re(0)
_SAVE_RE = line_re(1)

#: What ``shape`` returns: chain, target, source, destination, protocol, matches.
FastRule = tuple[str, Target, Address | None, Address | None, Protocol | None, tuple[Match, ...]]

_new_address: Callable[..., Address] = constructor(Address)
_new_jump: Callable[..., Jump] = constructor(Jump)
_new_dnat: Callable[..., Dnat] = constructor(Dnat)
_new_nat_range: Callable[..., NatRange] = constructor(NatRange)
_new_recent: Callable[..., RecentMatch] = constructor(RecentMatch)
_new_comment: Callable[[str], CommentMatch] = constructor(CommentMatch)
_LOCAL_SRC = AddrTypeMatch(src_type=("LOCAL",))
_LOCAL_DST = AddrTypeMatch(dst_type=("LOCAL",))


def _recent(command: str, seconds: str | None, name: str) -> RecentMatch | None:
    """The ``RecentMatch`` the general path builds: the default mask and side; None for
    seconds past 32 bits (the general path reports them)."""
    if seconds is None:
        return _new_recent(RecentCommand.SET, name, None, False, None, False, None, "source", False)
    count = decimal(seconds, U32)
    if count is None:
        return None
    return _new_recent(RecentCommand.RCHECK, name, count, True, None, False, None, "source", False)


class FastRules:
    """Recognises the frequent shapes in one input; caches are per input because a
    target name's meaning depends on the chains that input declares."""

    def __init__(self, declared: Container[str]) -> None:
        self.declared = declared
        self._addresses: dict[str, Address] = {}
        self._comments: dict[str, CommentMatch] = {}  # by the word as written
        self._ports: dict[tuple[str, str | None], PortMatch] = {}
        self._matches: dict[tuple[str | None, ...], tuple[Match, ...] | None] = {}
        self._targets: dict[str, Target] = {}
        self._protocols = {p: Protocol(p) for p in ("tcp", "udp", "sctp")}
        self._order: tuple[re.Pattern[str], re.Pattern[str]] = _RESTORE_RE, _SAVE_RE

    def shape(self, line: str) -> FastRule | None:
        """The rule of one ``-A`` line in a known shape, else None (for tests and tools;
        the parser calls ``take``, which builds the same values)."""
        taken: dict[str, ChainDraft] = {}
        if self.take([line], 0, "t", "p", taken) == 0:
            return None
        (rule,) = next(iter(taken.values())).rules
        return (rule.chain, cast(Target, rule.target), rule.source, rule.destination,
                rule.protocol, rule.matches)  # fmt: skip

    def take(
        self,
        lines: list[str],
        at: int,
        table: str,
        path: str,
        drafts: dict[str, ChainDraft],
        numbers: list[int] | None = None,
    ) -> int:
        """Build the rules of ``lines[at:]`` while they are ``-A`` lines in a known
        shape, each appended to its chain's draft in ``drafts`` (the table's chains,
        looked up once per run of lines of one chain); return the index of the first
        line not taken. ``lines[i]`` is line ``i + 1`` of the input, or ``numbers[i]``
        (``lazy`` hands in one chain's lines, from all over the input).

        The hot loop of a big dump: one function with its state in locals, because a
        call and a returned tuple per line cost 0.2 s on 165k rules (measured)."""
        first_re, second_re = self._order
        first, second = first_re.fullmatch, second_re.fullmatch
        matches_of = self._matches.get
        target_of = self._targets.get
        address_of = self._addresses.get
        protocols = self._protocols
        chain_name = ""
        rules: list[Rule] = []
        end = len(lines)
        while at < end:
            line = lines[at]
            m = first(line) or second(line)
            if m is None:
                break
            if m.re is _RESTORE_RE:
                (chain, comment, recent_name, recent, seconds, local, module, proto, dneg, dst,
                 dport, sneg, src, probability, dnat, dnat_port, jump) = m.groups()  # fmt: skip
            else:
                (chain, sneg, src, dneg, dst, proto, comment, recent, seconds, recent_name,
                 local, module, dport, probability, dnat, dnat_port, jump) = m.groups()  # fmt: skip
            if m.re is not first_re:  # a file is in one order: try this one first from now on
                first_re, second_re = self._order = second_re, first_re
                first, second = second, first
            # A service's rules repeat one comment / port / probability combination: the
            # matches tuple is built once per combination and shared.
            key = (comment, local, module, dport, probability)
            matches = matches_of(key)
            if matches is None:
                if key in self._matches:  # cached: not this shortcut
                    break
                matches = self._build_matches(comment, local, module, dport, probability)
                self._matches[key] = matches
                if matches is None:
                    break
            if recent is not None:  # one per endpoint: built per line, after the comment
                at_recent = 0 if comment is None else 1
                affinity = _recent(recent, seconds, cast(str, recent_name))
                if affinity is None:
                    break
                matches = (*matches[:at_recent], affinity, *matches[at_recent:])
            target: Target | None
            if jump is not None:
                target = target_of(jump) or self._target(jump)
            elif (target := self._dnat(dnat, dnat_port)) is None:
                break
            source = destination = None
            if src is not None:
                key_s = src if sneg is None else "!" + src
                source = address_of(key_s) or self._address(src, sneg, lazy=True)
            if dst is not None:
                key_d = dst if dneg is None else "!" + dst
                destination = address_of(key_d) or self._address(dst, dneg, lazy=False)
            if chain != chain_name:
                draft = drafts.get(chain)
                if draft is None:
                    draft = drafts[chain] = ChainDraft(chain)
                chain_name, rules = draft.name, draft.rules  # one name string per chain
            at += 1
            rules.append(
                new_rule(table, chain_name, len(rules) + 1, target, source, destination,
                         proto and protocols[proto], None, None, None, matches, None,
                         new_location(path, numbers[at - 1] if numbers else at, line))
            )  # fmt: skip
        return at

    def _build_matches(
        self,
        comment: str | None,
        local: str | None,
        module: str | None,
        dport: str | None,
        probability: str | None,
    ) -> tuple[Match, ...] | None:
        """The matches of one combination, or None when the general path must decide."""
        matches: list[Match] = []
        if comment is not None:
            found = self._comments.get(comment) or self._comment(comment)
            if found is None:
                return None
            matches.append(found)
        if local is not None:  # the general path's AddrTypeMatch of ``--src/dst-type LOCAL``
            matches.append(_LOCAL_SRC if local == "src" else _LOCAL_DST)
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

    def _address(self, text: str, negated: str | None, *, lazy: bool) -> Address:
        """Most sources occur once (a KUBE-SEP chain's pod IP: 50,000 in a
        10,000-service dump) and ``show`` never reads them, so a ``lazy`` host network
        is built when first used (``parse.lazynet``); destinations (cluster IPs) are
        all read by ``show``, so they are built now, from an int: 1.1 µs, against
        4.8 µs from text (measured); a prefix from (int, length), 2.2 µs."""
        key = text if negated is None else "!" + text
        found = self._addresses.get(key)
        if found is None:
            ip, slash, prefix = text.partition("/")
            number = _from_bytes(_pack(_INET, ip))
            net: IPv4Network
            if slash and prefix != "32":  # 0-32, ASCII: the regex's grammar
                net = IPv4Network((number, int(prefix)), strict=False)
            elif lazy:
                net = LazyIPv4Network(number)
            else:
                net = IPv4Network(number)
            found = self._addresses[key] = _new_address(net, negated is not None, None)
        return found

    def _comment(self, word: str) -> CommentMatch | None:
        """Nearly every comment names one service (10,000 in a 10,000-service dump)."""
        text = unescape(word[1:-1]) if word[0] == '"' else word
        if text == "!" or len(word) > _COMMENT_LONGEST:  # the general path decides
            return None
        found = self._comments[word] = _new_comment(text)
        return found

    def _port(self, module: str, dport: str | None) -> PortMatch | None:
        """Shared per module and port: a service's comment is its own, its port seldom."""
        key = (module, dport)
        found = self._ports.get(key)
        if found is None:
            try:
                ports = None if dport is None else port_range(dport, 0)
            except LineError:  # e.g. a port above 65535: the general path reports it
                return None
            found = self._ports[key] = PortMatch(module, ports)
        return found

    def _statistic(self, text: str) -> StatisticMatch | None:
        try:
            threshold = probability(text)
        except BadNumber:  # e.g. 1.5 or 0.1.2: the general path reports it
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
        number = None if port is None else int(port)  # 1-5 ASCII digits: the regex's
        if number is not None and number > 0xFFFF:
            return None
        return _new_dnat((_new_nat_range(ip, None, number, None),), False, False)
