"""Is the split you saw the rules' doing, or chance? Intervals, tests and a verdict in words.

    exact shares q (from the engine) + observed counts c ─▶ Wilson intervals per share,
    χ² goodness of fit, for small n the exact multinomial chance ─▶ Verdict(kind, text)

Works on any counts — a simulation's, or the five curls a user made by hand.
Standard library only: importing scipy.stats costs ~0.6 s, more than a whole
``kpsim simulate -n 10000``; the χ² tail below is exact for integer degrees of freedom
(tests compare it with scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

#: The kernel's quantum: xt_statistic compares against an integer over 2^31, so each
#: rule of a cascade can be off the ideal share by up to 2^-31; k rules, by k of them.
QUANTUM = Fraction(1, 2**31)
#: A χ² p-value below this says "something besides the rules is picking".
ALPHA = 0.001
#: Below this many connections the verdict quotes exact multinomial chances.
SMALL_N = 30
#: Enumerate at most this many splits for the exact test.
MAX_SPLITS = 200_000
Z95 = 1.959963984540054

Kind = Literal["empty", "single", "chance", "unlikely", "skewed", "skewed-chance"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer in one sentence, with the numbers behind it."""

    kind: Kind
    text: str
    p_value: float | None = None


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n: sane at 0 and n, unlike the Wald one."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, min(p, mid - half))  # exact ends: no float noise
    hi = 1.0 if k == n else min(1.0, max(p, mid + half))
    return (lo, hi)


def chi2_p(observed: Sequence[int], expected: Sequence[float]) -> float | None:
    """χ² goodness-of-fit p-value. Cells expecting < 5 are pooled (the χ² approximation
    needs it); None when fewer than two cells remain or nothing was observed."""
    total = sum(observed)
    if total == 0:
        return None
    scale = total / sum(expected)
    exp = [e * scale for e in expected]
    obs_cells: list[float] = []
    exp_cells: list[float] = []
    pool_o, pool_e = 0.0, 0.0
    for o, e in zip(observed, exp, strict=True):
        if e == 0 and o > 0:
            return 0.0  # seen something the rules never do
        if e < 5:
            pool_o, pool_e = pool_o + o, pool_e + e
        else:
            obs_cells.append(float(o))
            exp_cells.append(e)
    if pool_e > 0:
        if pool_e >= 5 or not exp_cells:
            obs_cells.append(pool_o)
            exp_cells.append(pool_e)
        else:  # too small to stand alone: fold into the smallest cell
            j = exp_cells.index(min(exp_cells))
            obs_cells[j] += pool_o
            exp_cells[j] += pool_e
    if len(exp_cells) < 2:
        return None
    x = sum((o - e) ** 2 / e for o, e in zip(obs_cells, exp_cells, strict=True))
    return chi2_sf(x, len(exp_cells) - 1)


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df ≥ x) = Q(df/2, x/2), the regularised upper incomplete gamma, in closed form:
    integer s: e^{-y} Σ_{k<s} y^k/k!;  half-integer s: erfc(√y) + e^{-y} Σ y^{k+½}/Γ(k+3/2)."""
    if x <= 0:
        return 1.0
    y = x / 2
    if df % 2 == 0:
        terms = (k * math.log(y) - y - math.lgamma(k + 1) for k in range(df // 2))
        total = 0.0
    else:
        terms = ((k + 0.5) * math.log(y) - y - math.lgamma(k + 1.5) for k in range(df // 2))
        total = math.erfc(math.sqrt(y))
    total += sum(math.exp(t) for t in terms)
    return min(1.0, total)


def multinomial(counts: Sequence[int], probs: Sequence[Fraction]) -> Fraction:
    """Exact chance of exactly these counts."""
    n = sum(counts)
    ways = math.factorial(n)
    for c in counts:
        ways //= math.factorial(c)
    out = Fraction(ways)
    for c, p in zip(counts, probs, strict=True):
        out *= p**c
    return out


def _splits(n: int, k: int) -> list[tuple[int, ...]]:
    if k == 1:
        return [(n,)]
    return [(i, *rest) for i in range(n + 1) for rest in _splits(n - i, k - 1)]


def exact_p(counts: Sequence[int], probs: Sequence[Fraction]) -> Fraction | None:
    """Exact multinomial test: the chance of a split no more likely than this one.
    None when there are too many splits to enumerate."""
    n, k = sum(counts), len(counts)
    if math.comb(n + k - 1, k - 1) > MAX_SPLITS:
        return None
    seen = multinomial(counts, probs)
    return sum((q for s in _splits(n, k) if (q := multinomial(s, probs)) <= seen), Fraction(0))


def even_split(n: int, k: int) -> Fraction | None:
    """Chance that n uniform picks among k land exactly n/k each (None if k ∤ n)."""
    if k == 0 or n % k:
        return None
    return multinomial([n // k] * k, [Fraction(1, k)] * k)


def is_even(probs: Sequence[Fraction]) -> bool:
    """Equal up to the kernel's quantisation: shares that differ by at most one 2^-31
    step per rule of the cascade are the same share as far as the kernel can draw it."""
    live = [p for p in probs if p > 0]
    return bool(live) and max(live) - min(live) <= QUANTUM * len(live)


def pct_apart(a: float, b: float) -> tuple[str, str]:
    """Two percentages with just enough decimals that unequal values print unequal."""
    for digits in range(2, 10):
        x, y = f"{a * 100:.{digits}f}%", f"{b * 100:.{digits}f}%"
        if x != y or a == b:
            return x, y
    return x, y


def wobble(k: int, n: int) -> float:
    """Half the 95% range, in percentage points, of one of k even shares over n draws,
    rounded as the verdict prints it (so the range check agrees with the printed range)."""
    return float(f"{Z95 * math.sqrt((1 / k) * (1 - 1 / k) / n) * 100:.2g}")


def _times_in(f: Fraction) -> str:
    """2/9 → '2 times in 9'; tiny or ugly fractions as a percentage."""
    if f.denominator <= 10_000:
        return f"{f.numerator} time{'s' if f.numerator != 1 else ''} in {f.denominator}"
    return f"{float(f) * 100:.2g}% of the time"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def explain(
    labels: Sequence[str],
    probs: Sequence[Fraction],
    counts: Sequence[int],
    *,
    chi2: float | None = None,
    unit: str = "connections",
) -> Verdict:
    """A plain-language verdict on ``counts`` (one per label) against the rules' exact
    ``probs`` (shares of the same labels; they may sum to less than 1). ``chi2`` replaces
    the test's own p-value when the caller knows a better-conditioned one."""
    n = sum(counts)
    total = sum(probs, Fraction(0))
    if n == 0 or total == 0:
        return Verdict(
            "empty",
            "no connection reached an endpoint (see the other outcomes)",
        )
    q = [p / total for p in probs]
    live = [(lab, p, c) for lab, p, c in zip(labels, q, counts, strict=True) if p > 0]
    if len(live) == 1:
        return Verdict("single", f"one endpoint, {live[0][0]}, gets every connection")
    k = len(live)
    p_chi = chi2 if chi2 is not None else chi2_p(counts, [float(x) for x in q])
    seen = "/".join(str(c) for _, _, c in live)
    if not is_even([p for _, p, _ in live]):
        top = max(live, key=lambda t: t[1])
        low = min(live, key=lambda t: t[1])
        hi_txt, lo_txt = pct_apart(float(top[1]), float(low[1]))
        text = (
            f"the rules are skewed: {top[0]} gets {hi_txt} and {low[0]} "
            f"{lo_txt} (an even split would give {_pct(1 / k)} each)"
        )
        if p_chi is not None and p_chi < ALPHA:
            return Verdict(
                "skewed",
                text + f"; and the counts do not fit even that (χ² p = {p_chi:.2g})",
                p_chi,
            )
        return Verdict("skewed", text + "; the counts match the rules", p_chi)
    share = f"1/{k}" if k <= 20 else _pct(1 / k)
    head = f"the rules give each of the {k} endpoints {share}"
    if n < SMALL_N:
        p_exact = exact_p([c for *_, c in live], [p for _, p, _ in live])
        even = even_split(n, k)
        parts = [head]
        if even is not None:
            split = "/".join([str(n // k)] * k)
            parts.append(
                f"with {n} {unit if n != 1 else unit.rstrip('s')} an even {split} split "
                f"happens only {_times_in(even)}"
            )
        if p_exact is not None and p_exact < Fraction(1, 1000):  # ALPHA
            # The counts were drawn from these rules: a rare draw, never another cause.
            parts.append(
                f"this {seen} is rarer than that ({_times_in(p_exact)}): a rare draw of "
                "these rules — another --seed or a larger -n shows how rare"
            )
            return Verdict("unlikely", "; ".join(parts), float(p_exact))
        parts.append(f"what you saw ({seen}) is chance")
        pv = float(p_exact) if p_exact is not None else p_chi
        return Verdict("chance", "; ".join(parts[:-1]) + " — " + parts[-1], pv)
    half = wobble(k, n)
    if p_chi is not None and p_chi < ALPHA:
        return Verdict(
            "unlikely",
            f"{head}, but the {n} {unit} ({seen}) do not fit that (χ² p = {p_chi:.2g}): "
            "drawn from these rules, a split this far off is a rare draw — another --seed "
            "or a larger -n shows how rare",
            p_chi,
        )
    ptxt = f"χ² p = {p_chi:.2g}" if p_chi is not None else "no test"
    range_txt = f"{head}; over {n} {unit} each share wanders by about ±{half:.2g} points (95%)"
    # The same check the reader can do with the printed numbers: share vs 100/k ± half.
    outside = [(lab, c) for lab, _, c in live if abs(c / n * 100 - 100 / k) > half]
    if not outside:
        return Verdict(
            "chance",
            f"{range_txt}, and {seen} is within that ({ptxt}) — the unevenness is chance",
            p_chi,
        )
    lab, c = max(outside, key=lambda t: abs(t[1] / n - 1 / k))
    what = f"{range_txt}; {lab} at {c / n * 100:.2f}% is outside that"
    if p_chi is None:
        return Verdict("chance", f"{what}, and no χ² test is possible on these counts")
    return Verdict(
        "chance",
        f"{what}, but over all {k} shares {ptxt} is not below {ALPHA:g}: "
        "still plausible by chance (a larger -n tells)",
        p_chi,
    )
