"""The kernel's integer probabilities and the model's small semantics."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpsim.model import (
    PROBABILITY_SCALE,
    Interface,
    MarkTarget,
    StatisticMatch,
    StatisticMode,
    format_probability,
    probability_threshold,
)


@pytest.mark.parametrize(
    ("text", "threshold", "printed"),
    [
        ("0.3333333333", 715827883, "0.33333333349"),  # kube-proxy's own %0.10f input
        ("0.33333", 715820724, "0.33332999982"),  # pre-1.11 kube-proxy, %0.5f
        ("0.33332999982", 715820724, "0.33332999982"),  # what old dumps show
        ("0.5", 1 << 30, "0.50000000000"),
        ("0.2000000000", 429496730, "0.20000000019"),
        ("1", PROBABILITY_SCALE, "1.00000000000"),
        ("0", 0, "0.00000000000"),
    ],
)
def test_known_thresholds(text: str, threshold: int, printed: str) -> None:
    assert probability_threshold(text) == threshold
    assert format_probability(threshold) == printed


@given(st.integers(min_value=0, max_value=PROBABILITY_SCALE))
def test_printed_value_parses_back_to_the_same_integer(threshold: int) -> None:
    # %.11f keeps 1e-11 resolution while one step is 2^-31 ≈ 4.7e-10: lossless.
    assert probability_threshold(format_probability(threshold)) == threshold


@given(st.integers(min_value=2, max_value=1000), st.integers(min_value=0, max_value=999))
def test_kube_proxy_cascade_probability_is_exact_fraction(n: int, i: int) -> None:
    i = i % n
    text = f"{1 / (n - i):0.10f}"
    m = StatisticMatch(StatisticMode.RANDOM, threshold=probability_threshold(text))
    assert m.probability == Fraction(m.threshold or 0, PROBABILITY_SCALE)
    assert abs(float(m.probability) - 1 / (n - i)) < 1e-9


def test_probability_out_of_range() -> None:
    with pytest.raises(ValueError):
        probability_threshold("1.5")


@pytest.mark.parametrize(
    ("value", "mask", "before", "after"),
    [
        (0x4000, 0x4000, 0x0, 0x4000),  # --or-mark 0x4000 (KUBE-MARK-MASQ)
        (0x4000, 0x0, 0x4000, 0x0),  # --xor-mark 0x4000 (KUBE-POSTROUTING)
        (0x4D415351, 0xFFFFFFFF, 0x1, 0x4D415351),  # --set-mark (kube-proxy 1.1)
        (0x0, 0xFFFFBFFF, 0xFFFF, 0x4000),  # --and-mark 0x4000
    ],
)
def test_mark_target_apply(value: int, mask: int, before: int, after: int) -> None:
    assert MarkTarget(value, mask).apply(before) == after


def test_interface_wildcard_and_negation() -> None:
    assert Interface("eth+").matches("eth0")
    assert not Interface("eth+", negated=True).matches("eth0")
    assert Interface("docker0", negated=True).matches("eth0")
