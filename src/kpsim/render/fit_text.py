"""A Fit (observed counts against exact shares) as a plain table and as JSON members;
shared by ``counters``, ``why`` and ``simulate --observed``."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from kpsim.explain.fit import Fit


def share_text(q: Fraction) -> str:
    """The exact share as a percentage to 4 places (JSON carries the exact fraction)."""
    return f"{float(q):.4%}"


def fit_lines(f: Fit, pods: Sequence[str | None] = (), indent: str = "  ") -> list[str]:
    """One line per endpoint and the verdict, every figure the verdict quotes shown."""
    width = max((len(c.label) for c in f.cells), default=8)
    head = f"{'endpoint':<{width}}  {'observed':>9}  {'share':>7}  {'exact share':<26}  95% at n"
    lines = [indent + head]
    for i, c in enumerate(f.cells):
        seen = f"{c.observed / f.n:.1%}" if f.n else "—"
        pod = f"  {pods[i]}" if i < len(pods) and pods[i] else ""
        rng = f"{c.low:.1%}–{c.high:.1%}" if f.n else "—"
        lines.append(
            f"{indent}{c.label:<{width}}  {c.observed:>9}  {seen:>7}  "
            f"{share_text(c.expected):<26}  {rng}{pod}"
        )
    lines.append(f"{indent}n = {f.n} {f.unit}")
    lines.append(f"{indent}verdict: {f.verdict}")
    return lines


def _f(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def fit_doc(f: Fit) -> dict[str, Any]:
    return {
        "n": f.n,
        "unit": f.unit,
        "statistic": _f(f.statistic),
        "df": f.df,
        "p_value": _f(f.p_value),
        "method": f.method,
        "kind": f.kind,
        "consistent": f.consistent,
        "alpha": 0.01,
        "verdict": f.verdict,
        "cells": [
            {
                "endpoint": c.label,
                "observed": c.observed,
                "expected_share": _f(float(c.expected)),
                "expected_exact": f"{c.expected.numerator}/{c.expected.denominator}",
                "range95": [_f(c.low), _f(c.high)],
            }
            for c in f.cells
        ],
    }
