"""Decode the words a target prints in ``iptables -L`` into the typed target.

    DNAT  tcp  --  0.0.0.0/0  0.0.0.0/0  /* default/web */ tcp to:10.244.1.7:8080
    │                                                          └ _TARGETS["DNAT"] → Dnat(to=…)
    └ bare_target("DNAT") → OpaqueTarget("DNAT"), until its text is read

``bare_target`` is what the target column's word means before any text is read (a
verdict, a known extension, or a chain to jump to); ``_TARGETS`` decodes the words the
extension prints after the matches, by target name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from kpsim.formats.iptables.listing_match_decoders import _END, FULL, HEX
from kpsim.formats.numbers import PORT_MAX, U8, U32, decimal, is_decimal, read_decimal, read_hex
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

_LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warn": 4,
               "warning": 4, "notice": 5, "info": 6, "debug": 7, "panic": 0}  # fmt: skip
_LOG_FLAGS = (("tcp-sequence", 0x01), ("tcp-options", 0x02), ("ip-options", 0x04),
              ("uid", 0x08), ("macdecode", 0x20))  # fmt: skip
_LOG_DEFAULT_LEVEL = 4  # iptables-save omits --log-level 4, so the model keeps None

#: REJECT's default, which the model keeps as None.
_DEFAULT_REJECT = ("icmp-port-unreachable", "icmp6-port-unreachable")


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
        addr_lo=_address(lo) if lo else None,
        addr_hi=_address(hi) if hi else None,
        port_lo=read_decimal(plo, PORT_MAX, "port") if plo else None,
        port_hi=read_decimal(phi, PORT_MAX, "port") if phi else None,
    )


def _address(text: str) -> str:
    """An address as iptables prints it; ValueError (the opaque path) for anything else."""
    return ipaddress.ip_address(text).compressed


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
    low = read_decimal(lo, PORT_MAX, "port")
    return PortRange(low, read_decimal(hi, PORT_MAX, "port") if hi else low)


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


def _hex(m: re.Match[str], group: str) -> int:
    return read_hex(m.group(group), U32, "mark")


def _mark_target(m: re.Match[str]) -> Target:
    mask = _hex(m, "mask") if m.group("mask") else None
    return MarkTarget(*_mark_op(m.group("op"), _hex(m, "value"), mask))


def _connmark_target(m: re.Match[str]) -> Target:
    """CONNMARK prints save/restore with their masks, or the set operation like MARK."""
    mode = m.group("mode")
    if mode is not None:
        nf = ct = FULL
        if m.group("both"):
            nf = ct = _hex(m, "both")
        if m.group("nf"):
            nf = _hex(m, "nf")
        if m.group("ct"):
            ct = _hex(m, "ct")
        if m.group("nf2"):
            nf = _hex(m, "nf2")
        if m.group("ct2"):
            ct = _hex(m, "ct2")
        cmode = ConnmarkMode.SAVE if mode == "save" else ConnmarkMode.RESTORE
        return ConnmarkTarget(cmode, nfmask=nf, ctmask=ct)
    mask = _hex(m, "mask") if m.group("mask") else None
    value, vmask = _mark_op(m.group("op"), _hex(m, "value"), mask)
    return ConnmarkTarget(ConnmarkMode.SET, value=value, mask=vmask)


def _log(m: re.Match[str]) -> Target:
    level_text = m.group("level")
    level = decimal(level_text, 7) if is_decimal(level_text) else _LOG_LEVELS.get(level_text)
    flags = read_decimal(m.group("flags"), U8, "LOG flags") if m.group("flags") else 0
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
            r"(?:masq ports: (?P<lo>[0-9]+)(?:-(?P<hi>[0-9]+))? ?)?"
            r"(?P<flags>(?:random-fully|random)(?: (?:random-fully|random))*)?",
            _masquerade,
        ),
        (
            "REDIRECT",
            r"redir ports (?P<lo>[0-9]+)(?:-(?P<hi>[0-9]+))?(?P<random> random)?",
            _redirect,
        ),
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
            r"LOG(?: flags (?P<flags>[0-9]+))? level (?P<level>\S+)"
            r"(?P<words>(?: (?:tcp-sequence|tcp-options|ip-options|uid|macdecode))*)"
            r'(?: prefix "(?P<prefix>.{0,128})")?(?=\s*$)',  # at most 29 characters
            _log,
        ),
        ("REJECT", r"reject-with (\S+)", _reject),
        ("CT", r"(?:CT (?P<notrack>notrack)|(?P<notrack2>NOTRACK)|CT(?P<opts>(?: \S+ \S+)+))", _ct),
    )
}
_TARGETS["NOTRACK"] = _TARGETS["CT"]


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
