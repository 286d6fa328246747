"""``kpsim lint`` as text: one line per finding, ``file:line: severity CODE [service]
message``, grouped by node, then a count — the layout compilers use, so editors and CI
annotate the line."""

from __future__ import annotations

from collections import Counter

from kpsim.lint import LintReport, Severity


def lint_text(report: LintReport) -> str:
    lines: list[str] = []
    node = None
    for f in report.findings:
        if f.node != node:
            node = f.node
            lines.append(f"{'' if not lines else chr(10)}node {node}")
        where = f"{f.location}: " if f.location else ""
        svc = f" [{f.service}]" if f.service else ""
        lines.append(f"  {where}{f.severity.value} {f.code} {f.kind}{svc}: {f.message}")
    counts = Counter(f.severity for f in report.findings)
    total = ", ".join(
        f"{counts[s]} {s.value}{'s' if counts[s] != 1 else ''}"
        for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
    )
    captures = len(report.captures)
    lines.append(f"{'' if not report.findings else chr(10)}{total} in {captures} capture(s)")
    return "\n".join(lines) + "\n"
