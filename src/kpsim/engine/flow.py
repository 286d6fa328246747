"""The packet in flight: ``Flow`` is the packet at one point of a trace with the kernel
state it has touched so far, ``Hook`` what the kernel knows where a table is walked.

    Flow.start(Packet, State) ─ recent, nth, MARK, CONNMARK, SNAT ─▶ Flow._with(…)
                              └ DNAT, REDIRECT ───────────────────▶ Flow.moved_to(dst, dport)

Built from ``kpsim.engine.packet``'s Packet and State.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kpsim.engine.packet import Packet, RuleKey, State
from kpsim.model.node import IPAddress

_UNTRACKED = frozenset({"UNTRACKED"})
_NEW = frozenset({"NEW"})


@dataclass(frozen=True, slots=True)
class Flow:
    """The packet at one point of a trace, with the kernel state it has touched so far
    (NAT done, marks, recent lists, nth counters). One per branch of the trace."""

    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    protocol: str
    mark: int = 0
    ctmark: int = 0
    recent: frozenset[str] = frozenset()
    nth: tuple[tuple[RuleKey, int], ...] = ()
    dnat: bool = False
    snat: bool = False
    untracked: bool = False
    ctstate: frozenset[str] | None = None

    @classmethod
    def start(cls, packet: Packet, state: State) -> Flow:
        return cls(
            packet.src,
            packet.sport,
            packet.dst,
            packet.dport,
            packet.protocol,
            mark=packet.mark,
            ctmark=state.ctmark,
            recent=state.recent,
            nth=tuple(sorted(state.nth.items())),
            ctstate=state.ctstate,
        )

    def states(self) -> frozenset[str]:
        """The ``--ctstate`` bits the kernel would set now (xt_conntrack)."""
        if self.untracked:
            return _UNTRACKED
        base = self.ctstate if self.ctstate is not None else _NEW
        if not (self.dnat or self.snat):
            return base
        extra = {"DNAT"} if self.dnat else set()
        if self.snat:
            extra.add("SNAT")
        return base | extra

    def counter(self, key: RuleKey, start: int) -> int:
        for k, v in self.nth:
            if k == key:
                return v
        return start

    def with_counter(self, key: RuleKey, value: int) -> Flow:
        rest = tuple(kv for kv in self.nth if kv[0] != key)
        return self._with(nth=(*rest, (key, value)))

    def _with(self, **changes: Any) -> Flow:
        """``dataclasses.replace`` without its per-call field introspection: 1.4-2 µs a
        copy instead of 4 µs. Copies were the top cost of tracing every service of a
        10,000-service dump (bench/run.py), so the hot paths use this."""
        get = changes.get
        return Flow(
            get("src", self.src),
            get("sport", self.sport),
            get("dst", self.dst),
            get("dport", self.dport),
            get("protocol", self.protocol),
            get("mark", self.mark),
            get("ctmark", self.ctmark),
            get("recent", self.recent),
            get("nth", self.nth),
            get("dnat", self.dnat),
            get("snat", self.snat),
            get("untracked", self.untracked),
            get("ctstate", self.ctstate),
        )

    def exact_fields(self) -> tuple[object, ...]:
        """Every field but ``dst``, ``dport`` and ``recent``, which a table sees only
        partly (``prepare.TableView``)."""
        return (
            self.src,
            self.sport,
            self.protocol,
            self.mark,
            self.ctmark,
            self.nth,
            self.dnat,
            self.snat,
            self.untracked,
            self.ctstate,
        )

    def moved_to(
        self, dst: IPAddress, dport: int, dnat: bool, recent: frozenset[str] | None = None
    ) -> Flow:
        """The flow after DNAT/REDIRECT (the commonest copy: one per endpoint)."""
        return Flow(
            self.src,
            self.sport,
            dst,
            dport,
            self.protocol,
            self.mark,
            self.ctmark,
            self.recent if recent is None else recent,
            self.nth,
            dnat,
            self.snat,
            self.untracked,
            self.ctstate,
        )


@dataclass(frozen=True, slots=True)
class Hook:
    """What the kernel knows at a hook: the in interface ("" when there is none) and
    the out interface ("" when none, None when it exists but kpsim cannot tell)."""

    table: str
    chain: str
    in_iface: str
    out_iface: str | None
