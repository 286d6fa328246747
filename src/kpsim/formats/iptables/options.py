"""What rule parsing shares between matches and targets: a loaded module or target
(``-m name`` / ``-j name``) with its options, and the values those options carry.

    Loaded("tcp", options=[--dport 80]) ─ options_of ─▶ [(Option, col)] ─ by_name ─▶ {name: …}
    values: uint32 / value_mask (marks), port_range, network, PROTOCOL_NAMES (``-p 6``)

``Degrade`` is how a builder says "kpsim does not model this use": keep it opaque.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container
from dataclasses import dataclass, field
from functools import lru_cache

from kpsim.formats.iptables.tokens import LineError
from kpsim.formats.numbers import (
    PORT_MAX,
    U32,
    BadNumber,
    decimal,
    is_decimal,
    read_decimal,
    shown,
    strtoul,
)
from kpsim.model import Option, PortRange

#: Protocol numbers iptables-save prints by name (it uses /etc/protocols names).
PROTOCOL_NAMES = {
    "0": "all",
    "1": "icmp",
    "2": "igmp",
    "4": "ipencap",
    "6": "tcp",
    "17": "udp",
    "33": "dccp",
    "41": "ipv6",
    "47": "gre",
    "50": "esp",
    "51": "ah",
    "58": "ipv6-icmp",
    "89": "ospf",
    "103": "pim",
    "112": "vrrp",
    "132": "sctp",
    "135": "mh",
    "136": "udplite",
}


@dataclass
class Loaded:
    """A module (``-m name``) or target (``-j name``) and the options given to it.

    ``cols`` holds, for each option, the index of its argument among the rule's
    words; ``parse_rule`` turns an index into a column only when reporting."""

    name: str
    col: int
    options: list[Option] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)


class Degrade(Exception):
    """The module is used in a way kpsim does not model: keep it as opaque."""


#: What an address can start with: an ASCII digit, a hex digit or ":" (IPv6).
_NETWORK_STARTS = frozenset("0123456789abcdefABCDEF:")


@lru_cache(maxsize=1 << 16)
def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``10.0.0.1`` → 10.0.0.1/32, ``10.1.2.3/8`` → 10.0.0.0/8 (strict=False), else None.

    Cached: a kube-proxy dump repeats each cluster IP and pod IP many times."""
    if not text or text[0] not in _NETWORK_STARTS:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


_ALIASES = {
    "--destination-port": "--dport",
    "--source-port": "--sport",
    "--destination-ports": "--dports",
    "--source-ports": "--sports",
}

_Opts = list[tuple[Option, int]]


def _canon(option: Option) -> Option:
    name = _ALIASES.get(option.name, option.name)
    return option if name == option.name else Option(name, option.args, option.negated)


def options_of(loaded: Loaded) -> _Opts:
    """The options with aliases resolved, each with the column of its argument."""
    return [(_canon(o), c) for o, c in zip(loaded.options, loaded.cols, strict=True)]


def by_name(pairs: _Opts, allowed: Container[str]) -> dict[str, tuple[Option, int]]:
    """Options by name; a repeated or unknown option means kpsim cannot model it."""
    found: dict[str, tuple[Option, int]] = {}
    for option, col in pairs:
        if option.name not in allowed or option.name in found:
            raise Degrade
        found[option.name] = (option, col)
    return found


def uint32(text: str, col: int) -> int:
    """strtoul with base 0, as iptables reads marks: ``0x4000``, ``16384``, ``040000``."""
    value = strtoul(text, U32)
    if value is None:
        raise LineError(col, f"bad number {shown(text)} (a 32-bit value)")
    return value


def count(text: str, col: int, what: str) -> int:
    """A 32-bit count: ``--every``, ``--packet``, ``--seconds``, ``--hitcount``."""
    try:
        return read_decimal(text, U32, what)
    except BadNumber as exc:
        raise LineError(col, str(exc)) from None


def value_mask(text: str, col: int) -> tuple[int, int | None]:
    """``v/m`` or ``v`` (mask None when absent)."""
    value, slash, mask = text.partition("/")
    return uint32(value, col), (uint32(mask, col) if slash else None)


def port_number(text: str, col: int) -> int:
    """A port: ``[0-9]+``, 0-65535."""
    value = decimal(text, PORT_MAX)
    if value is None:
        raise LineError(col, f"bad port {shown(text)}")
    return value


def port_range(text: str, col: int, sep: str = ":") -> PortRange:
    """``80``, ``1000:2000``, ``:2000``, ``1000:``; a service name is kept by name."""
    lo, has_sep, hi = text.partition(sep)
    if not has_sep:
        if is_decimal(text):
            port = port_number(text, col)
            return PortRange(port, port)
        if text.isascii() and text.replace("-", "").replace("_", "").isalnum():
            return PortRange(-1, -1, name=text)  # a service name
        raise LineError(col, f"bad port {shown(text)}")
    low = port_number(lo, col) if lo else 0
    high = port_number(hi, col) if hi else 65535
    if low > high:
        raise LineError(col, f"port range {shown(text)} is reversed")
    return PortRange(low, high)
