"""Observed counts against the rules' exact shares: a χ² goodness-of-fit test and a
verdict whose words come from the numbers printed next to it.

    labels, exact shares q (integers over 2^31, as Fractions), observed counts
      ─▶ per cell: expected count n·q, the 95% range of its share at this n
      ─▶ χ² on the cells with q > 0 (exact multinomial test when n·q < 5 somewhere)
      ─▶ Fit(kind, verdict): consistent / not consistent at the 1% level, with n

The test is on *connections*: kube-proxy picks an endpoint once per connection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from kpsim.simulate import stats

#: The level the verdict names: "not consistent at 1%" means p < 0.01.
ALPHA = 0.01

FitKind = Literal["no-data", "single", "consistent", "not-consistent", "impossible"]


@dataclass(frozen=True, slots=True)
class Cell:
    """One endpoint: its exact share, what was seen, and where its share would land 95%
    of the time at this n if the rules alone picked (q ± 1.96·√(q(1−q)/n))."""

    label: str
    expected: Fraction
    observed: int
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Fit:
    cells: tuple[Cell, ...]
    n: int
    statistic: float | None  # χ² (None when there is nothing to test)
    df: int
    p_value: float | None
    method: str  # "chi2" | "exact" | "none"
    kind: FitKind
    verdict: str
    unit: str = "connections"

    @property
    def consistent(self) -> bool | None:
        """True/False at the 1% level; None when nothing could be tested."""
        if self.kind in ("consistent", "single"):
            return True
        if self.kind in ("not-consistent", "impossible"):
            return False
        return None


def share_range(q: Fraction, n: int) -> tuple[float, float]:
    """Where an observed share lands 95% of the time around the exact share ``q`` at n
    (normal approximation, clipped to [0, 1]; the whole [0, 1] at n = 0)."""
    if n <= 0:
        return (0.0, 1.0)
    p = float(q)
    half = stats.Z95 * math.sqrt(p * (1 - p) / n)
    return (max(0.0, p - half), min(1.0, p + half))


def _often(p: float) -> str:
    """p as words: "41% of the time", "1 time in 24"."""
    if p >= 0.1:
        return f"{p:.0%} of the time"
    return f"about 1 time in {max(1, round(1 / p))}"


def fit(
    labels: Sequence[str],
    shares: Sequence[Fraction],
    counts: Sequence[int],
    *,
    unit: str = "connections",
) -> Fit:
    """Judge ``counts`` against ``shares`` (same order; shares may sum to less than 1 —
    then they are renormalised over what reached an endpoint)."""
    if not len(labels) == len(shares) == len(counts):
        raise ValueError("labels, shares and counts must have the same length")
    n = sum(counts)
    total = sum(shares, Fraction(0))
    q = [s / total if total else Fraction(0) for s in shares]
    cells = tuple(
        Cell(lab, qi, c, *share_range(qi, n)) for lab, qi, c in zip(labels, q, counts, strict=True)
    )
    live = [c for c in cells if c.expected > 0]
    stray = [c for c in cells if c.expected == 0 and c.observed > 0]
    one = unit.rstrip("s") if n == 1 else unit

    def done(kind: FitKind, text: str, x: float | None = None, df: int = 0,
             p: float | None = None, method: str = "none") -> Fit:  # fmt: skip
        return Fit(cells, n, x, df, p, method, kind, text, unit)

    if stray:
        names = ", ".join(f"{c.label} ({c.observed})" for c in stray)
        return done(
            "impossible",
            f"not consistent with the rules: {names} got {unit} although the rules give "
            f"{'it' if len(stray) == 1 else 'them'} a share of 0 (n = {n})",
        )
    if n == 0:
        return done("no-data", f"nothing to judge: 0 {unit} observed (n = 0)")
    if not live:
        return done("no-data", f"nothing to judge: the rules give no endpoint a share (n = {n})")
    if len(live) == 1:
        return done(
            "single",
            f"consistent: the rules send every {unit.rstrip('s')} to {live[0].label}, "
            f"and all {n} {one} went there (nothing to test with one endpoint)",
        )
    obs = [c.observed for c in live]
    exp = [float(c.expected) * n for c in live]
    x = sum((o - e) ** 2 / e for o, e in zip(obs, exp, strict=True))
    df = len(live) - 1
    method, p = "chi2", stats.chi2_sf(x, df)
    if min(exp) < 5:  # the χ² approximation is poor: the exact test when affordable
        exact = stats.exact_p(obs, [c.expected for c in live])
        if exact is not None:
            method, p = "exact", float(exact)
    test = "χ²" if method == "chi2" else "exact multinomial test, χ²"
    numbers = f"{test} = {x:.2f}, df = {df}, p = {p:.3g}, n = {n}"
    if p < ALPHA:
        worst = max(live, key=lambda c: abs(c.observed - float(c.expected) * n))
        seen = worst.observed / n
        return done(
            "not-consistent",
            f"not consistent with the rules at the 1% level ({numbers}): {worst.label} got "
            f"{seen:.1%} where the rules give {float(worst.expected):.1%} (95% range at this "
            f"n: {worst.low:.1%}–{worst.high:.1%}); something besides the rules' random "
            "choice shaped these counts (see `kpsim why`)",
            x, df, p, method,
        )  # fmt: skip
    return done(
        "consistent",
        f"consistent with the rules at the 1% level ({numbers}): the rules' random choice "
        f"alone gives a split at least this far from the exact shares {_often(p)}",
        x, df, p, method,
    )  # fmt: skip
