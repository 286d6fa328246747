"""The immutable rule model every stage shares.

    Ruleset ─ tables ─▶ Table ─ chains ─▶ Chain ─ rules ─▶ Rule
                                                          ├─ core fields (-s -d -p -i -o -f)
                                                          ├─ matches (-m …, typed or Opaque)
                                                          └─ target (-j / -g …, typed or Opaque)

Standard library only. Every parsed thing carries its ``SourceLocation`` so any
answer can quote the line that produced it. Fields hold what the kernel holds
(e.g. a statistic probability is the kernel's integer over 2^31), not what a
particular printer showed.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from types import MappingProxyType

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: 2^31: xt_statistic compares ``random_u32 & 0x7FFFFFFF`` with an integer in [0, 2^31].
PROBABILITY_SCALE = 1 << 31

BUILTIN_CHAINS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "raw": ("PREROUTING", "OUTPUT"),
        "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
        "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
        "filter": ("INPUT", "FORWARD", "OUTPUT"),
        "security": ("INPUT", "FORWARD", "OUTPUT"),
    }
)


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


# ---------------------------------------------------------------- matches


@dataclass(frozen=True, slots=True)
class Option:
    """One ``--opt arg…`` of a module or target kpsim does not model, kept verbatim."""

    name: str
    args: tuple[str, ...] = ()
    negated: bool = False


@dataclass(frozen=True, slots=True)
class PortMatch:
    """``-m tcp|udp|sctp`` (``--dport``/``--sport``); other options such as
    ``--tcp-flags`` are kept in ``extra``."""

    protocol: str
    dport: PortRange | None = None
    dport_negated: bool = False
    sport: PortRange | None = None
    sport_negated: bool = False
    extra: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class MultiportMatch:
    """``-m multiport``; direction is ``dports``, ``sports`` or ``ports``."""

    direction: str
    ports: tuple[PortRange, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class CommentMatch:
    text: str


class StatisticMode(Enum):
    RANDOM = "random"
    NTH = "nth"


@dataclass(frozen=True, slots=True)
class StatisticMatch:
    """``-m statistic``. ``threshold`` is the kernel's integer: the rule matches when
    ``(random_u32 & 0x7FFFFFFF) < threshold``, so the true probability is
    ``threshold / 2^31`` — not the decimal a user or kube-proxy typed."""

    mode: StatisticMode
    threshold: int | None = None
    every: int | None = None
    packet: int | None = None
    negated: bool = False

    @property
    def probability(self) -> Fraction:
        """Exact chance that one random draw matches (before ``!``)."""
        if self.mode is StatisticMode.RANDOM and self.threshold is not None:
            return Fraction(self.threshold, PROBABILITY_SCALE)
        if self.mode is StatisticMode.NTH and self.every:
            return Fraction(1, self.every)
        return Fraction(0)

    @property
    def printed(self) -> str:
        """What iptables prints for the probability (``%.11f``)."""
        return format_probability(self.threshold or 0)


class RecentCommand(Enum):
    SET = "set"
    RCHECK = "rcheck"
    UPDATE = "update"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class RecentMatch:
    """``-m recent``: the state behind session affinity. ``mask`` None is the kernel's
    default (255.255.255.255), so a capture that omits it and one that prints it agree."""

    command: RecentCommand
    name: str = "DEFAULT"
    seconds: int | None = None
    reap: bool = False
    hitcount: int | None = None
    rttl: bool = False
    mask: str | None = None
    side: str = "source"  # "source" (--rsource) or "dest" (--rdest)
    negated: bool = False


@dataclass(frozen=True, slots=True)
class AddrTypeMatch:
    src_type: tuple[str, ...] = ()
    src_negated: bool = False
    dst_type: tuple[str, ...] = ()
    dst_negated: bool = False
    limit_iface_in: bool = False
    limit_iface_out: bool = False


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """``-m mark``: matches when ``(mark & mask) == value``."""

    value: int
    mask: int = 0xFFFFFFFF
    negated: bool = False


@dataclass(frozen=True, slots=True)
class ConnmarkMatch:
    value: int
    mask: int = 0xFFFFFFFF
    negated: bool = False


@dataclass(frozen=True, slots=True)
class ConntrackMatch:
    """``-m conntrack`` / ``-m state``; options other than ``--ctstate`` in ``extra``.
    ``module`` keeps which of the two was written, so a re-render says the same."""

    ctstate: tuple[str, ...] = ()
    negated: bool = False
    extra: tuple[Option, ...] = ()
    module: str = "conntrack"


@dataclass(frozen=True, slots=True)
class SetMatch:
    name: str
    flags: tuple[str, ...]
    negated: bool = False
    extra: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class PhysdevMatch:
    options: tuple[Option, ...]


@dataclass(frozen=True, slots=True)
class NfacctMatch:
    name: str


@dataclass(frozen=True, slots=True)
class OpaqueMatch:
    """A module kpsim does not model: kept whole, evaluated as UNKNOWN, never assumed."""

    module: str
    options: tuple[Option, ...] = ()
    text: str = ""  # as ``-L`` printed it, when that is all we have


Match = (
    PortMatch
    | MultiportMatch
    | CommentMatch
    | StatisticMatch
    | RecentMatch
    | AddrTypeMatch
    | MarkMatch
    | ConnmarkMatch
    | ConntrackMatch
    | SetMatch
    | PhysdevMatch
    | NfacctMatch
    | OpaqueMatch
)


# ---------------------------------------------------------------- targets


class Verdict(Enum):
    ACCEPT = "ACCEPT"
    DROP = "DROP"
    RETURN = "RETURN"
    QUEUE = "QUEUE"


@dataclass(frozen=True, slots=True)
class Standard:
    """ACCEPT / DROP / RETURN / QUEUE."""

    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Jump:
    """``-j CHAIN`` (``goto=False``) or ``-g CHAIN`` (``goto=True``: no return here)."""

    chain: str
    goto: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """``with_`` None is the family's default (icmp-port-unreachable)."""

    with_: str | None = None


@dataclass(frozen=True, slots=True)
class NatRange:
    """``ip[-ip][:port[-port]]`` of DNAT/SNAT; any part may be absent."""

    addr_lo: str | None = None
    addr_hi: str | None = None
    port_lo: int | None = None
    port_hi: int | None = None

    def __str__(self) -> str:
        addr = self.addr_lo or ""
        if self.addr_hi and self.addr_hi != self.addr_lo:
            addr += f"-{self.addr_hi}"
        if self.port_lo is None:
            return addr
        ports = str(self.port_lo)
        if self.port_hi is not None and self.port_hi != self.port_lo:
            ports += f"-{self.port_hi}"
        if addr and ":" in addr:  # IPv6 needs brackets before a port
            addr = f"[{addr}]"
        return f"{addr}:{ports}"


@dataclass(frozen=True, slots=True)
class Dnat:
    to: tuple[NatRange, ...]
    random: bool = False
    persistent: bool = False


@dataclass(frozen=True, slots=True)
class Snat:
    to: tuple[NatRange, ...]
    random: bool = False
    random_fully: bool = False
    persistent: bool = False


@dataclass(frozen=True, slots=True)
class Masquerade:
    to_ports: PortRange | None = None
    random: bool = False
    random_fully: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    to_ports: PortRange | None = None
    random: bool = False


@dataclass(frozen=True, slots=True)
class MarkTarget:
    """``-j MARK`` normalised to the kernel's form: ``mark = (mark & ~mask) ^ value``.
    (``--set-mark v`` is v/0xffffffff, ``--or-mark v`` is v/v, ``--and-mark v`` is
    0/~v, ``--xor-mark v`` is v/0.)"""

    value: int
    mask: int

    def apply(self, mark: int) -> int:
        return ((mark & ~self.mask) ^ self.value) & 0xFFFFFFFF


class ConnmarkMode(Enum):
    SET = "set"  # --set-xmark value/mask
    SAVE = "save"  # --save-mark: ctmark from packet mark
    RESTORE = "restore"  # --restore-mark: packet mark from ctmark


@dataclass(frozen=True, slots=True)
class ConnmarkTarget:
    mode: ConnmarkMode
    value: int = 0
    mask: int = 0xFFFFFFFF
    nfmask: int = 0xFFFFFFFF
    ctmask: int = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Log:
    """``level`` None is the default level 4."""

    prefix: str | None = None
    level: str | None = None
    extra: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class Ct:
    """``-j CT`` (``--notrack`` etc.) and the old ``-j NOTRACK`` (``legacy=True``)."""

    notrack: bool = False
    options: tuple[Option, ...] = ()
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class OpaqueTarget:
    """A target kpsim does not model: kept with its options."""

    name: str
    options: tuple[Option, ...] = ()
    text: str = ""


Target = (
    Standard
    | Jump
    | Reject
    | Dnat
    | Snat
    | Masquerade
    | Redirect
    | MarkTarget
    | ConnmarkTarget
    | Log
    | Ct
    | OpaqueTarget
)

#: Targets after which evaluation goes on with the next rule.
NON_TERMINATING = (MarkTarget, ConnmarkTarget, Log)


# ---------------------------------------------------------------- structure


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, in chain order (``number`` is 1-based, as ``--line-numbers``)."""

    table: str
    chain: str
    number: int
    target: Target | None
    source: Address | None = None
    destination: Address | None = None
    protocol: Protocol | None = None
    in_interface: Interface | None = None
    out_interface: Interface | None = None
    fragment: bool | None = None  # True: -f, False: ! -f
    matches: tuple[Match, ...] = ()
    counters: Counters | None = None
    origin: SourceLocation | None = field(default=None, compare=False)

    @property
    def comment(self) -> str | None:
        for m in self.matches:
            if isinstance(m, CommentMatch):
                return m.text
        return None


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; ``policy`` is set for built-in chains whose policy the input showed."""

    name: str
    rules: tuple[Rule, ...] = ()
    policy: Verdict | None = None
    counters: Counters | None = None
    origin: SourceLocation | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: Mapping[str, Chain]

    def chain(self, name: str) -> Chain | None:
        return self.chains.get(name)

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A line kpsim skipped or doubted, with where and why."""

    path: str
    line: int
    col: int
    message: str
    text: str = ""

    def render(self) -> str:
        caret = " " * max(self.col - 1, 0) + "^"
        return f"{self.path}:{self.line}:{self.col}: {self.message}\n    {self.text}\n    {caret}"


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything read from one input: tables, detected format, metadata, diagnostics."""

    path: str
    format: Format
    family: Family
    tables: Mapping[str, Table]
    metadata: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    diagnostics: tuple[Diagnostic, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "nft syntax: recognised, not translated"

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def chain(self, table: str, name: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(name) if t else None


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
