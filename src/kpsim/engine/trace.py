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

from collections.abc import Hashable
from fractions import Fraction
from typing import get_args

from kpsim.engine import walk
from kpsim.engine.base_chains import with_kube_proxy_base
from kpsim.engine.branch import Branch, Disposition, End, Run, Step, UnknownMode
from kpsim.engine.flow import Flow, Hook
from kpsim.engine.outcome import NOT_DELIVERED, Outcome, TraceResult, merge_outcomes
from kpsim.engine.packet import Packet, State
from kpsim.engine.prepare import build_indexes
from kpsim.engine.replay import Replay, neutral, remember
from kpsim.engine.unseen import (
    POSTROUTING_UNSEEN,
    capture_assumptions,
    unseen_hooks,
    unseen_table,
)
from kpsim.engine.walk import Walker
from kpsim.errors import TraceError
from kpsim.model import Family, Ruleset
from kpsim.model.node import NodeContext

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

_NEW_CLIENT = State()
_NEW_CLIENT_NOTES = _NEW_CLIENT.describe()
_UNSEEN = object()  # no pipeline walk remembered for this key yet


class Tracer:
    """Prepares a ruleset once (kube-proxy base chains, per-chain indexes) and traces
    many packets: ``Tracer(rs, NodeContext.of(["10.0.1.5"])).trace(Packet.of(...))``."""

    def __init__(
        self,
        ruleset: Ruleset,
        context: NodeContext | None = None,
        *,
        unknown: UnknownMode = "stop",
        memo: bool = True,
    ) -> None:
        """``memo``: replay remembered walks for flows that look alike to them (the
        answers are the same either way; off, every hook is walked)."""
        self.ruleset = ruleset
        self.node = context or NodeContext()
        self.unknown = _check_mode(unknown)
        self.capture = ruleset.capture
        self.tables, note = with_kube_proxy_base(ruleset)
        self.notes: tuple[str, ...] = (note,) if note else ()
        self._walker = Walker(
            self.tables, build_indexes(self.tables), self.node, memo=memo, capture=self.capture
        )
        self._loopback_only = self.node.local == NodeContext().local
        #: Whole FORWARD/POSTROUTING (or local-delivery) walks, by what they can see;
        #: None when the walk cannot be replayed for another flow.
        self._pipelines: dict[Hashable, Replay | None] = {}
        self._in_iface = ""  # the traced packet's in interface (an outcome's egress)

    # -------------------------------------------------------------- public

    def trace(
        self, packet: Packet, state: State | None = None, *, unknown: UnknownMode | None = None
    ) -> TraceResult:
        """Every way the packet's connection can end, with exact probabilities."""
        want = 6 if self.ruleset.family is Family.IPV6 else 4
        if packet.src.version != want or packet.dst.version != want:
            raise TraceError(f"packet {packet} is not IPv{want}, as the ruleset is")
        run = Run(_check_mode(unknown or self.unknown))
        self._in_iface = packet.in_interface
        start = Branch(Fraction(1), Flow.start(packet, state or _NEW_CLIENT))
        ends: list[End] = []
        notes = list(self.notes)
        if Walker.facts(run, self.node, packet.src)[2]:
            notes.append("source is a local address: traced as locally generated (OUTPUT)")
            out = self._stages(run, _OUTPUT + _POST, [start], "", ends)
            self._deliver(run, out, "lo", _LOOP_IN, ends)
        else:
            pre = self._stages(run, _PRE, [start], packet.in_interface, ends)
            self._deliver(run, pre, packet.in_interface, _INPUT, ends, forward=True)
        if self._loopback_only:
            notes.append("no node addresses given: only loopback counts as local")
        notes.extend(_NEW_CLIENT_NOTES if state is None else state.describe())
        outcomes = merge_outcomes(self._outcome(b, v, r) for b, v, r in ends if v is not None)
        return TraceResult(packet, outcomes, tuple(notes))

    # -------------------------------------------------------------- stages

    def _deliver(
        self,
        run: Run,
        branches: list[Branch],
        in_iface: str,
        local_hooks: tuple[tuple[str, str], ...],
        ends: list[End],
        *,
        forward: bool = False,
    ) -> None:
        """Route each branch: to a local address through ``local_hooks``; elsewhere
        (from outside) through FORWARD and POSTROUTING, (from the node) straight out."""
        local: list[Branch] = []
        remote: list[Branch] = []
        for b in branches:
            (local if Walker.facts(run, self.node, b.flow.dst)[2] else remote).append(b)
        for b in self._through(run, local_hooks, local, in_iface, ends):
            # REDIRECT is a DNAT to the node's own address and a new port: said as such.
            verdict = Disposition.DNAT if b.flow.dnat or b.redirected else Disposition.LOCAL
            ends.append((b, verdict, None))
        if forward:
            remote = self._through(run, _FORWARD + _POST, remote, in_iface, ends)
        for b in remote:
            ends.append((b, Disposition.DNAT if b.flow.dnat else Disposition.ACCEPT, None))

    def _through(
        self,
        run: Run,
        hooks: tuple[tuple[str, str], ...],
        branches: list[Branch],
        in_iface: str,
        ends: list[End],
    ) -> list[Branch]:
        """``_stages`` for the branches DNAT left, replayed whole when every branch's
        flow looks like one seen before (``walk.Replay``): after DNAT to each endpoint,
        FORWARD and POSTROUTING take the same rules for every pod address. Measured on
        the 10,000-service bench: one lookup a branch instead of four hook walks."""
        if not branches or not self._walker.memo or self._unseen(hooks):
            return self._stages(run, hooks, branches, in_iface, ends)
        hooks = tuple(h for h in hooks if h[0] in self.tables)
        keys = [self._pipeline_key(run, hooks, in_iface, b.flow) for b in branches]
        memos: list[object] = [self._pipelines.get(k, _UNSEEN) for k in keys]
        replays = [m for m in memos if isinstance(m, Replay)]
        if len(replays) == len(branches) and _fits(run, replays):
            survivors = []
            for b, memo in zip(branches, replays, strict=True):
                for end in memo.replay(run, b):
                    if end[1] is None:
                        survivors.append(end[0])
                    else:
                        ends.append(end)
            return survivors
        survivors = self._stages(run, hooks, branches, in_iface, ends)
        for b, key, found in zip(branches, keys, memos, strict=True):
            if found is _UNSEEN:
                self._record(run.unknown, hooks, in_iface, b.flow, key)
        return survivors

    def _pipeline_key(
        self, run: Run, hooks: tuple[tuple[str, str], ...], in_iface: str, flow: Flow
    ) -> Hashable:
        seen = self._walker.seen(run, hooks, flow)
        return (hooks, in_iface, run.unknown, flow.exact_fields(), seen)

    def _record(
        self,
        unknown: UnknownMode,
        hooks: tuple[tuple[str, str], ...],
        in_iface: str,
        flow: Flow,
        key: Hashable,
    ) -> None:
        """Walk the hooks once more from a neutral branch, on a budget of its own, and
        remember the result if it can be replayed (else remember that it cannot)."""
        run = Run(unknown)
        ends: list[End] = []
        survivors = self._stages(run, hooks, [neutral(flow)], in_iface, ends)
        everything = (*ends, *((b, None, None) for b in survivors))
        memo = Replay(everything, run.rules, run.forks, flow)
        ok = run.rules <= walk.MAX_RULES and run.forks <= walk.MAX_BRANCHES
        ok = ok and memo.replayable(flow)
        remember(self._pipelines, key, memo if ok else None)

    def _stages(
        self,
        run: Run,
        hooks: tuple[tuple[str, str], ...],
        branches: list[Branch],
        in_iface: str,
        ends: list[End],
    ) -> list[Branch]:
        """Run branches through hooks in order; finished branches go to ``ends``."""
        for table, chain in hooks:
            if table not in self.tables:
                if self.capture.has_table(table) is None:  # not captured, not known empty
                    branches = unseen_table(table, chain, branches, ends)
                continue
            nxt: list[Branch] = []
            for b in branches:
                if table == "nat" and b.flow.untracked:  # NOTRACK: nat never sees it
                    nxt.append(b)
                    continue
                hook = self._hook(run, table, chain, in_iface, b)
                for end in self._walker.run_hook(run, hook, b):
                    if end[1] is None:
                        nxt.append(end[0])
                    else:
                        ends.append(end)
            branches = nxt
        return branches

    def _unseen(self, hooks: tuple[tuple[str, str], ...]) -> bool:
        """Do these hooks meet a table the capture does not show (nor know empty)?"""
        return any(t not in self.tables and self.capture.has_table(t) is None for t, _ in hooks)

    def _outcome(self, b: Branch, verdict: Disposition, reason: str | None) -> Outcome:
        """An end as an outcome, with what the capture could not show written on it.
        Masquerade is stated only for packets that go on (None when nat POSTROUTING was
        not captured)."""
        masquerade: bool | None = b.masquerade
        if verdict in NOT_DELIVERED or POSTROUTING_UNSEEN in b.assumptions:
            masquerade = None
        capture = self.capture
        assumptions = unseen_hooks(b.assumptions)
        if not capture.interfaces_known or capture.unsure is not None:
            assumptions = assumptions + capture_assumptions(capture, b.path)
        if self.node.inferred and verdict not in NOT_DELIVERED:
            why = self.node.inferred_route(b.flow.dst)
            if why is not None and not self.node.is_local(b.flow.dst):
                assumptions = (*assumptions, why)
        f = b.flow
        egress = None
        if verdict not in NOT_DELIVERED:
            egress = self.node.route(f.dst, f.src, f.mark, self._in_iface)
        return Outcome(
            verdict,
            b.prob,
            (str(f.dst), f.dport),
            masquerade,
            b.snat_to,
            b.path,
            assumptions,
            reason,
            egress=egress,
        )

    def _hook(self, run: Run, table: str, chain: str, in_iface: str, b: Branch) -> Hook:
        """Interfaces as the kernel knows them at this hook."""
        out: str | None = ""
        if chain in ("FORWARD", "OUTPUT", "POSTROUTING"):
            f = b.flow
            if self.node.policy:  # policy rules: the source and mark choose the table
                out = self.node.route(f.dst, f.src, f.mark, in_iface)
            else:
                out = Walker.facts(run, self.node, f.dst)[3]
        if chain in ("OUTPUT", "POSTROUTING"):
            in_iface = ""
        return Hook(table, chain, in_iface, out)


def _fits(run: Run, replays: list[Replay]) -> bool:
    """Would replaying all of these stay within the run's budgets? (Then no budget
    check fires, and the order the branches are taken in cannot matter.)"""
    return (
        run.rules + sum(r.rules for r in replays) <= walk.MAX_RULES
        and run.forks + sum(r.forks for r in replays) <= walk.MAX_BRANCHES
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
