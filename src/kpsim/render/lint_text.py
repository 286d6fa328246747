"""``kpsim lint`` as text: one entry per finding, ``file:line: severity CODE [service]
message``, grouped by node, then a count — the layout compilers use, so editors and CI
annotate the line. Folded at the width (words whole, later lines indented); a location
that leaves no room for the rest stands on its own line (``-o json`` for one line each)."""

from __future__ import annotations

from collections import Counter

from kpsim.lint import LintReport, Severity
from kpsim.render.width import DEFAULT, fold, short_node, short_nodes


def lint_text(report: LintReport, width: int = DEFAULT) -> str:
    lines: list[str] = []
    node = None
    nodes = {f.node for f in report.findings} | {c.node for c in report.captures}
    for f in report.findings:
        if f.node != node:
            node = f.node
            lines.append(f"{'' if not lines else chr(10)}node {short_node(node)}")
        where = f"{f.location}: " if f.location else ""
        svc = f" [{f.service}]" if f.service else ""
        msg = short_nodes(f.message, nodes)
        entry = f"{where}{f.severity.value} {f.code} {f.kind}{svc}: {msg}"
        lines += fold(entry, width, "  ", "    ")
    counts = Counter(f.severity for f in report.findings)
    total = ", ".join(
        f"{counts[s]} {s.value}{'s' if counts[s] != 1 else ''}"
        for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
    )
    captures = len(report.captures)
    lines.append(f"{'' if not report.findings else chr(10)}{total} in {captures} capture(s)")
    return "\n".join(lines) + "\n"
