"""Walking one table's built-in chain for one branch of a trace.

    nat PREROUTING ─▶ KUBE-SERVICES ─▶ KUBE-SVC-X ─┬ p   ─▶ KUBE-SEP-A ─▶ DNAT (hook ends)
                                                   └ 1-p ─▶ next rule …

Rules are taken in order; a ``statistic --mode random`` match forks the branch in two with
exact weights; jumps push a frame, gotos replace one, RETURN pops. A hook ends with a
verdict (DROP, REJECT, UNKNOWN) or with "go on to the next table" (ACCEPT, NAT, policy).

walk.py walks (the Walker, its budgets); replay.py remembers walks; branch.py holds what
a walk carries (Branch, Step, Run), match.py decides one rule's alternatives and
target.py applies the rewriting targets (NAT, CONNMARK); unseen.py answers where the
capture shows nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from kpsim.engine.branch import Branch, Disposition, End, Run, Step, UnknownMode
from kpsim.engine.flow import Flow, Hook
from kpsim.engine.match import _HIT, _STOP, Alternative, _evaluate, _where
from kpsim.engine.prepare import ChainIndexes, TableView, reachable
from kpsim.engine.replay import MEMO_MAX, Replay, neutral, remember
from kpsim.engine.target import _connmark, _nat
from kpsim.engine.unseen import DECIDES_DESTINATION, uncaptured_text
from kpsim.model import (
    Capture,
    Chain,
    ConnmarkTarget,
    Ct,
    HookEntry,
    Jump,
    Log,
    MarkTarget,
    OpaqueTarget,
    RecentCommand,
    RecentMatch,
    Reject,
    Rule,
    Standard,
    Verdict,
)
from kpsim.model.node import AddressFacts, IPAddress, NodeContext

__all__ = [
    "FUTILE_WALKS",
    "MAX_BRANCHES",
    "MAX_DEPTH",
    "MAX_RULES",
    "MEMO_MAX",
    "PASSIVE_TARGETS",
    "Alternative",
    "Branch",
    "Disposition",
    "End",
    "Frame",
    "Replay",
    "Run",
    "Step",
    "UnknownMode",
    "Walker",
    "neutral",
    "remember",
]

MAX_DEPTH = 64  # jump-stack depth; real rulesets stay far below
MAX_BRANCHES = 100_000  # forks per trace before the rest is reported UNKNOWN
MAX_RULES = 2_000_000  # rule evaluations per trace (guards diamond-shaped chain graphs)
#: After this many walks of a hook in a row that could not be remembered, only every
#: this-many-th walk tries: the memo key and the join cost 7% of a ClusterIP trace (bench).
FUTILE_WALKS = 16

#: Targets that only touch headers or logging: evaluation goes on after them.
_PASSIVE = "NFLOG TRACE CHECKSUM TCPMSS TOS DSCP TTL HL CLASSIFY AUDIT SECMARK CONNSECMARK ULOG"
PASSIVE_TARGETS = frozenset(_PASSIVE.split()) | {"IDLETIMER", "LED", "NOTRACK"}


Frame = tuple[Chain, Sequence[int], int, frozenset[str]]  # chain, candidates, cursor, gotos

#: A candidate index that stands for rules the capture does not show (``Capture.limits``):
#: a walk that reaches it cannot know what the hidden rules would have done.
HIDDEN = -1


class Walker:
    """Walks hooks over prepared tables; shared by every trace of a ``Tracer``."""

    def __init__(
        self,
        tables: Mapping[str, Mapping[str, Chain]],
        index: ChainIndexes,
        node: NodeContext,
        *,
        memo: bool = True,
        capture: Capture | None = None,
    ) -> None:
        self.tables = tables
        self.index = index
        self.node = node
        self.memo = memo
        self.capture = capture or Capture()
        self._views: dict[tuple[tuple[str, str], ...], TableView] = {}
        self._memo: dict[Hashable, Replay] = {}
        self._futile: dict[tuple[str, str], int] = {}
        self._policy_steps: dict[tuple[str, str], Step] = {}

    def _frame(self, table: str, chain: Chain, flow: Flow, gotos: frozenset[str]) -> Frame:
        idx = self.index.get((table, chain.name))
        cands: Sequence[int] = idx.candidates(flow) if idx else range(len(chain.rules))
        limit = self.capture.limits.get((table, chain.name)) if self.capture.limits else None
        if limit is not None:  # rules after ``limit`` may be missing: stop where they start
            rules = chain.rules
            cands = [*(i for i in cands if rules[i].number <= limit), HIDDEN]
        return (chain, cands, 0, gotos | {chain.name})

    def _hidden(self, table: str, chain: str) -> str:
        """Why a walk stopped where the capture stops showing a chain's rules."""
        gap = self.capture.gap_for(table, chain)
        why = f" ({gap.message})" if gap is not None else ""
        return f"{table} {chain}: the capture does not show all its rules{why}"

    def run_hook(self, run: Run, hook: Hook, start: Branch) -> list[End]:
        """Walk one table's built-in chain; forks wait on a work list.

        The walk starts from a neutral branch and is joined to ``start`` (``Replay``);
        a walk that rewrote no destination is remembered and replayed for any flow that
        looks the same to this hook. A hook whose walks keep rewriting (nat PREROUTING:
        every ClusterIP trace ends in DNAT) is walked from ``start`` directly, and tried
        again now and then. Both give the same ends; the memo is only about speed."""
        chain = self.tables[hook.table].get(hook.chain)
        if chain is None:
            return [self._uncaptured(hook, start)]
        where = (hook.table, hook.chain)
        futile = self._futile.get(where)
        if futile is None or not self.memo:
            # A hook's first walk is not remembered: a one-off trace would pay for the
            # view of its table for nothing (nat PREROUTING of the bench: a 0.2 s scan).
            self._futile[where] = 0
            return self._run(run, hook, chain, start)
        if futile >= FUTILE_WALKS and futile % FUTILE_WALKS:
            self._futile[where] = futile + 1
            return self._run(run, hook, chain, start)
        flow = start.flow
        key = (hook, run.unknown, flow.exact_fields(), self.seen(run, (where,), flow))
        memo = self._memo.get(key)
        if memo is not None and memo.fits(run, MAX_RULES, MAX_BRANCHES):
            return memo.replay(run, start)
        rules, forks = run.rules, run.forks
        ends = self._run(run, hook, chain, neutral(flow))
        memo = Replay(tuple(ends), run.rules - rules, run.forks - forks, flow)
        if run.rules <= MAX_RULES and run.forks <= MAX_BRANCHES and memo.replayable(flow):
            remember(self._memo, key, memo)
            self._futile[where] = 0
        else:
            self._futile[where] = futile + 1
        return memo.join(start)

    def _uncaptured(self, hook: Hook, start: Branch) -> End:
        """A built-in chain the input did not show. Known empty (a whole save prints every
        built-in chain of its tables): the packet goes on. Not captured: nat PREROUTING
        and OUTPUT decide the destination, so the answer is UNKNOWN; elsewhere the packet
        goes on under a stated assumption (nat POSTROUTING: masquerade unknown)."""
        where = (hook.table, hook.chain)
        if self.capture.builtin_captured(*where):
            return (start, None, None)
        if where in DECIDES_DESTINATION:
            return (start, Disposition.UNKNOWN, f"{hook.table} {hook.chain} not captured")
        return (start.assume(uncaptured_text(hook.table, hook.chain)), None, None)

    def seen(self, run: Run, hooks: tuple[tuple[str, str], ...], flow: Flow) -> Hashable:
        """What walks of these built-in chains can observe of the flow's destination
        and recent lists (``TableView``), and the node's answers about the destination:
        its address type and owner (``-m addrtype``), whether it is local and the
        interface a packet to it leaves by."""
        view = self._views.get(hooks)
        if view is None:
            view = TableView(c for t, name in hooks for c in reachable(self.tables[t], name))
            self._views[hooks] = view
        return (view.of(flow), self.facts(run, self.node, flow.dst))

    @staticmethod
    def facts(run: Run, node: NodeContext, dst: IPAddress) -> AddressFacts:
        """The node's answers about ``dst``, remembered for the run: a trace asks them
        about each destination three times or so. (Per run, not per Walker: on the
        bench every endpoint address is new, and a long-lived cache of them only gave
        the garbage collector more to scan.)"""
        found = run.facts.get(dst)
        if found is None:
            found = run.facts[dst] = node.facts(dst)
        return found

    def _run(self, run: Run, hook: Hook, chain: Chain, start: Branch) -> list[End]:
        ends: list[End] = []
        work: list[tuple[Branch, list[Frame], Rule | None]] = [
            (start, [self._frame(hook.table, chain, start.flow, frozenset())], None)
        ]
        while work:
            b, frames, pending = work.pop()
            ends.append(self._walk(run, hook, b, frames, pending, work, ends))
        return ends

    def _walk(
        self,
        run: Run,
        hook: Hook,
        b: Branch,
        frames: list[Frame],
        pending: Rule | None,
        work: list[tuple[Branch, list[Frame], Rule | None]],
        ends: list[End],
    ) -> End:
        """Follow one branch until its hook ends; a fork pushes the other alternatives."""
        while True:
            if pending is not None:
                b, end = self._apply(hook, pending, b, frames)
                pending = None
                if end is not None:
                    return end
                continue
            chain, cands, cursor, gotos = frames[-1]
            if cursor >= len(cands):
                if len(frames) == 1:
                    return self._policy(hook, chain, b)
                if len(frames) == 2 and _entry_policy(frames) is Verdict.DROP:
                    return (b, Disposition.DROP, None)  # an nft base chain's policy drop
                frames.pop()
                continue
            at = cands[cursor]
            if at < 0:
                return (b, Disposition.UNKNOWN, self._hidden(hook.table, chain.name))
            # a sketched chain read on demand builds only the rules walked (``Chain.rule``)
            rule = chain.rules[at] if type(chain) is Chain else chain.rule(at)
            frames[-1] = (chain, cands, cursor + 1, gotos)
            run.rules += 1
            if run.rules > MAX_RULES:
                return (b, Disposition.UNKNOWN, f"stopped after {MAX_RULES} rule evaluations")
            alts = _evaluate(self.node, run, hook, rule, b)
            for alt, kind, reason in alts[1:]:
                run.forks += 1
                if run.forks > MAX_BRANCHES:
                    ends.append((alt, Disposition.UNKNOWN, f"over {MAX_BRANCHES} branches"))
                elif kind == _STOP:
                    ends.append((alt, Disposition.UNKNOWN, reason))
                else:
                    work.append((alt, list(frames), rule if kind == _HIT else None))
            b, kind, reason = alts[0]
            if kind == _STOP:
                return (b, Disposition.UNKNOWN, reason)
            pending = rule if kind == _HIT else None

    def _policy(self, hook: Hook, chain: Chain, b: Branch) -> End:
        """End of a built-in chain (or RETURN from it): the policy decides."""
        step = self._policy_steps.get((hook.table, chain.name))
        if step is None:  # a handful of built-in chains: their steps are shared
            step = Step(hook.table, chain.name, 0, None)
            self._policy_steps[(hook.table, chain.name)] = step
        b = b.extend(step)
        if chain.policy in (None, Verdict.ACCEPT):
            return (b, None, None)
        if chain.policy is Verdict.DROP:
            return (b, Disposition.DROP, None)
        return (b, Disposition.UNKNOWN, f"policy {chain.policy.value} is not modelled")

    # -------------------------------------------------------------- targets (rewrites: target.py)

    def _apply(
        self, hook: Hook, rule: Rule, b: Branch, frames: list[Frame]
    ) -> tuple[Branch, End | None]:
        """Act on a matched rule's target; returns the branch and, if the hook ended, how."""
        t = rule.target
        if t is None:  # a counting rule; one that adds the client to a recent list (nft's
            # ``update @affinity-… { ip saddr }``) is on the path, where affinity reads it
            if any(type(m) is RecentMatch and m.command is RecentCommand.SET for m in rule.matches):
                b = b.extend(Step(hook.table, rule.chain, rule.number, rule))
            return b, None
        b = b.extend(Step(hook.table, rule.chain, rule.number, rule))
        if isinstance(t, Jump):  # the commonest target first
            return b, self._jump(hook, rule, t, b, frames)
        f = b.flow
        if isinstance(t, MarkTarget):
            return b.with_flow(f._with(mark=t.apply(f.mark))), None
        if isinstance(t, ConnmarkTarget):
            return b.with_flow(_connmark(t, f)), None
        if isinstance(t, Ct):
            return (b.with_flow(f._with(untracked=True)) if t.notrack else b), None
        if isinstance(t, Log) or (isinstance(t, OpaqueTarget) and t.name in PASSIVE_TARGETS):
            return b, None
        if isinstance(t, Standard):
            return b, self._standard(hook, t.verdict, b, frames)
        if isinstance(t, Reject):
            return b, (b, Disposition.REJECT, None)
        return _nat(self.node, hook, rule, b)

    def _standard(self, hook: Hook, v: Verdict, b: Branch, frames: list[Frame]) -> End | None:
        if v is Verdict.ACCEPT:
            if len(frames) > 1 and _entry_policy(frames) is not None:
                del frames[1:]  # ends this nft base chain; the next one at the hook runs
                return None
            return (b, None, None)
        if v is Verdict.DROP:
            return (b, Disposition.DROP, None)
        if v is Verdict.RETURN:
            if len(frames) == 1:
                return self._policy(hook, frames[0][0], b)
            if len(frames) == 2 and _entry_policy(frames) is Verdict.DROP:
                return (b, Disposition.DROP, None)  # return from a base chain: its policy
            frames.pop()
            return None
        return (b, Disposition.UNKNOWN, f"{v.value} hands the packet to user space")

    def _jump(self, hook: Hook, rule: Rule, t: Jump, b: Branch, frames: list[Frame]) -> End | None:
        """-j pushes a frame, -g replaces the top one; loops and missing chains are UNKNOWN."""
        target = self.tables[hook.table].get(t.chain)
        if target is None:
            where = _where(hook.table, rule)
            line = f" (line {rule.origin.line})" if rule.origin and rule.origin.line else ""
            return (
                b,
                Disposition.UNKNOWN,
                f"{where}{line} jumps to chain {t.chain}, which is not in the capture",
            )
        for fr in frames:
            if t.chain in fr[3]:
                where = _where(hook.table, rule)
                return (
                    b,
                    Disposition.UNKNOWN,
                    f"{where}: loop, {t.chain} is already being evaluated",
                )
        if len(frames) >= MAX_DEPTH:
            where = _where(hook.table, rule)
            return (b, Disposition.UNKNOWN, f"{where}: jump depth over {MAX_DEPTH}")
        if t.goto:
            frames[-1] = self._frame(hook.table, target, b.flow, frames[-1][3])
        else:
            frames.append(self._frame(hook.table, target, b.flow, frozenset()))
        return None


def _entry_policy(frames: list[Frame]) -> Verdict | None:
    """The policy of the nft base chain the walk is in (a HookEntry the hook slot took
    last), or None when the slot's last rule was not one (iptables' plain jumps)."""
    chain, cands, cursor, _ = frames[0]
    if not cursor:
        return None
    at = cands[cursor - 1]
    target = (chain.rules[at] if type(chain) is Chain else chain.rule(at)).target
    return target.policy if isinstance(target, HookEntry) else None
