"""Known ``-m`` modules → typed matches; unknown ones, or uses kpsim does not model,
→ ``OpaqueMatch`` keeping every option.

    -m tcp --dport 80 ─▶ PortMatch      -m comment --comment x ─▶ CommentMatch
    -m recent --rcheck --seconds 10800 --name X ─▶ RecentMatch      -m foo --bar ─▶ opaque

``MATCH_SPECS`` tells the rule walker (rule.py) which options each module takes and how
many arguments each has; ``build_match`` turns a loaded module into a match. Targets are
built in targets.py; what both share is in options.py. Names imported ``X as X`` are
re-exported: save.py, fast.py and nft.py import them from here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from kpsim.formats.iptables.extensions import EXTENSIONS as EXTENSIONS
from kpsim.formats.iptables.options import PROTOCOL_NAMES as PROTOCOL_NAMES
from kpsim.formats.iptables.options import (
    Degrade,
    Loaded,
    by_name,
    count,
    options_of,
    port_range,
    value_mask,
)
from kpsim.formats.iptables.options import network as network
from kpsim.formats.iptables.options import uint32 as uint32
from kpsim.formats.iptables.targets import TARGET_KEYWORDS as TARGET_KEYWORDS
from kpsim.formats.iptables.targets import build_target as build_target
from kpsim.formats.iptables.targets import nat_range as nat_range
from kpsim.formats.iptables.tokens import LineError
from kpsim.formats.numbers import BadNumber, clip, probability, shown
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
    OpaqueMatch,
    Option,
    OwnerMatch,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentCommand,
    RecentMatch,
    SetMatch,
    StatisticMatch,
    StatisticMode,
)

_PORT_OPTS = {"--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1}
_CT_EXTRA_ORDER = (
    "--ctproto",
    "--ctorigsrc",
    "--ctorigdst",
    "--ctreplsrc",
    "--ctrepldst",
    "--ctorigsrcport",
    "--ctorigdstport",
    "--ctreplsrcport",
    "--ctrepldstport",
    "--ctstatus",
    "--ctexpire",
    "--ctdir",
)
_PHYSDEV_ORDER = (
    "--physdev-in",
    "--physdev-out",
    "--physdev-is-in",
    "--physdev-is-out",
    "--physdev-is-bridged",
)

#: Options (and their argument counts) of the modules kpsim knows.
MATCH_SPECS: dict[str, dict[str, int]] = {
    "tcp": {**_PORT_OPTS, "--tcp-flags": 2, "--syn": 0, "--tcp-option": 1},
    "udp": dict(_PORT_OPTS),
    "sctp": {**_PORT_OPTS, "--chunk-types": 2},
    "icmp": {"--icmp-type": 1},
    "icmp6": {"--icmpv6-type": 1},
    "multiport": dict.fromkeys(
        ("--dports", "--destination-ports", "--sports", "--source-ports", "--ports"), 1
    ),
    "comment": {"--comment": 1},
    "statistic": {"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1},
    "recent": {
        **dict.fromkeys(("--set", "--rcheck", "--update", "--remove", "--reap"), 0),
        **dict.fromkeys(("--rttl", "--rsource", "--rdest"), 0),
        **dict.fromkeys(("--seconds", "--hitcount", "--name", "--mask"), 1),
    },
    "addrtype": {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
    "mark": {"--mark": 1},
    "connmark": {"--mark": 1},
    "conntrack": {"--ctstate": 1, **dict.fromkeys(_CT_EXTRA_ORDER, 1)},
    "state": {"--state": 1},
    "set": {
        "--match-set": 2,
        **dict.fromkeys(("--return-nomatch", "--update-counters", "--update-subcounters"), 0),
        **{f"--{w}-{op}": 1 for w in ("packets", "bytes") for op in ("eq", "lt", "gt")},
    },
    "physdev": {**dict.fromkeys(_PHYSDEV_ORDER, 0), "--physdev-in": 1, "--physdev-out": 1},
    "nfacct": {"--nfacct-name": 1},
    "iprange": {"--src-range": 1, "--dst-range": 1},
    "owner": {
        **dict.fromkeys(("--uid-owner", "--gid-owner"), 1),
        **dict.fromkeys(("--socket-exists", "--suppl-groups"), 0),
    },
}

#: ``-p NAME`` loads this module when one of its options appears without ``-m``.
PROTO_MODULES = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmp": "icmp", "ipv6-icmp": "icmp6"}

#: Bit order of the kernel's flags: iptables prints lists in this order.
CTSTATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
ADDRTYPES = (
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
)
FULL_MASKS = ("255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")


def build_match(loaded: Loaded, ipv6: bool) -> Match:
    builder = MATCH_BUILDERS.get(loaded.name)
    if builder is None:
        return OpaqueMatch(loaded.name, tuple(loaded.options))
    try:
        return builder(loaded, ipv6)
    except Degrade:
        return OpaqueMatch(loaded.name, tuple(loaded.options))


def _port_match(loaded: Loaded, ipv6: bool) -> Match:
    ports: dict[str, tuple[PortRange, bool]] = {}
    extra: list[Option] = []
    for option, col in options_of(loaded):
        if option.name in ("--dport", "--sport"):
            if option.name in ports:
                raise Degrade
            ports[option.name] = (port_range(option.args[0], col), option.negated)
        elif option.name == "--syn":  # iptables stores and prints --syn as these flags
            extra.append(Option("--tcp-flags", ("FIN,SYN,RST,ACK", "SYN"), option.negated))
        else:
            extra.append(option)
    dport, dneg = ports.get("--dport", (None, False))
    sport, sneg = ports.get("--sport", (None, False))
    return PortMatch(loaded.name, dport, dneg, sport, sneg, tuple(extra))


def _multiport(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), ("--dports", "--sports", "--ports"))
    if len(found) != 1:
        raise Degrade
    (option, col) = next(iter(found.values()))
    ports = tuple(port_range(p, col) for p in option.args[0].split(","))
    return MultiportMatch(option.name[2:], ports, option.negated)


def _comment(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), ("--comment",))
    if "--comment" not in found or found["--comment"][0].negated:
        raise Degrade
    return CommentMatch(found["--comment"][0].args[0])


def _statistic(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), MATCH_SPECS["statistic"])
    mode = found.get("--mode", (Option("--mode", ("",)), 0))[0].args[0]
    if mode == "random" and set(found) == {"--mode", "--probability"}:
        option, col = found["--probability"]
        try:
            threshold = probability(option.args[0])
        except BadNumber as exc:
            raise LineError(col, str(exc)) from None
        return StatisticMatch(StatisticMode.RANDOM, threshold=threshold, negated=option.negated)
    if mode == "nth" and "--every" in found and "--probability" not in found:
        every, col = found["--every"]
        packet = found.get("--packet", (Option("--packet", ("0",)), col))
        return StatisticMatch(
            StatisticMode.NTH,
            every=count(every.args[0], col, "--every"),
            packet=count(packet[0].args[0], packet[1], "--packet"),
            negated=every.negated,
        )
    raise Degrade


_RECENT_COMMANDS = {f"--{c.value}": c for c in RecentCommand}


def _recent(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), MATCH_SPECS["recent"])
    commands = [name for name in found if name in _RECENT_COMMANDS]
    if len(commands) != 1 or ("--rsource" in found and "--rdest" in found):
        raise Degrade
    command = found[commands[0]][0]
    seconds = found.get("--seconds")
    hitcount = found.get("--hitcount")
    name = found.get("--name")
    return RecentMatch(
        command=_RECENT_COMMANDS[command.name],
        name=name[0].args[0] if name else "DEFAULT",
        seconds=count(seconds[0].args[0], seconds[1], "--seconds") if seconds else None,
        reap="--reap" in found,
        hitcount=count(hitcount[0].args[0], hitcount[1], "--hitcount") if hitcount else None,
        rttl="--rttl" in found,
        mask=_recent_mask(found.get("--mask")),
        side="dest" if "--rdest" in found else "source",
        negated=command.negated,
    )


def _recent_mask(given: tuple[Option, int] | None) -> str | None:
    """None stands for the default all-ones mask, however it was written."""
    if given is None:
        return None
    try:
        mask = ipaddress.ip_address(given[0].args[0]).compressed
    except ValueError:
        raise LineError(given[1], f"bad mask {shown(given[0].args[0])}") from None
    return None if mask in FULL_MASKS else mask


def _types(option: Option, col: int) -> tuple[str, ...]:
    names = {n.upper() for n in option.args[0].split(",")}
    unknown = names - set(ADDRTYPES)
    if unknown:
        raise LineError(col, f"unknown address type {clip(sorted(unknown)[0])}")
    return tuple(t for t in ADDRTYPES if t in names)


def _addrtype(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), MATCH_SPECS["addrtype"])
    src = found.get("--src-type")
    dst = found.get("--dst-type")
    return AddrTypeMatch(
        src_type=_types(*src) if src else (),
        src_negated=bool(src and src[0].negated),
        dst_type=_types(*dst) if dst else (),
        dst_negated=bool(dst and dst[0].negated),
        limit_iface_in="--limit-iface-in" in found,
        limit_iface_out="--limit-iface-out" in found,
    )


def _mark(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), ("--mark",))
    if "--mark" not in found:
        raise Degrade
    option, col = found["--mark"]
    value, mask = value_mask(option.args[0], col)
    cls = MarkMatch if loaded.name == "mark" else ConnmarkMatch
    return cls(value, 0xFFFFFFFF if mask is None else mask, option.negated)


def _states(option: Option, col: int) -> tuple[str, ...]:
    names = {n.upper() for n in option.args[0].split(",")}
    unknown = names - set(CTSTATES)
    if unknown:
        raise LineError(col, f"unknown conntrack state {clip(sorted(unknown)[0])}")
    return tuple(s for s in CTSTATES if s in names)


def _conntrack(loaded: Loaded, ipv6: bool) -> Match:
    key = "--state" if loaded.name == "state" else "--ctstate"
    allowed = (key,) if loaded.name == "state" else MATCH_SPECS["conntrack"]
    found = by_name(options_of(loaded), allowed)
    state = found.pop(key, None)
    extra = sorted((o for o, _ in found.values()), key=lambda o: _CT_EXTRA_ORDER.index(o.name))
    return ConntrackMatch(
        ctstate=_states(*state) if state else (),
        negated=bool(state and state[0].negated),
        extra=tuple(extra),
        module=loaded.name,
    )


def _set(loaded: Loaded, ipv6: bool) -> Match:
    pairs = options_of(loaded)
    main = [(o, c) for o, c in pairs if o.name == "--match-set"]
    if len(main) != 1:
        raise Degrade
    option = main[0][0]
    extra = tuple(o for o, _ in pairs if o.name != "--match-set")
    return SetMatch(option.args[0], tuple(option.args[1].split(",")), option.negated, extra)


def _physdev(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), _PHYSDEV_ORDER)
    return PhysdevMatch(tuple(found[n][0] for n in _PHYSDEV_ORDER if n in found))


def _nfacct(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), ("--nfacct-name",))
    if "--nfacct-name" not in found or found["--nfacct-name"][0].negated:
        raise Degrade
    return NfacctMatch(found["--nfacct-name"][0].args[0])


def _ip_range(option: Option, col: int, ipv6: bool) -> tuple[str, str]:
    """``a-b`` or a single ``a`` (lo = hi), as libxt_iprange reads it."""
    lo, _, hi = option.args[0].partition("-")
    try:
        pair = [ipaddress.ip_address(t) for t in (lo, hi or lo)]
    except ValueError:
        raise LineError(col, f"bad address range {shown(option.args[0])}") from None
    if any(a.version != (6 if ipv6 else 4) for a in pair):
        raise LineError(col, f"address range {shown(option.args[0])} is of the other family")
    return pair[0].compressed, pair[1].compressed


def _iprange(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), MATCH_SPECS["iprange"])
    src, dst = found.get("--src-range"), found.get("--dst-range")
    if src is None and dst is None:
        raise Degrade
    return IPRangeMatch(
        src=_ip_range(*src, ipv6) if src else None,
        src_negated=bool(src and src[0].negated),
        dst=_ip_range(*dst, ipv6) if dst else None,
        dst_negated=bool(dst and dst[0].negated),
    )


_OWNER_ORDER = ("--uid-owner", "--gid-owner", "--socket-exists", "--suppl-groups")


def _owner(loaded: Loaded, ipv6: bool) -> Match:
    found = by_name(options_of(loaded), MATCH_SPECS["owner"])
    if not found or set(found) == {"--suppl-groups"}:
        raise Degrade
    return OwnerMatch(tuple(found[n][0] for n in _OWNER_ORDER if n in found))


MATCH_BUILDERS: dict[str, Callable[[Loaded, bool], Match]] = {
    "tcp": _port_match,
    "udp": _port_match,
    "sctp": _port_match,
    "multiport": _multiport,
    "comment": _comment,
    "statistic": _statistic,
    "recent": _recent,
    "addrtype": _addrtype,
    "mark": _mark,
    "connmark": _mark,
    "conntrack": _conntrack,
    "state": _conntrack,
    "set": _set,
    "physdev": _physdev,
    "nfacct": _nfacct,
    "iprange": _iprange,
    "owner": _owner,
}
