"""``kpsim diff`` as text: one line per change, grouped by node and service.

node ip-10-11-28-53…
  node-test-01/node-test-01-svc (tcp)
    + endpoint 10.11.30.5:80  20.0000%
    ~ share 10.11.16.79:80  33.3333% → 20.0000%
"""

from __future__ import annotations

from kpsim.diff import Change, DiffReport
from kpsim.render.capture import capture_text

_SIGN = {"added": "+", "removed": "-"}


def _line(c: Change) -> str:
    what = c.kind.rsplit("-", 1)
    sign = _SIGN.get(what[-1], "~")
    noun = what[0] if sign != "~" else c.kind.removesuffix("-changed").removesuffix("-differs")
    noun = noun.removesuffix("-differ")
    if c.kind == "service-not-captured":
        why = (
            f"chains cut or missing in the {c.before} capture"
            if c.before in ("before", "after")
            else "out of sight of a partial capture"
        )
        return f"? service not comparable: {why}"
    if c.kind.startswith("service-"):
        return f"{sign} service ({c.after if sign == '+' else c.before})"
    if sign == "+":
        tail = f"  {c.after}" if c.after and c.after != c.subject else ""
        return f"+ {noun} {c.subject}{tail}"
    if sign == "-":
        tail = f"  {c.before}" if c.before and c.before != c.subject else ""
        return f"- {noun} {c.subject}{tail}"
    if c.kind == "share-changed":
        return f"~ share {c.subject}  {c.before} → {c.after}"
    if c.kind.endswith("-changed"):
        return f"~ {noun}: {c.before} → {c.after}"
    # --nodes: this node against the others
    if c.before is None:
        return f"~ {noun}: {c.after} ({c.subject})"
    if c.kind == "endpoints-differ":
        mine, theirs = set((c.after or "").split(", ")), set(c.before.split(", "))
        parts = [f"lacks {', '.join(sorted(theirs - mine))}"] if theirs - mine else []
        parts += [f"has extra {', '.join(sorted(mine - theirs))}"] if mine - theirs else []
        return f"~ endpoints: {len(mine)} here, {len(theirs)} on {c.subject}: {'; '.join(parts)}"
    return f"~ {noun}: this node has {c.after}; {c.subject} have {c.before}"


def diff_text(report: DiffReport) -> str:
    if report.mode == "nodes":
        head = [f"nodes of {report.left} compared with each other"]
    else:
        head = [f"--- {report.left}", f"+++ {report.right}"]
    lines = list(head)
    for x in report.inputs:
        if (gaps := capture_text(x.capture)) is not None:
            lines.append(f"{x.path}: {gaps}")
    lines += [f"node only in {report.left}: {n}" for n in report.only_left]
    lines += [f"node only in {report.right}: {n}" for n in report.only_right]
    node = service = None
    for c in report.changes:
        if c.node != node:
            node, service = c.node, None
            lines.append(f"node {node}")
        if c.service != service:
            service = c.service
            lines.append(f"  {service}" + (f"  ({c.location})" if c.location else ""))
        lines.append(f"    {_line(c)}")
    n = len(report.changes)
    lines.append(
        "no differences" if n == 0 and not report.only_left and not report.only_right
        else f"{n} difference{'s' if n != 1 else ''}"
    )  # fmt: skip
    return "\n".join(lines) + "\n"
