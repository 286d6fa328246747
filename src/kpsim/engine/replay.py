"""Remembered walks: the ends of a walk from a neutral branch, replayed for any flow that
looks the same to the walk, and joined to the branch that asked.

    Walker.run_hook(hook, branch) ─ memo[(hook, what the walk can see of the flow)] ─▶ Replay
        ─ join(branch) / replay(run, branch) ─▶ the same ends the walk would give
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from kpsim.engine.branch import _ONE, Branch, End, Run
from kpsim.engine.flow import Flow
from kpsim.model import Dnat, Redirect, Snat

_T = TypeVar("_T")

MEMO_MAX = 65_536  # remembered hook walks per Walker; the memo is emptied when full


@dataclass(frozen=True, slots=True)
class Replay:
    """The ends of a walk (one hook, or several in a row) from a neutral branch —
    probability 1, empty path — with the rule and fork budget it used. Nothing in a walk
    reads a branch's probability, path or flags, only its flow; so ``join`` gives what
    walking from any branch would, and ``replay`` what walking any flow would that looks
    the same to the walk (``prepare.TableView``), as long as the walk rewrote no
    destination and no recent list (``replayable``)."""

    ends: tuple[End, ...]
    rules: int
    forks: int
    origin: Flow  # the flow walked: an end still holding it was left unchanged

    def replayable(self, start: Flow) -> bool:
        return not any(_rewrote(end[0], start) for end in self.ends)

    def fits(self, run: Run, max_rules: int, max_forks: int) -> bool:
        """Would replaying this stay within the run's budgets (the walker's limits)?"""
        return run.rules + self.rules <= max_rules and run.forks + self.forks <= max_forks

    def join(self, start: Branch) -> list[End]:
        """The ends as if the walk had started from ``start``."""
        return [_join(start, end, None, self.origin) for end in self.ends]

    def replay(self, run: Run, start: Branch) -> list[End]:
        """The ends for ``start``'s flow; charges the budget the walk used."""
        run.rules += self.rules
        run.forks += self.forks
        return [_join(start, end, start.flow, self.origin) for end in self.ends]


def _targets(b: Branch) -> Iterator[object]:
    """The path's targets, last first (DNAT, REDIRECT and SNAT end a hook)."""
    return (step.rule.target for step in reversed(b.path) if step.rule is not None)


def _rewrote(b: Branch, start: Flow) -> bool:
    """Did DNAT or REDIRECT (which read and set the destination) act, or did the recent
    lists change? Such a walk is not replayed for another flow."""
    return b.flow.recent != start.recent or any(isinstance(t, Dnat | Redirect) for t in _targets(b))


def _join(start: Branch, end: End, seen: Flow | None, origin: Flow) -> End:
    """``end`` of a walk of ``origin`` from a neutral branch, as if the walk had started
    from ``start``; replayed for flow ``seen``, with its destination and recent lists."""
    rel, verdict, reason = end
    flow = rel.flow
    if seen is not None and flow is origin:  # the walk changed nothing: no copy
        flow = seen
    elif seen is not None and (
        flow.dst != seen.dst or flow.dport != seen.dport or flow.recent != seen.recent
    ):
        flow = flow.moved_to(seen.dst, seen.dport, flow.dnat, seen.recent)
    assumptions = start.assumptions
    for text in rel.assumptions:
        if text not in assumptions:
            assumptions = (*assumptions, text)
    snat_to = start.snat_to
    # SNAT overwrites snat_to, possibly with None: only then is the path worth a look.
    if rel.snat_to is not None or (
        snat_to is not None and any(isinstance(t, Snat) for t in _targets(rel))
    ):
        snat_to = rel.snat_to
    joined = Branch(
        start.prob if rel.prob is _ONE or rel.prob == 1 else start.prob * rel.prob,
        flow,
        start.path + rel.path,
        assumptions,
        start.masquerade or rel.masquerade,
        snat_to,
        start.redirected or rel.redirected,
    )
    return (joined, verdict, reason)


def remember(memo: dict[Hashable, _T], key: Hashable, value: _T) -> None:
    """Store in a memo that is emptied when full, so memory stays bounded."""
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[key] = value


def neutral(flow: Flow) -> Branch:
    """Probability 1, empty path, no flags: where a remembered walk starts."""
    return Branch(_ONE, flow)
