"""What a trace starts from: the packet, the node it meets, and the assumptions
about state the kernel would keep (recent lists, conntrack, nth counters).

    Packet ──▶ Tracer(ruleset, NodeContext).trace(packet, State()) ──▶ TraceResult

Every stateful answer comes from ``State`` so a what-if ("this client already has
affinity to KUBE-SEP-X") is an explicit input, never a guess inside the engine.

packet.py holds the inputs (Packet, State); its neighbours: flow.py (Flow and Hook: the
packet in flight), answers.py (how each match answers); the node itself (NodeContext and
addresses) is part of the model (kpsim.model.node). Imports go packet ◀─ flow ◀─ answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from kpsim.model.node import IPAddress, ip

#: A rule's identity for per-rule kernel state: (table, chain, rule number).
RuleKey = tuple[str, str, int]

#: -p values as numbers, mapped to the names the rest of kpsim uses.
PROTOCOL_NUMBERS = MappingProxyType({"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp"})


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a new connection. ``mark`` is the skb mark on arrival."""

    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    protocol: str = "tcp"
    in_interface: str = "eth0"
    mark: int = 0

    @classmethod
    def of(
        cls,
        src: str | IPAddress,
        dst: str | IPAddress,
        dport: int,
        *,
        sport: int = 40000,
        protocol: str = "tcp",
        in_interface: str = "eth0",
        mark: int = 0,
    ) -> Packet:
        """Build from text addresses: ``Packet.of("203.0.113.9", "10.0.1.5", 30080)``."""
        return cls(ip(src), sport, ip(dst), dport, protocol.lower(), in_interface, mark)

    def __str__(self) -> str:
        return f"{self.protocol} {self.src}:{self.sport} → {self.dst}:{self.dport}"


@dataclass(frozen=True, slots=True)
class State:
    """Assumptions about kernel state before the packet arrives.

    The default is a new client with no history: no ``recent`` entries, conntrack
    state NEW, ctmark 0, and every ``statistic --mode nth`` counter where the kernel
    starts it (``every - 1 - packet``: the first packet to reach the rule is packet 0).
    ``recent`` names the lists that hold a fresh entry for this packet's address
    (``--seconds``/``--hitcount`` are then taken as satisfied).
    """

    recent: frozenset[str] = frozenset()
    ctstate: frozenset[str] | None = None  # None: NEW (+ DNAT/SNAT once NAT happened)
    ctmark: int = 0
    nth: Mapping[RuleKey, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def with_affinity(cls, *lists: str) -> State:
        """What-if: the client already has an entry in these recent lists."""
        return cls(recent=frozenset(lists))

    def describe(self) -> tuple[str, ...]:
        """The assumptions in words, for a result's notes."""
        out = []
        if self.recent:
            out.append("assumed a fresh recent entry in: " + ", ".join(sorted(self.recent)))
        else:
            out.append("assumed a new client: no recent-list entries (no affinity yet)")
        if self.ctstate is None:
            out.append("assumed conntrack state NEW (first packet of the connection)")
        else:
            out.append("assumed conntrack state " + ",".join(sorted(self.ctstate)))
        out.append(f"assumed ctmark {self.ctmark:#x}")
        for (t, c, n), v in sorted(self.nth.items()):
            out.append(f"assumed nth counter of {t} {c} rule {n} at {v}")
        return tuple(out)
