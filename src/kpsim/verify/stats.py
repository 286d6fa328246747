"""The two significance tests verify applies: χ² goodness of fit of the kernel's counts
against kpsim's exact expectations, and a two-proportion z test for stickiness.

scipy is imported lazily, only when a test is due (~0.5 s to import).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Below this χ² p-value the split is called different: a correct kernel fails 1 run in 1000.
P_MIN = 0.001
#: Expected count a category needs before "never seen" counts against the kernel, and
#: below which χ² cells are pooled (the χ² approximation needs about 5 per cell).
MIN_EXPECTED = 5.0


def chi_square(observed: Sequence[int], expected: Sequence[float]) -> float:
    """Goodness-of-fit p-value of counts against exact expectations.

    A count where kpsim expects exactly 0 is impossible under its answer: p = 0. Cells
    expecting < 5 are pooled (and a pool still < 5 joins the smallest cell); with fewer
    than two cells left there is nothing to test: p = 1."""
    if any(e == 0 and o > 0 for o, e in zip(observed, expected, strict=True)):
        return 0.0
    cells = sorted((e, o) for o, e in zip(observed, expected, strict=True) if e > 0)
    big = [(e, o) for e, o in cells if e >= MIN_EXPECTED]
    small = [(e, o) for e, o in cells if e < MIN_EXPECTED]
    if small:
        pool = (sum(e for e, _ in small), sum(o for _, o in small))
        if pool[0] < MIN_EXPECTED and big:
            e0, o0 = big.pop(0)
            pool = (pool[0] + e0, pool[1] + o0)
        big.append(pool)
    if len(big) < 2:
        return 1.0
    from scipy.stats import chisquare  # ~0.5 s to import: only when a test is due

    obs = [o for _, o in big]
    exp = [e for e, _ in big]
    scale = sum(obs) / sum(exp)  # float noise only: N·p over all categories sums to N
    return float(chisquare(obs, [e * scale for e in exp]).pvalue)


def two_proportion_p(k1: int, n1: int, k2: int, n2: int, dispersion: float = 1.0) -> float:
    """Two-sided z test of k1/n1 == k2/n2, pooled variance times ``dispersion``."""
    if n1 == 0 or n2 == 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    var = dispersion * p * (1 - p) * (1 / n1 + 1 / n2)
    if var == 0:
        return 1.0 if k1 * n2 == k2 * n1 else 0.0
    from scipy.stats import norm  # lazily, as chisquare

    return float(2 * norm.sf(abs(k1 / n1 - k2 / n2) / math.sqrt(var)))
