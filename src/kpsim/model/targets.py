"""Typed ``-j`` targets: verdicts, jumps, NAT, marks — and which of them terminate.

    Rule.target ─▶ Standard | Jump | Dnat | Snat | Masquerade | … | OpaqueTarget

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from kpsim.model.values import Option, PortRange


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
class HookEntry(Jump):
    """An nftables base chain, entered from the hook slot that holds it (kube-proxy's
    ``nat-prerouting``, iptables-nft's ``POSTROUTING`` beside it). Each base chain is its
    own hook entry in the kernel: an ``accept`` ends only that chain and the packet goes on
    to the next base chain at the hook; the chain's end (or ``return``) is its ``policy``.
    A plain Jump would let the ``accept`` end the whole slot."""

    policy: Verdict = Verdict.ACCEPT


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
class Netmap:
    """``-j NETMAP --to net/len``: keeps the host bits, replaces the network bits — of the
    destination in PREROUTING/OUTPUT, of the source in POSTROUTING/INPUT."""

    to: str


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
    | Netmap
    | MarkTarget
    | ConnmarkTarget
    | Log
    | Ct
    | OpaqueTarget
)

#: Targets after which evaluation goes on with the next rule.
NON_TERMINATING = (MarkTarget, ConnmarkTarget, Log)
