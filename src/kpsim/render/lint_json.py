"""``kpsim lint -o json``: schema ``kpsim/lint/v1`` (docs/analyze.md). Sorted keys, one
line: the same captures give the same bytes."""

from __future__ import annotations

from typing import Any

from kpsim.lint import LintReport
from kpsim.lint.findings import Finding
from kpsim.render.capture import capture_doc
from kpsim.render.json import dumps

LINT_SCHEMA = "kpsim/lint/v1"


def finding_doc(f: Finding) -> dict[str, Any]:
    return {
        "severity": f.severity.value,
        "code": f.code,
        "kind": f.kind,
        "node": f.node,
        "service": f.service,
        "message": f.message,
        "location": f.location,
    }


def lint_json(report: LintReport) -> str:
    return dumps(
        {
            "schema": LINT_SCHEMA,
            "fixture_set": report.fixture_set,
            "findings": [finding_doc(f) for f in report.findings],
            "inputs": [
                {
                    "node": c.node,
                    "path": c.path,
                    "services": c.services,
                    "capture": capture_doc(c.capture),
                }
                for c in report.captures
            ],
        }
    )
