"""Typed ``-m`` matches: what each module tests, as the kernel holds it.

    Rule.matches ─▶ PortMatch | StatisticMatch | RecentMatch | … | OpaqueMatch (not modelled)

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from kpsim.model.nft import NumgenMatch, SetLookup
from kpsim.model.values import PROBABILITY_SCALE, Option, PortRange, format_probability


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
class IpSet:
    """One set of a captured ``ipset save``: ``create NAME TYPE family F …`` and its
    ``add NAME ENTRY …`` lines. ``entries`` keep each entry's parts as printed
    (``10.0.0.1,tcp:80``); ``nomatch`` entries are the net types' exceptions."""

    name: str
    kind: str  # hash:ip, hash:ip,port, hash:net, bitmap:port, list:set …
    family: str = "inet"
    entries: tuple[str, ...] = ()
    nomatch: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SetMatch:
    """``-m set --match-set NAME flags``; ``content`` is the set as the capture's
    ``ipset save`` shows it (None: not captured, membership UNKNOWN)."""

    name: str
    flags: tuple[str, ...]
    negated: bool = False
    extra: tuple[Option, ...] = ()
    content: IpSet | None = None


@dataclass(frozen=True, slots=True)
class PhysdevMatch:
    """``-m physdev``: the bridge port a bridged packet came in / goes out by. A packet
    the bridge never saw matches iff every option given is negated (xt_physdev)."""

    options: tuple[Option, ...]


@dataclass(frozen=True, slots=True)
class NfacctMatch:
    """``-m nfacct``: counts into a named accounting object; always matches."""

    name: str


@dataclass(frozen=True, slots=True)
class IPRangeMatch:
    """``-m iprange``: inclusive address ranges (lo, hi), each side with its own ``!``."""

    src: tuple[str, str] | None = None
    src_negated: bool = False
    dst: tuple[str, str] | None = None
    dst_negated: bool = False


@dataclass(frozen=True, slots=True)
class OwnerMatch:
    """``-m owner`` (OUTPUT/POSTROUTING only): the sending socket's uid/gid. A packet with
    no local socket matches iff every option given is negated (xt_owner)."""

    options: tuple[Option, ...]


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
    | IPRangeMatch
    | OwnerMatch
    | OpaqueMatch
    | SetLookup  # nftables (model/nft.py)
    | NumgenMatch
)
