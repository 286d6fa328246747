"""``kpsim diff -o json``: schema ``kpsim/diff/v1`` (docs/analyze.md). Shares carry their
exact value as ``"numerator/denominator"`` beside the rounded one."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from kpsim.diff import Change, DiffReport
from kpsim.render.capture import capture_doc
from kpsim.render.json import dumps

DIFF_SCHEMA = "kpsim/diff/v1"


def _exact(f: Fraction | None) -> str | None:
    return None if f is None else f"{f.numerator}/{f.denominator}"


def change_doc(c: Change) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "node": c.node,
        "service": c.service,
        "subject": c.subject,
        "before": c.before,
        "after": c.after,
        "before_exact": _exact(c.before_exact),
        "after_exact": _exact(c.after_exact),
        "location": c.location,
    }


def diff_json(report: DiffReport) -> str:
    return dumps(
        {
            "schema": DIFF_SCHEMA,
            "mode": report.mode,
            "before": report.left,
            "after": report.right,
            "changes": [change_doc(c) for c in report.changes],
            "only_before": list(report.only_left),
            "only_after": list(report.only_right),
            "inputs": [
                {"node": x.node, "path": x.path, "capture": capture_doc(x.capture)}
                for x in report.inputs
            ],
        }
    )
