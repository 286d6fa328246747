"""Draw connections through compiled plans, as xt_statistic and xt_recent would.

    fresh client, no kernel state:  count_fresh — per rule, only the connections still
        undecided draw a u32; ``(u32 & 0x7FFFFFFF) < threshold`` takes it; the rest fall
        through. Counts are all that is kept, so memory stays flat in n.
    recent lists / nth counters:    pick_fresh (vectorised first guess per connection),
        then run_stateful, one loop step per connection for the bookkeeping.

The u32s come from the injected numpy Generator, so a seed fixes every draw.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kpsim.engine.answers import nth_start
from kpsim.model import StatisticMode
from kpsim.simulate.plan import Cascade, NodePlan

#: xt_statistic masks the draw to 31 bits before comparing with the threshold.
U31 = np.uint32(0x7FFFFFFF)
#: Kernel default for xt_recent's ``ip_list_tot``: entries per list before the oldest goes.
RECENT_CAPACITY = 100
CHUNK = 1 << 20

IntArray = npt.NDArray[np.int64]


def draw_u32(rng: np.random.Generator, size: int) -> npt.NDArray[np.uint32]:
    return rng.integers(0, 1 << 32, size=size, dtype=np.uint32)


def _hits(rng: np.random.Generator, size: int, threshold: int) -> int:
    """How many of ``size`` fresh draws fall under the threshold, chunk by chunk."""
    t = np.uint32(min(threshold, 1 << 31)) if threshold < (1 << 31) else None
    if t is None:  # threshold 2^31: every masked draw is below it
        draw_u32(rng, size)  # the kernel still draws; keep the stream the same length
        return size
    hits = 0
    while size > 0:
        k = min(size, CHUNK)
        hits += int(np.count_nonzero((draw_u32(rng, k) & U31) < t))
        size -= k
    return hits


def _categorical(cascade: Cascade) -> npt.NDArray[np.float64]:
    assert cascade.categorical is not None
    p = np.array([float(x) for x in cascade.categorical], dtype=np.float64)
    out: npt.NDArray[np.float64] = p / p.sum()
    return out


def count_fresh(cascade: Cascade, n_outcomes: int, m: int, rng: np.random.Generator) -> IntArray:
    """Outcome counts for ``m`` new connections (random-mode cascades only)."""
    counts = np.zeros(n_outcomes, dtype=np.int64)
    if cascade.categorical is not None:
        return counts + rng.multinomial(m, _categorical(cascade))
    alive = m
    for d in cascade.draws:
        if alive == 0:
            break
        hits = _hits(rng, alive, d.threshold)
        if d.negated:
            hits = alive - hits
        counts[d.outcome] += hits
        alive -= hits
    counts[cascade.fallthrough] += alive
    return counts


def pick_fresh(cascade: Cascade, m: int, rng: np.random.Generator) -> IntArray:
    """Each of ``m`` connections' outcome as a fresh client (random draws only; nth
    rules are left to the loop, marked -1)."""
    if cascade.categorical is not None:
        return rng.choice(len(cascade.categorical), size=m, p=_categorical(cascade))
    if cascade.has_nth:
        return np.full(m, -1, dtype=np.int64)
    out = np.full(m, cascade.fallthrough, dtype=np.int64)
    idx = np.arange(m)
    for d in cascade.draws:
        if idx.size == 0:
            break
        u = draw_u32(rng, idx.size) & U31
        hit = u < d.threshold if d.threshold < (1 << 31) else np.ones(idx.size, dtype=bool)
        if d.negated:
            hit = ~hit
        out[idx[hit]] = d.outcome
        idx = idx[~hit]
    return out


# ---------------------------------------------------------------- kernel state


@dataclass
class NodeState:
    """One node's kernel state: recent lists (client → last --set time, in LRU order)
    and nth counters."""

    lists: dict[str, OrderedDict[int, float]] = field(default_factory=dict)
    nth: dict[tuple[str, str, int], int] = field(default_factory=dict)


@dataclass
class Tally:
    """What the state did: sticky hits, repeat visits whose pod changed, evictions."""

    sticky: int = 0
    repeats: int = 0
    changed: int = 0
    evicted: int = 0
    reaped: int = 0
    last: dict[tuple[int, int], int] = field(default_factory=dict)  # (node, client) → outcome


def nth_pick(cascade: Cascade, state: NodeState, rng: np.random.Generator) -> int:
    """Walk the cascade one rule at a time: nth counters tick only when reached."""
    for d in cascade.draws:
        if d.mode is StatisticMode.NTH:
            count = state.nth.get(d.key, nth_start(d.every, d.packet))
            nxt = 0 if count >= d.every - 1 else count + 1
            state.nth[d.key] = nxt
            hit = nxt == 0
        else:
            hit = int(draw_u32(rng, 1)[0] & U31) < d.threshold
        if hit != d.negated:
            return d.outcome
    return cascade.fallthrough


def in_a_row(cascade: Cascade, n: int, seed: int = 0) -> list[int]:
    """The outcomes of ``n`` connections in a row from a fresh node (nth counters at
    their start, stepped as the kernel steps them; random draws seeded)."""
    state, rng = NodeState(), np.random.default_rng(seed)
    return [nth_pick(cascade, state, rng) for _ in range(n)]


def _sticky(plan: NodePlan, state: NodeState, client: int, now: float, tally: Tally) -> int:
    """``--rcheck`` rules in order; -1 when none has a live entry for the client."""
    for s in plan.sticky:
        lst = state.lists.get(s.name)
        stamp = lst.get(client) if lst is not None else None
        if lst is None or stamp is None:
            continue
        live = s.seconds is None or now - stamp < s.seconds
        if s.reap and s.seconds:
            # xt_recent reaps the list's oldest entry (LRU head) if stale, not the client's.
            head = next(iter(lst))
            if now - lst[head] >= s.seconds:
                del lst[head]
                tally.reaped += 1
        if live:
            return s.outcome
    return -1


def _set(state: NodeState, names: Sequence[str], client: int, now: float, cap: int) -> int:
    """``--set``: refresh the entry (moves to the LRU tail); a full list drops its oldest."""
    evicted = 0
    for name in names:
        lst = state.lists.setdefault(name, OrderedDict())
        if client in lst:
            lst.move_to_end(client)
        elif len(lst) >= cap:
            lst.popitem(last=False)
            evicted += 1
        lst[client] = now
    return evicted


def run_stateful(
    plans: Sequence[NodePlan],
    states: Sequence[NodeState],
    entry: IntArray,
    client: IntArray,
    times: npt.NDArray[np.float64],
    fresh: IntArray,
    rng: np.random.Generator,
    tally: Tally,
    capacity: int = RECENT_CAPACITY,
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Connections in time order: the outcome each gets and whether it was a fresh pick."""
    m = len(entry)
    out = np.empty(m, dtype=np.int64)
    was_fresh = np.zeros(m, dtype=bool)
    for i, (e, c, now, guess) in enumerate(
        zip(entry.tolist(), client.tolist(), times.tolist(), fresh.tolist(), strict=True)
    ):
        plan, state = plans[e], states[e]
        o = _sticky(plan, state, c, now, tally) if plan.sticky else -1
        if o < 0:
            o = guess if guess >= 0 else nth_pick(plan.cascade, state, rng)
            was_fresh[i] = True
        else:
            tally.sticky += 1
        if plan.sets[o]:
            tally.evicted += _set(state, plan.sets[o], c, now, capacity)
        prev = tally.last.get((e, c))
        if prev is not None:
            tally.repeats += 1
            tally.changed += prev != o
        tally.last[(e, c)] = o
        out[i] = o
    return out, was_fresh
