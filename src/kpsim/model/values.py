"""Plain values of the rule model: families, formats, where a thing was read, addresses,
ports, verbatim options, and the kernel's probability integers.

    "0.33333333349" ─ probability_threshold ─▶ 715827883  (over 2^31, what xt_statistic holds)

Standard library only.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: 2^31: xt_statistic compares ``random_u32 & 0x7FFFFFFF`` with an integer in [0, 2^31].
PROBABILITY_SCALE = 1 << 31


class Family(Enum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class Format(Enum):
    """Input formats kpsim reads (``--format`` values)."""

    SAVE = "save"  # iptables-save / ip6tables-save, kube-proxy restore input, grep'd -A lines
    RULES = "rules"  # iptables -S
    LIST = "list"  # iptables -L in any variant (-n, -v, -x, --line-numbers)
    NFT = "nft"  # nft list ruleset: recognised, not translated
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where a thing was read: file, 1-based line, and the line's text."""

    path: str
    line: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class Counters:
    packets: int
    bytes: int


# ---------------------------------------------------------------- core fields


@dataclass(frozen=True, slots=True)
class Address:
    """``-s``/``-d``. ``network`` is None only when a resolved name could not be
    mapped back to an address (``unresolved`` keeps the name, never a guess)."""

    network: IPNetwork | None
    negated: bool = False
    unresolved: str | None = None


@dataclass(frozen=True, slots=True)
class Protocol:
    """``-p``: canonical lower-case name (``tcp``) or the number as text when unnamed."""

    name: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Interface:
    """``-i``/``-o``; a trailing ``+`` is a prefix wildcard, as in iptables."""

    name: str
    negated: bool = False

    def matches(self, iface: str) -> bool:
        hit = iface.startswith(self.name[:-1]) if self.name.endswith("+") else iface == self.name
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive port range; ``name`` keeps a service name ``-L`` printed that
    kpsim could not map to a number (then lo == hi == -1)."""

    lo: int
    hi: int
    name: str | None = None

    def contains(self, port: int) -> bool:
        return self.lo <= port <= self.hi

    def __str__(self) -> str:
        if self.name is not None and self.lo < 0:
            return self.name
        return str(self.lo) if self.lo == self.hi else f"{self.lo}:{self.hi}"


@dataclass(frozen=True, slots=True)
class Option:
    """One ``--opt arg…`` of a module or target kpsim does not model, kept verbatim."""

    name: str
    args: tuple[str, ...] = ()
    negated: bool = False


# ---------------------------------------------------------------- probability


def probability_threshold(text: str) -> int:
    """The kernel integer iptables stores for ``--probability text``.

    libxt_statistic does ``lround(0x80000000 * strtod(text))``. Python's float()
    is a correctly rounded strtod and scaling by 2^31 is exact, so this is the
    same integer; lround rounds halves away from zero (not to even).
    """
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"probability {text} out of range [0, 1]")
    scaled = value * PROBABILITY_SCALE
    whole = math.floor(scaled)
    return whole + (1 if scaled - whole >= 0.5 else 0)


def format_probability(threshold: int) -> str:
    """iptables' ``%.11f`` of ``threshold / 2^31`` — the exact decimal printed back."""
    return f"{threshold / PROBABILITY_SCALE:.11f}"


def freeze_mapping(d: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(d))
