"""Compile the exact engine's answer into something numpy can sample.

    Tracer.trace(fresh client) ─▶ outcomes o₀…oₖ, each with its path
        path steps through KUBE-SVC-X #i (a statistic rule) ─▶ Draw(threshold_i → o)
        the outcome whose path took no statistic rule       ─▶ fall-through
    Tracer.trace(State.with_affinity(L)) for each ``recent --rcheck --name L`` ─▶ Sticky(L → o)

The cascade is checked against the engine before it is used: its exact distribution
(``p_i · Π_{j<i}(1 − p_j)`` with p = threshold/2^31) must equal every outcome's
``Outcome.probability``. When it does not (statistic rules in several chains, a rule
the packet never reaches), the plan falls back to sampling the engine's exact
distribution directly — same shares, but not the kernel's draw-by-draw — and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from kpsim.engine.packet import Packet, RuleKey, State
from kpsim.engine.trace import Outcome, Tracer
from kpsim.model import (
    PROBABILITY_SCALE,
    Chain,
    Jump,
    RecentCommand,
    RecentMatch,
    Rule,
    StatisticMatch,
    StatisticMode,
)


@dataclass(frozen=True, slots=True)
class Draw:
    """One ``statistic`` rule of a cascade, taken to ``outcome`` when it matches.

    random: ``(u32 & 0x7FFFFFFF) < threshold`` (``!`` inverts); nth: the rule's own
    counter wraps to 0 (the kernel keeps ``every - 1`` and starts at ``every - 1 - packet``,
    so the i-th packet reaching the rule, from 0, is taken iff i mod every == packet)."""

    key: RuleKey
    outcome: int
    mode: StatisticMode
    threshold: int = 0
    every: int = 0
    packet: int = 0
    negated: bool = False

    @property
    def probability(self) -> Fraction:
        """Chance one draw is taken (random mode)."""
        p = Fraction(min(self.threshold, PROBABILITY_SCALE), PROBABILITY_SCALE)
        return 1 - p if self.negated else p


@dataclass(frozen=True, slots=True)
class Cascade:
    """First matching draw wins; none matching goes to ``fallthrough``.
    ``categorical`` holds the engine's exact shares when the rules are not one cascade."""

    draws: tuple[Draw, ...]
    fallthrough: int
    categorical: tuple[Fraction, ...] | None = None

    @property
    def has_nth(self) -> bool:
        return any(d.mode is StatisticMode.NTH for d in self.draws)


@dataclass(frozen=True, slots=True)
class Sticky:
    """``-m recent --rcheck --name L --seconds T [--reap]``: a client with a live entry in
    L goes to ``outcome`` before any statistic rule is drawn."""

    name: str
    seconds: int | None
    reap: bool
    outcome: int


@dataclass(frozen=True, slots=True)
class NodePlan:
    """Everything the sampler needs about one entry node for one frontend."""

    node: str
    address: str
    outcomes: tuple[Outcome, ...]
    cascade: Cascade
    sticky: tuple[Sticky, ...] = ()
    sets: tuple[tuple[str, ...], ...] = ()  # per outcome: recent lists its path --sets
    notes: tuple[str, ...] = ()

    @property
    def stateful(self) -> bool:
        return bool(self.sticky) or self.cascade.has_nth


# ---------------------------------------------------------------- building


def _statistic(rule: Rule | None) -> StatisticMatch | None:
    if rule is None:
        return None
    return next((m for m in rule.matches if isinstance(m, StatisticMatch)), None)


def _needs_history(rule: Rule) -> bool:
    """An rcheck/update rule never matches a fresh client: it is not part of the cascade."""
    return any(
        isinstance(m, RecentMatch)
        and m.command in (RecentCommand.RCHECK, RecentCommand.UPDATE)
        and not m.negated
        for m in rule.matches
    )


def exact_shares(
    cascade: Cascade, n_outcomes: int, *, long_run: bool = False
) -> tuple[Fraction, ...]:
    """The cascade's exact distribution for a fresh client: an nth rule as the first packet
    meets it (taken iff ``--packet`` is 0), or with ``long_run`` as the share it takes of
    the packets reaching it over time (1/every)."""
    if cascade.categorical is not None:
        return cascade.categorical
    out = [Fraction(0)] * n_outcomes
    remaining = Fraction(1)
    for d in cascade.draws:
        if d.mode is StatisticMode.RANDOM:
            p = d.probability
        elif long_run:
            p = Fraction(d.every - 1, d.every) if d.negated else Fraction(1, d.every)
        else:  # nth at its start value: deterministic
            hit = d.packet == 0
            p = Fraction(int(hit != d.negated))
        out[d.outcome] += remaining * p
        remaining *= 1 - p
    out[cascade.fallthrough] += remaining
    return tuple(out)


def _outcome_through(outcomes: Sequence[Outcome], table: str, rule: Rule) -> int | None:
    """The outcome a statistic rule leads to: its own step on a path, else (paths merged
    away) the outcome whose path passes the chain the rule jumps to."""
    for i, o in enumerate(outcomes):
        if any(
            s.table == table and s.chain == rule.chain and s.number == rule.number for s in o.path
        ):
            return i
    if isinstance(rule.target, Jump):
        for i, o in enumerate(outcomes):
            if any(s.table == table and s.chain == rule.target.chain for s in o.path):
                return i
    return None


def _cascade_chain(
    outcomes: Sequence[Outcome], chains: dict[tuple[str, str], Chain]
) -> tuple[str, str] | None:
    """The chain holding the cascade: where a path took a statistic rule, else the first
    chain on a path with a statistic rule (an nth rule not due yet leaves no step)."""
    taken = {(s.table, s.chain) for o in outcomes for s in o.path if _statistic(s.rule)}
    if taken:
        return next(iter(taken)) if len(taken) == 1 else None
    for o in outcomes:
        for s in o.path:
            chain = chains.get((s.table, s.chain))
            if chain and any(_statistic(r) and not _needs_history(r) for r in chain.rules):
                return (s.table, s.chain)
    return ("", "")


def build_cascade(
    outcomes: list[Outcome],
    chains: dict[tuple[str, str], Chain],
    force: Callable[[RuleKey | None, StatisticMatch | None, tuple[Draw, ...]], Outcome | None] = (
        lambda k, m, before: None
    ),
) -> Cascade | None:
    """The cascade the outcomes' paths imply, or None when they imply none. ``force``
    traces an nth rule as if due (the nth rules ``before`` it not; no rule due when it is
    None), to learn where it leads; new outcomes are appended."""
    where = _cascade_chain(outcomes, chains)
    plain = [i for i, o in enumerate(outcomes) if not any(_statistic(s.rule) for s in o.path)]
    if where is None or len(plain) > 1:
        return None
    if where == ("", ""):
        return Cascade((), plain[0]) if len(outcomes) == 1 else None
    table = where[0]
    draws: list[Draw] = []
    for rule in chains[where].rules:
        m = _statistic(rule)
        if m is None or _needs_history(rule):
            continue
        if draws and draws[-1].mode is StatisticMode.RANDOM and draws[-1].probability == 1:
            break  # the kernel never gets past a certain match
        key = (table, rule.chain, rule.number)
        target = _outcome_through(outcomes, table, rule)
        if target is None and m.mode is StatisticMode.NTH and (got := force(key, m, tuple(draws))):
            target = _index_of(outcomes, got)
        never = (
            m.mode is StatisticMode.RANDOM
            and m.threshold is not None
            and (Draw(key, 0, m.mode, threshold=m.threshold, negated=m.negated).probability == 0)
        )
        if target is None and never:
            target = 0  # drawn, never taken: no path shows where it would lead
        if target is None:
            return None
        if m.mode is StatisticMode.RANDOM and m.threshold is not None:
            draws.append(Draw(key, target, m.mode, threshold=m.threshold, negated=m.negated))
        elif m.mode is StatisticMode.NTH and m.every:
            draws.append(
                Draw(key, target, m.mode, every=m.every, packet=m.packet or 0, negated=m.negated)
            )
        else:
            return None
    if not plain and any(d.mode is StatisticMode.NTH for d in draws):
        # The first packet took an nth rule: where do packets go when none is due?
        got = force(None, None, tuple(draws))
        plain = [_index_of(outcomes, got)] if got is not None else []
    fall = plain[0] if plain else (draws[-1].outcome if draws else 0)
    return Cascade(tuple(draws), fall)


def _index_of(outcomes: list[Outcome], got: Outcome) -> int:
    """Where ``got`` is among ``outcomes`` (appended when new)."""
    keys = [o.key for o in outcomes]
    if got.key not in keys:
        outcomes.append(got)
        return len(outcomes) - 1
    return keys.index(got.key)


def _sets(o: Outcome) -> tuple[str, ...]:
    names = [
        m.name
        for s in o.path
        if s.rule is not None
        for m in s.rule.matches
        if isinstance(m, RecentMatch) and m.command is RecentCommand.SET and not m.negated
    ]
    return tuple(dict.fromkeys(names))


def _rchecks(
    outcomes: Sequence[Outcome], chains: dict[tuple[str, str], Chain]
) -> list[RecentMatch]:
    """``--rcheck`` matches in the chains the fresh paths pass, in evaluation order."""
    seen: list[tuple[str, str]] = []
    for o in outcomes:
        for s in o.path:
            if (s.table, s.chain) not in seen:
                seen.append((s.table, s.chain))
    found: list[RecentMatch] = []
    for key in seen:
        chain = chains.get(key)
        for rule in chain.rules if chain else ():
            for m in rule.matches:
                if (
                    isinstance(m, RecentMatch)
                    and m.command is RecentCommand.RCHECK
                    and not m.negated
                    and m.name not in {f.name for f in found}
                ):
                    found.append(m)
    return found


def compile_plan(tracer: Tracer, node: str, packet: Packet) -> NodePlan:
    """Trace once for a fresh client, once per affinity list; verify; return the plan."""
    chains = {(t, c.name): c for t, table in tracer.tables.items() for c in table.values()}
    fresh = tracer.trace(packet, State())
    outcomes = list(fresh.outcomes)
    notes: list[str] = []

    def force(
        key: RuleKey | None, m: StatisticMatch | None, before: tuple[Draw, ...]
    ) -> Outcome | None:
        # Counter at every-1: the next packet wraps it to 0, so the rule is due (``!``: not);
        # at 0 the next packet steps it to 1 (not due, unless every is 1).
        def due(every: int, negated: bool, wanted: bool) -> int:
            return max(every, 1) - 1 if wanted != negated else 0

        counters = {d.key: due(d.every, d.negated, False) for d in before if d.every}
        if key is not None and m is not None:
            counters[key] = due(m.every or 1, m.negated, True)
        got = tracer.trace(packet, State(nth=counters)).outcomes
        return got[0] if len(got) == 1 else None

    cascade = build_cascade(outcomes, chains, force)
    exact = tuple(o.probability for o in fresh.outcomes)
    exact += (Fraction(0),) * (len(outcomes) - len(exact))  # outcomes only nth reaches
    if cascade is None or exact_shares(cascade, len(outcomes)) != exact:
        cascade = Cascade((), 0, exact)
        notes.append(
            f"{node}: the rules are not one statistic cascade; sampled the engine's exact "
            "shares directly"
        )
    sticky: list[Sticky] = []
    base = {o.key: o.probability for o in outcomes}
    for m in _rchecks(outcomes, chains):
        got = tracer.trace(packet, State.with_affinity(m.name)).outcomes
        if {o.key: o.probability for o in got} == base:
            continue  # this list does not change the answer for this packet
        if len(got) != 1:
            notes.append(f"{node}: affinity list {m.name} leaves a random choice; ignored")
            continue
        keys = [o.key for o in outcomes]
        if got[0].key not in keys:
            outcomes.append(got[0])
            keys.append(got[0].key)
        sticky.append(Sticky(m.name, m.seconds, m.reap, keys.index(got[0].key)))
    if cascade.categorical is not None and len(outcomes) > len(cascade.categorical):
        extra = (Fraction(0),) * (len(outcomes) - len(cascade.categorical))
        cascade = Cascade((), 0, cascade.categorical + extra)
    return NodePlan(
        node,
        str(packet.dst),
        tuple(outcomes),
        cascade,
        tuple(sticky),
        tuple(_sets(o) for o in outcomes),
        tuple(notes),
    )
