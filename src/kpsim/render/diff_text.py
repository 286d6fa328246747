"""``kpsim diff`` as text: one entry per change, grouped by node and service, folded
at the width (words whole; a service's ``file:line`` on its own line when it does not fit).

node ip-10-11-28-53
  node-test-01/node-test-01-svc (tcp)
    tests/data/snapshots/after/ip-10-11-28-53/iptables-save.txt:163
    + endpoint 10.11.30.61:80  20.0000%
    ~ share 10.11.16.79:80  33.3333% → 20.0000%
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from kpsim.diff import Change, DiffReport
from kpsim.render.capture import capture_text
from kpsim.render.fractions import exact
from kpsim.render.width import DEFAULT, fold, short_node, short_nodes

_SIGN = {"added": "+", "removed": "-"}


def _share(text: str | None, q: Fraction | None) -> str | None:
    """A share whose percentage reads the same on both sides, with its exact fraction."""
    return text if q is None else f"{text} ({exact(q)})"


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
    if c.kind == "share-changed" and c.before == c.after:  # differs past 4 decimals
        before, after = _share(c.before, c.before_exact), _share(c.after, c.after_exact)
        c = replace(c, before=before, after=after)
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


def diff_text(report: DiffReport, width: int = DEFAULT) -> str:
    if report.mode == "nodes":
        head = [f"nodes of {report.left} compared with each other"]
    else:
        head = [f"--- {report.left}", f"+++ {report.right}"]
    lines = [x for h in head for x in fold(h, width, "", "    ")]
    nodes = {c.node for c in report.changes}
    for x in report.inputs:
        if (gaps := capture_text(x.capture)) is not None:
            lines += fold(f"{x.path}: {gaps}", width, "", "    ")
    for side, only in ((report.left, report.only_left), (report.right, report.only_right)):
        for name in only:
            lines += fold(f"node only in {side}: {short_node(name)}", width, "", "    ")
    node = service = None
    for c in report.changes:
        if c.node != node:
            node, service = c.node, None
            lines.append(f"node {short_node(node)}")
        if c.service != service:
            service = c.service
            where = f"  ({c.location})" if c.location else ""
            if len(f"  {service}{where}") <= width:
                lines.append(f"  {service}{where}")
            else:  # the file:line whole on a line of its own
                lines += fold(service, width, "  ", "    ")
                lines += fold(c.location or "", width, "    ") if c.location else []
        lines += fold(short_nodes(_line(c), nodes), width, "    ", "      ")
    n = len(report.changes)
    lines.append(
        "no differences" if n == 0 and not report.only_left and not report.only_right
        else f"{n} difference{'s' if n != 1 else ''}"
    )  # fmt: skip
    return "\n".join(lines) + "\n"
