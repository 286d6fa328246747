"""Load follows connections: k long-lived connections carrying m requests each.

kube-proxy picks an endpoint once per connection. A client that keeps its connection
open (HTTP keep-alive, HTTP/2, gRPC, a connection pool) sends every request down it, so
requests split as the k picks did, not as the shares say: with 3 pods and 4
connections, some pod gets no request at all 5 times in 9.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

import numpy as np

#: The seeded generator callers inject (explain/ names it without importing numpy).
Rng = np.random.Generator


@dataclass(frozen=True, slots=True)
class ReuseRun:
    """One simulated run: requests per endpoint when ``connections`` connections carry
    ``requests`` requests each, and how often (over ``trials`` runs) a pod got none."""

    connections: int
    requests: int
    request_counts: tuple[int, ...]  # one run, per endpoint
    connection_counts: tuple[int, ...]  # one run: connections per endpoint
    trials: int
    trials_with_idle_pod: int  # runs in which some endpoint got no connection
    mean_max_share: float  # over the trials: the busiest endpoint's request share


def idle_chance(shares: Sequence[Fraction], connections: int) -> Fraction:
    """Exact chance that some endpoint gets none of ``connections`` independent picks
    (inclusion–exclusion over the sets of idle endpoints)."""
    live = [q for q in shares if q > 0]
    out = Fraction(0)
    for size in range(1, len(live)):
        sign = 1 if size % 2 else -1
        for idle in combinations(live, size):
            out += sign * (1 - sum(idle, Fraction(0))) ** connections
    return out


def simulate_reuse(
    shares: Sequence[Fraction],
    connections: int,
    requests: int,
    rng: np.random.Generator,
    trials: int = 2_000,
) -> ReuseRun:
    """Draw each connection's endpoint as the rules do; each carries ``requests``."""
    if connections < 1 or requests < 1 or trials < 1:
        raise ValueError("connections, requests and trials must be ≥ 1")
    p = np.array([float(q) for q in shares], dtype=float)
    p = p / p.sum()
    picks = rng.multinomial(connections, p, size=trials)  # [trial, endpoint] connections
    idle = int(np.count_nonzero((picks[:, p > 0] == 0).any(axis=1)))
    mean_max = float(picks.max(axis=1).mean() / connections)
    first = picks[0]
    return ReuseRun(
        connections,
        requests,
        tuple(int(c) * requests for c in first),
        tuple(int(c) for c in first),
        trials,
        idle,
        mean_max,
    )
