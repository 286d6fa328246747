"""``-j NAME opts`` → a typed target (DNAT, SNAT, MARK, LOG, …), a ``Jump`` to a
chain, or an ``OpaqueTarget`` that keeps every option.

    -j KUBE-SEP-X ─▶ Jump     -j DNAT --to-destination 10.0.0.5:80 ─▶ Dnat
    -j LOG (no chain LOG) ─▶ Log     -j LOG (the table has a chain LOG) ─▶ Jump

``TARGET_SPECS`` tells the rule walker (rule.py) which options each target takes;
``TARGET_KEYWORDS`` are the names that mean a target unless the table declares a chain
of that name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Container

from kpsim.formats.iptables.options import (
    Degrade,
    Loaded,
    by_name,
    options_of,
    port_number,
    port_range,
    uint32,
    value_mask,
)
from kpsim.formats.iptables.tokens import LineError
from kpsim.formats.numbers import decimal, shown
from kpsim.model import (
    ConnmarkMode,
    ConnmarkTarget,
    Ct,
    Dnat,
    Jump,
    Log,
    MarkTarget,
    Masquerade,
    NatRange,
    Netmap,
    OpaqueTarget,
    Option,
    PortRange,
    Redirect,
    Reject,
    Snat,
    Standard,
    Target,
    Verdict,
)

_VERDICTS = {v.value: v for v in Verdict}

#: Options (and argument counts) of the targets kpsim models.
TARGET_SPECS: dict[str, dict[str, int]] = {
    "REJECT": {"--reject-with": 1},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "SNAT": {"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "REDIRECT": {"--to-ports": 1, "--random": 0},
    "MARK": dict.fromkeys(
        ("--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark"), 1
    ),
    "CONNMARK": {
        **dict.fromkeys(("--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark"), 1),
        **dict.fromkeys(("--nfmask", "--ctmask", "--mask"), 1),
        "--save-mark": 0,
        "--restore-mark": 0,
    },
    "LOG": {
        "--log-prefix": 1,
        "--log-level": 1,
        **dict.fromkeys(
            ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid"), 0
        ),
        "--log-macdecode": 0,
    },
    "CT": {
        "--notrack": 0,
        **dict.fromkeys(("--helper", "--ctevents", "--expevents", "--timeout"), 1),
        **dict.fromkeys(("--zone", "--zone-orig", "--zone-reply"), 1),
    },
    "NOTRACK": {},
    "NETMAP": {"--to": 1},
}

#: Target names that are targets, not chains, unless the table declares such a chain.
TARGET_KEYWORDS = frozenset(
    {*_VERDICTS, *TARGET_SPECS}
    | {
        "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNSECMARK", "DSCP", "ECN", "HL",
        "HMARK", "IDLETIMER", "LED", "NETMAP", "NFLOG", "NFQUEUE", "RATEEST", "SECMARK",
        "SET", "SYNPROXY", "TCPMSS", "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE", "TTL",
        "ULOG",
    }
)  # fmt: skip

_LOG_FLAGS = ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid")
_LOG_ORDER = (*_LOG_FLAGS, "--log-macdecode")
LOG_LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
_LOG_ALIASES = {"panic": "0", "err": "3", "warn": "4"}

DEFAULT_REJECT = ("icmp-port-unreachable", "icmp6-port-unreachable")
_REJECT_V4 = {
    "net-unreach": "icmp-net-unreachable",
    "host-unreach": "icmp-host-unreachable",
    "proto-unreach": "icmp-proto-unreachable",
    "port-unreach": "icmp-port-unreachable",
    "net-prohib": "icmp-net-prohibited",
    "host-prohib": "icmp-host-prohibited",
    "admin-prohib": "icmp-admin-prohibited",
    "tcp-rst": "tcp-reset",
}
_REJECT_V6 = {
    "no-route": "icmp6-no-route",
    "adm-prohibited": "icmp6-adm-prohibited",
    "addr-unreach": "icmp6-addr-unreachable",
    "port-unreach": "icmp6-port-unreachable",
    "tcp-rst": "tcp-reset",
}


def build_target(loaded: Loaded, goto: bool, chains: Container[str], ipv6: bool) -> Target:
    """``-j NAME opts`` → a typed target, a Jump to a chain, or an OpaqueTarget."""
    name, options = loaded.name, tuple(loaded.options)
    if goto or name in chains or name not in TARGET_KEYWORDS:
        return OpaqueTarget(name, options) if options else Jump(name, goto)
    if name in _VERDICTS:
        return OpaqueTarget(name, options) if options else Standard(_VERDICTS[name])
    builder = TARGET_BUILDERS.get(name)
    if builder is None:
        return OpaqueTarget(name, options)
    try:
        return builder(loaded, ipv6)
    except Degrade:
        return OpaqueTarget(name, options)


def _reject(loaded: Loaded, ipv6: bool) -> Target:
    found = by_name(options_of(loaded), ("--reject-with",))
    if "--reject-with" not in found:
        return Reject()
    text = found["--reject-with"][0].args[0]
    kind = (_REJECT_V6 if ipv6 else _REJECT_V4).get(text, text)
    return Reject(None if kind in DEFAULT_REJECT else kind)


def nat_range(text: str, col: int) -> NatRange:
    """``ip[-ip][:port[-port]]``; IPv6 is ``[ip[-ip]]:port`` or bare ``ip`` with no port."""
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            raise LineError(col, f"bad address range {shown(text)}")
        addrs, ports = text[1:close], (rest[1:] if rest else None)
    elif text.count(":") > 1:
        addrs, ports = text, None
    else:
        addrs, colon, after = text.partition(":")
        ports = after if colon else None
    lo, hi = _addr_pair(addrs, col) if addrs else (None, None)
    port_lo = port_hi = None
    if ports is not None:
        plo, _, phi = ports.partition("-")
        port_lo = port_number(plo, col)
        port_hi = port_number(phi, col) if phi else None
        port_hi = None if port_hi == port_lo else port_hi
    return NatRange(lo, hi, port_lo, port_hi)


def _addr_pair(text: str, col: int) -> tuple[str, str | None]:
    lo_text, _, hi_text = text.partition("-")
    try:
        lo = ipaddress.ip_address(lo_text).compressed
        hi = ipaddress.ip_address(hi_text).compressed if hi_text else None
    except ValueError:
        raise LineError(col, f"bad address {shown(text)}") from None
    return lo, (None if hi == lo else hi)


def _flags(found: Container[str], *names: str) -> list[bool]:
    return [n in found for n in names]


def _dnat(loaded: Loaded, ipv6: bool) -> Target:
    pairs = options_of(loaded)
    to = tuple(nat_range(o.args[0], c) for o, c in pairs if o.name == "--to-destination")
    found = by_name([p for p in pairs if p[0].name != "--to-destination"], TARGET_SPECS["DNAT"])
    random, persistent = _flags(found, "--random", "--persistent")
    return Dnat(to, random, persistent)


def _snat(loaded: Loaded, ipv6: bool) -> Target:
    pairs = options_of(loaded)
    to = tuple(nat_range(o.args[0], c) for o, c in pairs if o.name == "--to-source")
    found = by_name([p for p in pairs if p[0].name != "--to-source"], TARGET_SPECS["SNAT"])
    random, fully, persistent = _flags(found, "--random", "--random-fully", "--persistent")
    return Snat(to, random, fully, persistent)


def _to_ports(found: dict[str, tuple[Option, int]]) -> PortRange | None:
    if "--to-ports" not in found:
        return None
    option, col = found["--to-ports"]
    return port_range(option.args[0], col, sep="-")


def _masquerade(loaded: Loaded, ipv6: bool) -> Target:
    found = by_name(options_of(loaded), TARGET_SPECS["MASQUERADE"])
    random, fully = _flags(found, "--random", "--random-fully")
    return Masquerade(_to_ports(found), random, fully)


def _redirect(loaded: Loaded, ipv6: bool) -> Target:
    found = by_name(options_of(loaded), TARGET_SPECS["REDIRECT"])
    return Redirect(_to_ports(found), "--random" in found)


def _mark_op(option: Option, col: int) -> tuple[int, int]:
    """The kernel's (value, mask) for one MARK/CONNMARK operation, as libxt_MARK stores it."""
    value, mask = value_mask(option.args[0], col)
    full = 0xFFFFFFFF
    if option.name == "--set-xmark":
        return value, full if mask is None else mask
    if option.name == "--set-mark":
        return value, value | (full if mask is None else mask)
    if mask is not None:
        raise LineError(col, f"{option.name} takes no mask")
    if option.name == "--and-mark":
        return 0, ~value & full
    if option.name == "--or-mark":
        return value, value
    return value, 0  # --xor-mark


def _mark_target(loaded: Loaded, ipv6: bool) -> Target:
    found = by_name(options_of(loaded), TARGET_SPECS["MARK"])
    if len(found) != 1:
        raise Degrade
    option, col = next(iter(found.values()))
    if option.negated:
        raise Degrade
    return MarkTarget(*_mark_op(option, col))


def _connmark_target(loaded: Loaded, ipv6: bool) -> Target:
    found = by_name(options_of(loaded), TARGET_SPECS["CONNMARK"])
    masks = {n: found.pop(n) for n in ("--nfmask", "--ctmask", "--mask") if n in found}
    if len(found) != 1:
        raise Degrade
    (name, (option, col)) = next(iter(found.items()))
    if name in ("--save-mark", "--restore-mark"):
        both = masks.get("--mask")
        nf = masks.get("--nfmask", both)
        ct = masks.get("--ctmask", both)
        mode = ConnmarkMode.SAVE if name == "--save-mark" else ConnmarkMode.RESTORE
        return ConnmarkTarget(
            mode,
            nfmask=uint32(nf[0].args[0], nf[1]) if nf else 0xFFFFFFFF,
            ctmask=uint32(ct[0].args[0], ct[1]) if ct else 0xFFFFFFFF,
        )
    if masks:
        raise Degrade
    value, mask = _mark_op(option, col)
    return ConnmarkTarget(ConnmarkMode.SET, value, mask)


def _log(loaded: Loaded, ipv6: bool) -> Target:
    pairs = options_of(loaded)
    found = by_name([p for p in pairs if p[0].name in TARGET_SPECS["LOG"]], TARGET_SPECS["LOG"])
    unknown = [o for o, _ in pairs if o.name not in TARGET_SPECS["LOG"]]
    prefix = found.get("--log-prefix")
    level = found.get("--log-level")
    flags = [found[n][0] for n in _LOG_ORDER if n in found]
    return Log(
        prefix=prefix[0].args[0] if prefix else None,
        level=_log_level(*level) if level else None,
        extra=tuple(flags + unknown),
    )


def _log_level(option: Option, col: int) -> str | None:
    """Levels as iptables prints them: a number, with the default 4 left out."""
    text = option.args[0].lower()
    number = _LOG_ALIASES.get(text) or (str(LOG_LEVELS.index(text)) if text in LOG_LEVELS else text)
    if decimal(number, 7) is None:
        raise LineError(col, f"bad log level {shown(option.args[0])}")
    return None if number == "4" else number


def _ct(loaded: Loaded, ipv6: bool) -> Target:
    options = tuple(o for o in loaded.options if o.name != "--notrack")
    if loaded.name == "NOTRACK":  # the old target: no options, kept apart to render back
        return Ct(notrack=True, options=options, legacy=True)
    return Ct(notrack=len(options) != len(loaded.options), options=options)


def _netmap(loaded: Loaded, ipv6: bool) -> Target:
    found = by_name(options_of(loaded), TARGET_SPECS["NETMAP"])
    if "--to" not in found or found["--to"][0].negated:
        raise Degrade
    option, col = found["--to"]
    try:
        net = ipaddress.ip_network(option.args[0], strict=False)
    except ValueError:
        raise LineError(col, f"bad network {shown(option.args[0])}") from None
    return Netmap(net.with_prefixlen)


TARGET_BUILDERS: dict[str, Callable[[Loaded, bool], Target]] = {
    "REJECT": _reject,
    "DNAT": _dnat,
    "SNAT": _snat,
    "MASQUERADE": _masquerade,
    "REDIRECT": _redirect,
    "MARK": _mark_target,
    "CONNMARK": _connmark_target,
    "LOG": _log,
    "CT": _ct,
    "NOTRACK": _ct,
    "NETMAP": _netmap,
}
