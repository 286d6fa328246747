"""What a capture could not show, as every command prints it: one ``capture:`` line in
text, ``capture`` and ``diagnostics`` members in JSON; and the client-IP words, which say
nothing for a packet that is not delivered and "unknown" when POSTROUTING was not seen.

    Capture(gaps=(cut at 812, KUBE-SVC-X not captured, …)) ─▶ "capture: cut off at line 812; …"
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kpsim.formats.capture import benign
from kpsim.model import Capture, Diagnostic, GapKind

if TYPE_CHECKING:  # ``show -o json`` renders captures without loading the engine
    from kpsim.engine.trace import Outcome

#: How many gaps of one kind the text line names before it says "and N more".
NAMED = 3
#: How many diagnostics a command other than ``show`` prints before pointing at show.
DIAGNOSTICS_SHOWN = 3
_DELIVERED = ("DNAT", "ACCEPT", "LOCAL")


def capture_text(capture: Capture) -> str | None:
    """``capture: …`` naming what is missing or uncertain; None for a whole capture."""
    if capture.complete:
        return None
    parts: list[str] = []
    counts: dict[GapKind, int] = {}
    for gap in capture.gaps:
        counts[gap.kind] = counts.get(gap.kind, 0) + 1
        if counts[gap.kind] <= NAMED:
            parts.append(gap.message)
    parts += (
        f"and {n - NAMED} more {kind.value.replace('-', ' ')}"
        for kind, n in counts.items()
        if n > NAMED
    )
    return "capture: " + "; ".join(parts)


def diagnostics_text(diagnostics: tuple[Diagnostic, ...]) -> list[str]:
    """The first few skipped or doubted lines as ``path:line:col: message``, then a count."""
    lines = [f"{d.path}:{d.line}:{d.col}: {d.message}" for d in diagnostics[:DIAGNOSTICS_SHOWN]]
    if len(diagnostics) > DIAGNOSTICS_SHOWN:
        more = len(diagnostics) - DIAGNOSTICS_SHOWN
        lines.append(f"… and {more} more line(s) skipped or doubted (kpsim show lists them all)")
    return lines


def capture_lines(capture: Capture, diagnostics: tuple[Diagnostic, ...]) -> list[str]:
    """What a command prints first about its input: the capture line, then the first few
    diagnostics (nothing at all for a whole, cleanly read capture)."""
    line = capture_text(capture)
    doubted = tuple(d for d in diagnostics if not benign(d))  # prompts, fences: show lists them
    return ([line] if line else []) + diagnostics_text(doubted)


def capture_doc(capture: Capture) -> dict[str, Any]:
    """JSON ``capture``: ``complete`` and the ``gaps`` (docs/json.md)."""
    cut = {table for table, _ in capture.limits}
    return {
        "complete": capture.complete,
        "cut_at": capture.cut_at,
        "tables": {t: "partial" if t in cut else "whole" for t in capture.tables},
        "gaps": [
            {
                "kind": g.kind.value,
                "message": g.message,
                "line": g.line,
                "table": g.table,
                "chain": g.chain,
            }
            for g in capture.gaps
        ],
    }


def diagnostics_doc(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    return [
        {"line": d.line, "col": d.col, "message": d.message, "text": d.text} for d in diagnostics
    ]


def client_ip(o: Outcome) -> str | None:
    """MASQUERADED / kept / unknown for a delivered packet; None (say nothing) for DROP,
    REJECT and UNKNOWN."""
    if o.verdict.value not in _DELIVERED:
        return None
    if o.masquerade or o.snat_to:
        return "MASQUERADED"
    return "unknown" if o.masquerade is None else "kept"
