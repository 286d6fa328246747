"""kpsim.simulate.stats: intervals, the χ² tail (against scipy), exact multinomial chances."""

from __future__ import annotations

from fractions import Fraction

import pytest
from scipy import stats as sp

from kpsim.simulate import stats

THIRD = Fraction(1, 3)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 31])
@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 3.3, 9.0, 25.0, 80.0])
def test_chi2_sf_is_scipys(df: int, x: float) -> None:
    assert stats.chi2_sf(x, df) == pytest.approx(float(sp.chi2.sf(x, df)), rel=1e-10, abs=1e-300)


def test_chi2_p_is_scipys_chisquare() -> None:
    obs, exp = [3354, 3353, 3293], [10000 / 3] * 3
    assert stats.chi2_p(obs, exp) == pytest.approx(float(sp.chisquare(obs, exp).pvalue))


def test_chi2_p_pools_small_cells_and_flags_impossible() -> None:
    assert stats.chi2_p([0, 0], [1, 1]) is None
    assert stats.chi2_p([50, 50, 1], [50, 50, 0]) == 0.0
    assert stats.chi2_p([100], [100]) is None  # one cell: nothing to test


def test_wilson_contains_share_and_stays_in_range() -> None:
    for k, n in [(0, 10), (10, 10), (3, 7), (3333, 10000)]:
        lo, hi = stats.wilson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
    lo, hi = stats.wilson(3333, 10000)
    assert hi - lo == pytest.approx(2 * 1.96 * (0.3333 * 0.6667 / 10000) ** 0.5, rel=0.01)


def test_multinomial_exact() -> None:
    assert stats.even_split(3, 3) == Fraction(2, 9)
    assert stats.even_split(4, 3) is None
    total = sum(stats.multinomial(s, [THIRD] * 3) for s in stats._splits(5, 3))
    assert total == 1
    # 3/0/0 is the least likely split of 3 in thirds: its exact p is P(any of the three).
    assert stats.exact_p([3, 0, 0], [THIRD] * 3) == Fraction(3, 27)


def test_verdict_small_n_is_chance_with_the_even_split_odds() -> None:
    v = stats.explain(["a", "b", "c"], [THIRD] * 3, [2, 1, 0])
    assert v.kind == "chance"
    assert "1/1/1 split happens only 2 times in 9" in v.text
    assert "2/1/0" in v.text


def test_verdict_skewed_rules() -> None:
    v = stats.explain(
        ["a", "b", "c"], [Fraction(1, 2), Fraction(1, 4), Fraction(1, 4)], [500, 250, 250]
    )
    assert v.kind == "skewed"
    assert "a gets 50.00%" in v.text


def test_verdict_counts_that_do_not_fit_even_rules() -> None:
    v = stats.explain(["a", "b"], [Fraction(1, 2)] * 2, [900, 100])
    assert v.kind == "unlikely"
    # 6/0 happens 2 times in 64 — chance; 12/0 2 in 4096 — not (exact test, small n).
    assert stats.explain(["a", "b"], [Fraction(1, 2)] * 2, [6, 0]).kind == "chance"
    assert stats.explain(["a", "b"], [Fraction(1, 2)] * 2, [12, 0]).kind == "unlikely"


def test_verdict_single_and_empty() -> None:
    assert stats.explain(["a"], [Fraction(1)], [5]).kind == "single"
    assert stats.explain([], [], []).kind == "empty"


def test_kube_proxy_thirds_count_as_even() -> None:
    # 0.33333333349 → 715827883/2^31, then 1/2 of the rest: off from 1/3 by ~1e-10.
    p1 = Fraction(715827883, 2**31)
    rest = (1 - p1) / 2
    assert stats.is_even([p1, rest, rest])
