"""A Fit (observed counts against exact shares) as a plain table and as JSON members;
shared by ``counters``, ``why`` and ``simulate --observed``."""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from rich import box
from rich.console import Console

from kpsim.explain.fit import Fit
from kpsim.render.fractions import exact
from kpsim.render.width import DEFAULT, Column, fitted_table, fold, hidden_note, trimmed


def share_text(q: Fraction) -> str:
    """The exact share as a percentage to 4 places (JSON carries the exact fraction)."""
    return f"{float(q):.4%}"


def fit_lines(
    f: Fit, pods: Sequence[str | None] = (), indent: str = "  ", width: int = DEFAULT
) -> list[str]:
    """A table of the endpoints and the verdict, every figure the verdict quotes shown;
    fits ``width`` (the exact fraction, then the pod, give way first, and it says so).
    ``share`` is observed, ``exact share`` the rules', ``fraction`` the kernel's exact one."""
    columns = [
        Column("endpoint"),
        Column("observed", justify="right"),
        Column("share", justify="right"),
        Column("exact share", justify="right"),
        Column("95% at n"),
        Column("fraction", priority=2),
        Column("pod", priority=1),
    ]
    rows = []
    for i, c in enumerate(f.cells):
        pod = pods[i] if i < len(pods) and pods[i] else ""
        rows.append([
            c.label,
            str(c.observed),
            f"{c.observed / f.n:.1%}" if f.n else "—",
            share_text(c.expected),
            f"{c.low:.1%}–{c.high:.1%}" if f.n else "—",
            exact(c.expected),
            pod or "",
        ])  # fmt: skip
    if not any(r[-1] for r in rows):
        columns.pop()
        rows = [r[:-1] for r in rows]
    buf = io.StringIO()
    console = Console(file=buf, width=max(20, width - len(indent)), no_color=True,
                      highlight=False, markup=False, emoji=False)  # fmt: skip
    table, dropped = fitted_table(console, columns, rows, box=box.SIMPLE_HEAD, pad_edge=False,
                                  show_edge=False)  # fmt: skip
    console.print(table)
    lines = [indent + x for x in trimmed(buf.getvalue()).split("\n") if x.strip()]
    if dropped:
        lines += fold(hidden_note(dropped), width, indent, indent + "  ")
    lines += fold(f"n = {f.n} {f.unit}", width, indent, indent + "  ")
    lines += fold(f"verdict: {f.verdict}", width, indent, indent + "  ")
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
