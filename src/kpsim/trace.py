"""Exact trace of a connection's first packet through a node's tables.

    from outside:  PREROUTING raw → mangle → nat ─▶ route ─┬▶ INPUT mangle → filter → security → nat
                                                           └▶ FORWARD mangle → filter → security
                                                              ─▶ POSTROUTING mangle → nat
    from the node: OUTPUT raw → mangle → nat → filter → security ─▶ POSTROUTING mangle → nat
                   (to a local address: back in on lo, PREROUTING/INPUT without nat)

``statistic --mode random`` forks the trace with the kernel's exact probability (an integer
over 2^31), so the result is a distribution whose probabilities sum to exactly 1. Anything
kpsim cannot decide stops its branch as UNKNOWN, or is assumed away on request — and the
assumption is written on every outcome it touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import get_args

from kpsim.errors import TraceError
from kpsim.model import Family, Ruleset
from kpsim.packet import Flow, Hook, NodeContext, Packet, State
from kpsim.prepare import build_indexes, with_kube_proxy_base
from kpsim.walk import Branch, Disposition, Run, Step, UnknownMode, Walker

__all__ = [
    "Disposition",
    "Outcome",
    "Step",
    "TraceResult",
    "Tracer",
    "UnknownMode",
    "merge_outcomes",
    "trace",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One way the trace ends, with its exact probability and one path that gets there
    (the most probable of the ``merged`` paths that end the same way)."""

    verdict: Disposition
    probability: Fraction
    destination: tuple[str, int]
    masquerade: bool = False
    snat_to: str | None = None
    path: tuple[Step, ...] = ()
    assumptions: tuple[str, ...] = ()
    reason: str | None = None
    merged: int = 1

    @property
    def key(self) -> tuple[str, tuple[str, int], bool, str, str]:
        """Outcomes with equal keys are one outcome."""
        return (
            self.verdict.value,
            self.destination,
            self.masquerade,
            self.snat_to or "",
            self.reason or "",
        )


@dataclass(frozen=True, slots=True)
class TraceResult:
    packet: Packet
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Fraction:
        return sum((o.probability for o in self.outcomes), Fraction(0))


# ---------------------------------------------------------------- merging


def _path_key(o: Outcome) -> tuple[tuple[str, str, int], ...]:
    return tuple((s.table, s.chain, s.number) for s in o.path)


def merge_outcomes(outcomes: Iterable[Outcome]) -> tuple[Outcome, ...]:
    """Add up outcomes that end the same way. The result does not depend on input order:
    ties between equally probable paths go to the smallest path."""
    groups: dict[tuple[str, tuple[str, int], bool, str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.key, []).append(o)
    merged = []
    for group in groups.values():
        best = min(group, key=lambda o: (-o.probability, _path_key(o), o.assumptions))
        merged.append(
            replace(
                best,
                probability=sum((o.probability for o in group), Fraction(0)),
                assumptions=tuple(sorted({a for o in group for a in o.assumptions})),
                merged=sum(o.merged for o in group),
            )
        )
    return tuple(sorted(merged, key=lambda o: (-o.probability, o.key)))


# ---------------------------------------------------------------- the pipeline

_PRE = (("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"))
_INPUT = (("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"), ("nat", "INPUT"))
_FORWARD = (("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"))
_POST = (("mangle", "POSTROUTING"), ("nat", "POSTROUTING"))
_OUTPUT = (
    ("raw", "OUTPUT"),
    ("mangle", "OUTPUT"),
    ("nat", "OUTPUT"),
    ("filter", "OUTPUT"),
    ("security", "OUTPUT"),
)
#: Back in on lo: the connection's NAT is already bound, so nat is not consulted again.
_LOOP_IN = _PRE[:2] + _INPUT[:3]


class Tracer:
    """Prepares a ruleset once (kube-proxy base chains, per-chain indexes) and traces
    many packets: ``Tracer(rs, NodeContext.of(["10.0.1.5"])).trace(Packet.of(...))``."""

    def __init__(
        self,
        ruleset: Ruleset,
        context: NodeContext | None = None,
        *,
        unknown: UnknownMode = "stop",
    ) -> None:
        self.ruleset = ruleset
        self.node = context or NodeContext()
        self.unknown = _check_mode(unknown)
        self.tables, note = with_kube_proxy_base(ruleset)
        self.notes: tuple[str, ...] = (note,) if note else ()
        self._walker = Walker(self.tables, build_indexes(self.tables), self.node)

    # -------------------------------------------------------------- public

    def trace(
        self, packet: Packet, state: State | None = None, *, unknown: UnknownMode | None = None
    ) -> TraceResult:
        """Every way the packet's connection can end, with exact probabilities."""
        state = state or State()
        want = 6 if self.ruleset.family is Family.IPV6 else 4
        if packet.src.version != want or packet.dst.version != want:
            raise TraceError(f"packet {packet} is not IPv{want}, as the ruleset is")
        run = Run(_check_mode(unknown or self.unknown))
        start = Branch(Fraction(1), Flow.start(packet, state))
        ends: list[Outcome] = []
        notes = list(self.notes)
        if self.node.is_local(packet.src):
            notes.append("source is a local address: traced as locally generated (OUTPUT)")
            out = self._stages(run, _OUTPUT + _POST, [start], "", ends)
            self._deliver(run, out, "lo", _LOOP_IN, ends)
        else:
            pre = self._stages(run, _PRE, [start], packet.in_interface, ends)
            self._deliver(run, pre, packet.in_interface, _INPUT, ends, forward=True)
        if self.node.local == NodeContext().local:
            notes.append("no node addresses given: only loopback counts as local")
        notes.extend(state.describe())
        return TraceResult(packet, merge_outcomes(ends), tuple(notes))

    # -------------------------------------------------------------- stages

    def _deliver(
        self,
        run: Run,
        branches: list[Branch],
        in_iface: str,
        local_hooks: tuple[tuple[str, str], ...],
        ends: list[Outcome],
        *,
        forward: bool = False,
    ) -> None:
        """Route each branch: to a local address through ``local_hooks``; elsewhere
        (from outside) through FORWARD and POSTROUTING, (from the node) straight out."""
        local = [b for b in branches if self.node.is_local(b.flow.dst)]
        remote = [b for b in branches if not self.node.is_local(b.flow.dst)]
        for b in self._stages(run, local_hooks, local, in_iface, ends):
            verdict = Disposition.DNAT if b.flow.dnat and not b.redirected else Disposition.LOCAL
            ends.append(_outcome(b, verdict, None))
        if forward:
            remote = self._stages(run, _FORWARD + _POST, remote, in_iface, ends)
        for b in remote:
            ends.append(_outcome(b, Disposition.DNAT if b.flow.dnat else Disposition.ACCEPT, None))

    def _stages(
        self,
        run: Run,
        hooks: tuple[tuple[str, str], ...],
        branches: list[Branch],
        in_iface: str,
        ends: list[Outcome],
    ) -> list[Branch]:
        """Run branches through hooks in order; finished branches go to ``ends``."""
        for table, chain in hooks:
            if table not in self.tables:
                continue
            nxt: list[Branch] = []
            for b in branches:
                if table == "nat" and b.flow.untracked:  # NOTRACK: nat never sees it
                    nxt.append(b)
                    continue
                hook = self._hook(table, chain, in_iface, b)
                for end, verdict, reason in self._walker.run_hook(run, hook, b):
                    if verdict is None:
                        nxt.append(end)
                    else:
                        ends.append(_outcome(end, verdict, reason))
            branches = nxt
        return branches

    def _hook(self, table: str, chain: str, in_iface: str, b: Branch) -> Hook:
        """Interfaces as the kernel knows them at this hook."""
        out: str | None = ""
        if chain in ("FORWARD", "OUTPUT", "POSTROUTING"):
            out = self.node.out_interface(b.flow.dst)
        if chain in ("OUTPUT", "POSTROUTING"):
            in_iface = ""
        return Hook(table, chain, in_iface, out)


def _outcome(b: Branch, verdict: Disposition, reason: str | None) -> Outcome:
    return Outcome(
        verdict,
        b.prob,
        (str(b.flow.dst), b.flow.dport),
        b.masquerade,
        b.snat_to,
        b.path,
        b.assumptions,
        reason,
    )


def _check_mode(mode: str) -> UnknownMode:
    if mode not in get_args(UnknownMode):
        raise TraceError(f"unknown mode {mode!r}: use one of {', '.join(get_args(UnknownMode))}")
    return mode  # type: ignore[return-value]


def trace(
    ruleset: Ruleset,
    packet: Packet,
    context: NodeContext | None = None,
    state: State | None = None,
    *,
    unknown: UnknownMode = "stop",
) -> TraceResult:
    """One-shot: prepare and trace. Use ``Tracer`` to trace many packets."""
    return Tracer(ruleset, context, unknown=unknown).trace(packet, state)
