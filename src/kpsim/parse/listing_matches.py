"""Decode the free text ``iptables -L`` prints after the destination column.

    /* kube-system/kube-dns:dns */ tcp dpt:53 statistic mode random probability 0.5…  tcp to:…
    └ CommentMatch ────────────────┘ └PortMatch┘ └ StatisticMatch ──────────────────┘ └─ target

Each match module prints its own words, in rule order, then the target prints its
own. The words are decoded into the same typed objects the save parser builds, with
the kernel's values (a probability becomes ``threshold``, ``MARK or 0x4000`` becomes
value/mask 0x4000/0x4000). Text no decoder claims is kept as ``OpaqueMatch(module="?")``
(or the opaque target's text), never dropped or guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from kpsim.model import (
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConnmarkMode,
    ConnmarkTarget,
    ConntrackMatch,
    Ct,
    Dnat,
    Jump,
    Log,
    MarkMatch,
    MarkTarget,
    Masquerade,
    Match,
    MultiportMatch,
    NatRange,
    NfacctMatch,
    OpaqueMatch,
    OpaqueTarget,
    Option,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentCommand,
    RecentMatch,
    Redirect,
    Reject,
    SetMatch,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Target,
    Verdict,
    probability_threshold,
)
from kpsim.parse import names

FULL = 0xFFFFFFFF
HEX = r"0x[0-9a-fA-F]+"

#: Target extensions a listing can name; any other target word is a chain (Jump).
KNOWN_TARGETS = frozenset(
    (
        "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNMARK", "CONNSECMARK", "CT", "DNAT",
        "DNPT", "DSCP", "ECN", "HL", "HMARK", "IDLETIMER", "LED", "LOG", "MARK", "MASQUERADE",
        "MIRROR", "NETMAP", "NFLOG", "NFQUEUE", "NOTRACK", "RATEEST", "REDIRECT", "REJECT",
        "SAME", "SECMARK", "SET", "SNAT", "SNPT", "SYNPROXY", "TCPMSS", "TCPOPTSTRIP", "TEE",
        "TOS", "TPROXY", "TRACE", "TTL", "ULOG",
    )
)  # fmt: skip

#: Words that start a decoder: an undecodable chunk starting with one is a damaged
#: (e.g. cut) rule, worth a diagnostic; other unknown words are just unmodelled modules.
_KNOWN_STARTS = (
    "/*", "statistic", "recent:", "to:", "MARK", "CONNMARK", "mark match", "connmark match",
    "multiport", "ADDRTYPE", "masq", "redir", "reject-with", "match-set", "ctstate",
    "spt:", "dpt:", "spts:", "dpts:",
)  # fmt: skip

_TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10),
              ("URG", 0x20), ("ECE", 0x40), ("CWR", 0x80))  # fmt: skip
_LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warn": 4,
               "warning": 4, "notice": 5, "info": 6, "debug": 7, "panic": 0}  # fmt: skip
_LOG_FLAGS = (("tcp-sequence", 0x01), ("tcp-options", 0x02), ("ip-options", 0x04),
              ("uid", 0x08), ("macdecode", 0x20))  # fmt: skip
_LOG_DEFAULT_LEVEL = 4  # iptables-save omits --log-level 4, so the model keeps None


@dataclass(frozen=True, slots=True)
class Decoded:
    """Typed matches and target of one rule, plus what could not be decoded."""

    matches: tuple[Match, ...]
    target: Target | None
    problems: tuple[tuple[int, str], ...] = ()  # (0-based offset in the text, message)
    opaque: int = 0  # how many chunks were kept opaque


# ---------------------------------------------------------------- match decoders

_MatchBuilder = Callable[[re.Match[str]], Match]


def _comment(m: re.Match[str]) -> Match:
    return CommentMatch(m.group(1))


def _flag_names(text: str) -> str:
    """``0x17`` or ``FIN,SYN,RST,ACK`` → the names iptables-save prints."""
    if not text.lower().startswith("0x"):
        return text
    value = int(text, 16)
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
    threshold = probability_threshold(m.group("p"))
    return StatisticMatch(StatisticMode.RANDOM, threshold=threshold, negated=bool(m.group("neg")))


def _statistic_nth(m: re.Match[str]) -> Match:
    packet = int(m.group("packet")) if m.group("packet") else 0
    every, neg = int(m.group("every")), bool(m.group("neg"))
    return StatisticMatch(StatisticMode.NTH, every=every, packet=packet, negated=neg)


#: The default (all-ones) recent mask, which the model keeps as None.
_FULL_MASKS = (None, "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
#: REJECT's default, which the model keeps as None.
_DEFAULT_REJECT = ("icmp-port-unreachable", "icmp6-port-unreachable")

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
        seconds=int(m.group("seconds")) if m.group("seconds") else None,
        reap=bool(m.group("reap")),
        hitcount=int(m.group("hits")) if m.group("hits") else None,
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
    mask = int(m.group("mask"), 16) if m.group("mask") else FULL
    return int(m.group("value"), 16), mask, bool(m.group("neg"))


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


_END = r"(?=\s|$)"
_MATCHES: tuple[tuple[re.Pattern[str], _MatchBuilder], ...] = tuple(
    (re.compile(pattern + _END), builder)
    for pattern, builder in (
        (r"/\* (.*?) \*/", _comment),
        (
            r"(?P<proto>tcp|udp|sctp|dccp)(?P<opts>(?:\s+(?:(?:spts?|dpts?):!?\S+"
            r"|option=!?\d+|flags:!?\S+))*)",
            _ports,
        ),
        (r"multiport (?P<dir>sports|dports|ports)\s+(?P<neg>!)?\s*(?P<list>\S+)", _multiport),
        (
            r"statistic mode random(?P<neg> !)? probability (?P<p>\d+(?:\.\d*)?)",
            _statistic_random,
        ),
        (
            r"statistic mode nth(?P<neg> !)? every (?P<every>\d+)(?: packet (?P<packet>\d+))?",
            _statistic_nth,
        ),
        (
            r"(?P<neg>! )?recent: (?P<cmd>SET|CHECK|UPDATE|REMOVE)(?: seconds: (?P<seconds>\d+))?"
            r"(?P<reap> reap)?(?: hit_count: (?P<hits>\d+))?(?P<ttl> TTL-Match)?"
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
    )
)


# ---------------------------------------------------------------- target decoders


def _nat_range(text: str) -> NatRange:
    """``10.0.0.1-10.0.0.2:80-81``, ``[fd00::1]:80``, ``:80`` → NatRange."""
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        ports = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") > 1:  # bare IPv6 address, no port
        addr, ports = text, ""
    else:
        addr, _, ports = text.partition(":")
    lo, _, hi = addr.partition("-")
    plo, _, phi = ports.partition("-")
    # The upper bounds stay None unless a range was printed, as the save parser does.
    return NatRange(
        addr_lo=lo or None,
        addr_hi=hi or None,
        port_lo=int(plo) if plo else None,
        port_hi=int(phi) if phi else None,
    )


def _flags(text: str) -> set[str]:
    return set(text.split())


def _dnat(m: re.Match[str]) -> Target:
    flags = _flags(m.group("flags") or "")
    to = tuple(_nat_range(t) for t in re.findall(r"to:(\S+)", m.group("to")))
    return Dnat(to, random="random" in flags, persistent="persistent" in flags)


def _snat(m: re.Match[str]) -> Target:
    flags = _flags(m.group("flags") or "")
    to = tuple(_nat_range(t) for t in re.findall(r"to:(\S+)", m.group("to")))
    return Snat(to, "random" in flags, "random-fully" in flags, "persistent" in flags)


def _port_pair(lo: str | None, hi: str | None) -> PortRange | None:
    if lo is None:
        return None
    return PortRange(int(lo), int(hi or lo))


def _masquerade(m: re.Match[str]) -> Target:
    flags = _flags(m.group("flags") or "")
    ports = _port_pair(m.group("lo"), m.group("hi"))
    return Masquerade(ports, "random" in flags, "random-fully" in flags)


def _redirect(m: re.Match[str]) -> Target:
    return Redirect(_port_pair(m.group("lo"), m.group("hi")), bool(m.group("random")))


def _mark_op(op: str, value: int, mask: int | None) -> tuple[int, int]:
    """The kernel's value/mask for each way MARK/CONNMARK prints its operation."""
    if op == "or":
        return value, value
    if op == "xor":
        return value, 0
    if op == "and":
        return 0, ~value & FULL
    if op == "set" and mask is not None:  # revision-0 ``set v/m``
        return value, mask
    if op == "set":
        return value, FULL
    return value, FULL if mask is None else mask  # xset v/m


def _mark_target(m: re.Match[str]) -> Target:
    mask = int(m.group("mask"), 16) if m.group("mask") else None
    return MarkTarget(*_mark_op(m.group("op"), int(m.group("value"), 16), mask))


def _connmark_target(m: re.Match[str]) -> Target:
    """CONNMARK prints save/restore with their masks, or the set operation like MARK."""
    mode = m.group("mode")
    if mode is not None:
        nf = ct = FULL
        if m.group("both"):
            nf = ct = int(m.group("both"), 16)
        if m.group("nf"):
            nf = int(m.group("nf"), 16)
        if m.group("ct"):
            ct = int(m.group("ct"), 16)
        if m.group("nf2"):
            nf = int(m.group("nf2"), 16)
        if m.group("ct2"):
            ct = int(m.group("ct2"), 16)
        cmode = ConnmarkMode.SAVE if mode == "save" else ConnmarkMode.RESTORE
        return ConnmarkTarget(cmode, nfmask=nf, ctmask=ct)
    mask = int(m.group("mask"), 16) if m.group("mask") else None
    value, vmask = _mark_op(m.group("op"), int(m.group("value"), 16), mask)
    return ConnmarkTarget(ConnmarkMode.SET, value=value, mask=vmask)


def _log(m: re.Match[str]) -> Target:
    level_text = m.group("level")
    level = int(level_text) if level_text.isdigit() else _LOG_LEVELS.get(level_text)
    flags = int(m.group("flags")) if m.group("flags") else 0
    for word in (m.group("words") or "").split():
        flags |= dict(_LOG_FLAGS).get(word, 0)
    extra = tuple(Option(f"--log-{name}") for name, bit in _LOG_FLAGS if flags & bit)
    shown = None if level == _LOG_DEFAULT_LEVEL else str(level if level is not None else level_text)
    return Log(prefix=m.group("prefix"), level=shown, extra=extra)


def _reject(m: re.Match[str]) -> Target:
    return Reject(None if m.group(1) in _DEFAULT_REJECT else m.group(1))


def _ct(m: re.Match[str]) -> Target:
    if m.group("notrack") or m.group("notrack2"):  # ``NOTRACK`` is how -L shows -j NOTRACK
        return Ct(notrack=True, legacy=bool(m.group("notrack2")))
    words = (m.group("opts") or "").split()
    options = tuple(Option(f"--{k}", (v,)) for k, v in zip(words[::2], words[1::2], strict=False))
    return Ct(options=options)


_TargetBuilder = Callable[[re.Match[str]], Target]
_NAT_FLAGS = r"(?P<flags>(?: (?:random-fully|random|persistent))*)"
_MARK_BODY = rf"(?P<op>and|or|xor|set|xset) (?P<value>{HEX})(?:/(?P<mask>{HEX}))?"
_TARGETS: dict[str, tuple[re.Pattern[str], _TargetBuilder]] = {
    name: (re.compile(pattern + _END), builder)
    for name, pattern, builder in (
        ("DNAT", r"(?P<to>to:\S+(?: to:\S+)*)" + _NAT_FLAGS, _dnat),
        ("SNAT", r"(?P<to>to:\S+(?: to:\S+)*)" + _NAT_FLAGS, _snat),
        (
            "MASQUERADE",
            r"(?:masq ports: (?P<lo>\d+)(?:-(?P<hi>\d+))? ?)?"
            r"(?P<flags>(?:random-fully|random)(?: (?:random-fully|random))*)?",
            _masquerade,
        ),
        ("REDIRECT", r"redir ports (?P<lo>\d+)(?:-(?P<hi>\d+))?(?P<random> random)?", _redirect),
        ("MARK", "MARK " + _MARK_BODY, _mark_target),
        (
            "CONNMARK",
            rf"CONNMARK (?:(?P<mode>save|restore)(?: mask (?P<both>{HEX})"
            rf"| nfmask (?P<nf>{HEX}) ctmask ~(?P<ct>{HEX})"
            rf"| ctmask (?P<ct2>{HEX}) nfmask ~(?P<nf2>{HEX}))?"
            rf"|{_MARK_BODY})",
            _connmark_target,
        ),
        (
            "LOG",
            r"LOG(?: flags (?P<flags>\d+))? level (?P<level>\S+)"
            r"(?P<words>(?: (?:tcp-sequence|tcp-options|ip-options|uid|macdecode))*)"
            r'(?: prefix "(?P<prefix>.*)")?(?=\s*$)',
            _log,
        ),
        ("REJECT", r"reject-with (\S+)", _reject),
        ("CT", r"(?:CT (?P<notrack>notrack)|(?P<notrack2>NOTRACK)|CT(?P<opts>(?: \S+ \S+)+))", _ct),
    )
}
_TARGETS["NOTRACK"] = _TARGETS["CT"]


#: Targets whose text says what they do; without it they cannot be modelled.
_TEXT_REQUIRED = frozenset({"DNAT", "SNAT", "MARK", "CONNMARK", "REDIRECT"})


def bare_target(name: str | None, goto: bool) -> Target | None:
    """The target a column word means before any of its text is read."""
    if not name:
        return None
    if name in Verdict.__members__:
        return Standard(Verdict[name])
    if name in ("MASQUERADE",):
        return Masquerade()
    if name == "LOG":
        return Log()
    if name == "REJECT":
        return Reject()
    if name in ("CT", "NOTRACK"):
        return Ct(notrack=name == "NOTRACK", legacy=name == "NOTRACK")
    if name in KNOWN_TARGETS:
        return OpaqueTarget(name)
    return Jump(name, goto=goto)


def decode(text: str, target_name: str | None, goto: bool = False) -> Decoded:
    """Split ``text`` into typed matches and the target ``target_name`` prints."""
    matches: list[Match] = []
    problems: list[tuple[int, str]] = []
    target = bare_target(target_name, goto)
    target_text_seen = False
    chunks: list[tuple[int, int]] = []  # undecoded spans
    pending: int | None = None
    pos, end = 0, len(text.rstrip())
    tdec = _TARGETS.get(target_name or "")

    def flush(upto: int) -> None:
        nonlocal pending
        if pending is not None:
            chunks.append((pending, upto))
            pending = None

    while pos < end:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        hit = _match_at(text, pos)
        if hit is not None:
            flush(pos)
            matches.append(hit[0])
            pos = hit[1]
            continue
        if tdec is not None and not target_text_seen:
            built = _target_at(tdec, text, pos)
            if built is not None:
                flush(pos)
                target, pos = built
                target_text_seen = True
                continue
        if pending is None:
            pending = pos
        while pos < end and not text[pos].isspace():
            pos += 1
    flush(end)

    opaque = 0
    for i, (start, stop) in enumerate(chunks):
        chunk = text[start:stop].rstrip()
        last = i == len(chunks) - 1 and stop == end
        if last and isinstance(target, OpaqueTarget) and not target.text and tdec is None:
            target = OpaqueTarget(target.name, target.options, chunk)
        else:
            matches.append(OpaqueMatch("?", text=chunk))
        opaque += 1
        if chunk.startswith(_KNOWN_STARTS):
            problems.append((start, f"could not decode {chunk!r}; kept as opaque text"))
    if target_name in _TEXT_REQUIRED and not target_text_seen:
        problems.append((end, f"{target_name} target without the text that says what it does"))
        target = OpaqueTarget(target_name or "")
    return Decoded(tuple(matches), target, tuple(problems), opaque)


def _target_at(
    tdec: tuple[re.Pattern[str], _TargetBuilder], text: str, pos: int
) -> tuple[Target, int] | None:
    m = tdec[0].match(text, pos)
    if m is None or m.end() == pos:
        return None
    try:
        return tdec[1](m), m.end()
    except ValueError:  # e.g. ``to:1.2.3.4:8x``: leave it to the opaque path
        return None


def _match_at(text: str, pos: int) -> tuple[Match, int] | None:
    for pattern, builder in _MATCHES:
        m = pattern.match(text, pos)
        if m is not None:
            try:
                return builder(m), m.end()
            except ValueError:  # e.g. a probability out of range: leave it opaque
                return None
    return None
