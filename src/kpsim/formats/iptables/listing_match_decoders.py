"""Decode the words each match module prints in ``iptables -L`` into typed matches.

    /* kube-system/kube-dns:dns */ tcp dpt:53 statistic mode random probability 0.5000000000
    └ CommentMatch ────────────────┘ └PortMatch┘ └ StatisticMatch(threshold=1073741824) ──┘

``_MATCHES`` pairs one anchored pattern per module with the builder of its match, in the
order ``listing_matches.decode`` tries them at each word.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kpsim.formats.iptables import names
from kpsim.formats.numbers import U8, U32, probability, read_decimal, read_hex
from kpsim.model import (
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConntrackMatch,
    IPRangeMatch,
    MarkMatch,
    Match,
    MultiportMatch,
    NfacctMatch,
    Option,
    PhysdevMatch,
    PortMatch,
    RecentCommand,
    RecentMatch,
    SetMatch,
    StatisticMatch,
    StatisticMode,
)

FULL = 0xFFFFFFFF
HEX = r"0x[0-9a-fA-F]+"

_TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10),
              ("URG", 0x20), ("ECE", 0x40), ("CWR", 0x80))  # fmt: skip


_MatchBuilder = Callable[[re.Match[str]], Match]


def _comment(m: re.Match[str]) -> Match:
    return CommentMatch(m.group(1))


def _flag_names(text: str) -> str:
    """``0x17`` or ``FIN,SYN,RST,ACK`` → the names iptables-save prints."""
    if not text.lower().startswith("0x"):
        return text
    value = read_hex(text, U8, "TCP flags")
    if value == 0:
        return "NONE"
    return ",".join(name for name, bit in _TCP_FLAGS if value & bit)


def _ports(m: re.Match[str]) -> Match:
    proto = m.group("proto")
    dport = sport = None
    dneg = sneg = False
    extra: list[Option] = []
    for item in m.group("opts").split():
        key, _, value = item.partition(":") if ":" in item else item.partition("=")
        neg = value.startswith("!")
        value = value.lstrip("!")
        if key in ("dpt", "dpts"):
            dport, dneg = names.port(value), neg
        elif key in ("spt", "spts"):
            sport, sneg = names.port(value), neg
        elif key == "option":
            extra.append(Option("--tcp-option", (value,), neg))
        elif key == "flags":
            mask, _, comp = value.partition("/")
            extra.append(Option("--tcp-flags", (_flag_names(mask), _flag_names(comp)), neg))
    return PortMatch(proto, dport, dneg, sport, sneg, tuple(extra))


def _multiport(m: re.Match[str]) -> Match:
    ports = tuple(names.port(p) for p in m.group("list").split(","))
    return MultiportMatch(m.group("dir"), ports, bool(m.group("neg")))


def _statistic_random(m: re.Match[str]) -> Match:
    threshold = probability(m.group("p"))
    return StatisticMatch(StatisticMode.RANDOM, threshold=threshold, negated=bool(m.group("neg")))


def _statistic_nth(m: re.Match[str]) -> Match:
    packet = read_decimal(m.group("packet"), U32, "packet") if m.group("packet") else 0
    every, neg = read_decimal(m.group("every"), U32, "every"), bool(m.group("neg"))
    return StatisticMatch(StatisticMode.NTH, every=every, packet=packet, negated=neg)


#: The default (all-ones) recent mask, which the model keeps as None.
_FULL_MASKS = (None, "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")

_RECENT_COMMANDS = {
    "SET": RecentCommand.SET,
    "CHECK": RecentCommand.RCHECK,
    "UPDATE": RecentCommand.UPDATE,
    "REMOVE": RecentCommand.REMOVE,
}


def _recent(m: re.Match[str]) -> Match:
    return RecentMatch(
        command=_RECENT_COMMANDS[m.group("cmd")],
        name=m.group("name"),
        seconds=read_decimal(m.group("seconds"), U32, "seconds") if m.group("seconds") else None,
        reap=bool(m.group("reap")),
        hitcount=read_decimal(m.group("hits"), U32, "hit_count") if m.group("hits") else None,
        rttl=bool(m.group("ttl")),
        mask=None if m.group("mask") in _FULL_MASKS else m.group("mask"),
        side=m.group("side"),
        negated=bool(m.group("neg")),
    )


def _addrtype(m: re.Match[str]) -> Match:
    src = m.group("src")
    dst = m.group("dst")
    return AddrTypeMatch(
        src_type=tuple(src.split(",")) if src else (),
        src_negated=bool(m.group("sneg")),
        dst_type=tuple(dst.split(",")) if dst else (),
        dst_negated=bool(m.group("dneg")),
        limit_iface_in=bool(m.group("lin")),
        limit_iface_out=bool(m.group("lout")),
    )


def _value_mask(m: re.Match[str]) -> tuple[int, int, bool]:
    mask = read_hex(m.group("mask"), U32, "mask") if m.group("mask") else FULL
    return read_hex(m.group("value"), U32, "mark"), mask, bool(m.group("neg"))


def _mark(m: re.Match[str]) -> Match:
    return MarkMatch(*_value_mask(m))


def _connmark(m: re.Match[str]) -> Match:
    return ConnmarkMatch(*_value_mask(m))


def _ctstate(m: re.Match[str]) -> Match:
    states, negated = tuple(m.group("states").split(",")), bool(m.group("neg"))
    module = "state" if m.group("module") == "state" else "conntrack"  # -m state prints "state"
    return ConntrackMatch(states, negated, module=module)


def _set(m: re.Match[str]) -> Match:
    return SetMatch(m.group("name"), tuple(m.group("flags").split(",")), bool(m.group("neg")))


def _physdev(m: re.Match[str]) -> Match:
    options: list[Option] = []
    neg = False
    for word in m.group("opts").split():
        if word == "!":
            neg = True
        elif word.startswith("--"):
            options.append(Option(word, (), neg))
            neg = False
        elif options:
            last = options[-1]
            options[-1] = Option(last.name, (*last.args, word), last.negated)
    return PhysdevMatch(tuple(options))


def _nfacct(m: re.Match[str]) -> Match:
    return NfacctMatch(m.group(1))


def _iprange(m: re.Match[str]) -> Match:
    src = (m.group("slo"), m.group("shi")) if m.group("slo") else None
    dst = (m.group("dlo"), m.group("dhi")) if m.group("dlo") else None
    return IPRangeMatch(src, bool(m.group("sneg")), dst, bool(m.group("dneg")))


_END = r"(?=\s|$)"
_MATCHES: tuple[tuple[re.Pattern[str], _MatchBuilder], ...] = tuple(
    (re.compile(pattern + _END), builder)
    for pattern, builder in (
        # a comment is at most 255 characters (XT_MAX_COMMENT_LEN): no scan of a whole
        # line for each "/*" in it
        (r"/\* (.{0,255}?) \*/", _comment),
        (
            r"(?P<proto>tcp|udp|sctp|dccp)(?P<opts>(?:\s+(?:(?:spts?|dpts?):!?\S+"
            r"|option=!?[0-9]+|flags:!?\S+))*)",
            _ports,
        ),
        (r"multiport (?P<dir>sports|dports|ports)\s+(?P<neg>!)?\s*(?P<list>\S+)", _multiport),
        (
            r"statistic mode random(?P<neg> !)? probability (?P<p>[0-9]+(?:\.[0-9]*)?)",
            _statistic_random,
        ),
        (
            r"statistic mode nth(?P<neg> !)? every (?P<every>[0-9]+)"
            r"(?: packet (?P<packet>[0-9]+))?",
            _statistic_nth,
        ),
        (
            r"(?P<neg>! )?recent: (?P<cmd>SET|CHECK|UPDATE|REMOVE)"
            r"(?: seconds: (?P<seconds>[0-9]+))?(?P<reap> reap)?(?: hit_count: (?P<hits>[0-9]+))?"
            r"(?P<ttl> TTL-Match)?"
            r" name: (?P<name>\S+) side: (?P<side>source|dest)(?: mask: (?P<mask>\S+))?",
            _recent,
        ),
        (
            r"ADDRTYPE match(?= )(?: src-type ?(?P<sneg>!)?(?P<src>[A-Z,]+))?"
            r"(?: dst-type ?(?P<dneg>!)?(?P<dst>[A-Z,]+))?(?P<lin> limit-in)?(?P<lout> limit-out)?",
            _addrtype,
        ),
        (rf"(?:mark|MARK) match\s+(?P<neg>!\s*)?(?P<value>{HEX})(?:/(?P<mask>{HEX}))?", _mark),
        (
            rf"(?:connmark|CONNMARK) match\s+(?P<neg>!\s*)?(?P<value>{HEX})(?:/(?P<mask>{HEX}))?",
            _connmark,
        ),
        (r"(?P<neg>! )?(?P<module>ctstate|state) (?P<states>[A-Z,]+)", _ctstate),
        (r"(?P<neg>! )?match-set (?P<name>\S+) (?P<flags>(?:src|dst)(?:,(?:src|dst))*)", _set),
        (
            r"PHYSDEV match(?P<opts>(?:\s+(?:!\s+)?--physdev-(?:in|out|is-in|is-out|is-bridged)"
            r"(?:\s+(?!!|--)\S+)?)+)",
            _physdev,
        ),
        (r"nfacct-name\s+(\S+)", _nfacct),
        (
            r"(?=source IP range|destination IP range)"
            r"(?:source IP range (?P<sneg>! )?(?P<slo>[0-9.]+)-(?P<shi>[0-9.]+))?"
            r"(?: ?destination IP range (?P<dneg>! )?(?P<dlo>[0-9.]+)-(?P<dhi>[0-9.]+))?",
            _iprange,
        ),
    )
)
