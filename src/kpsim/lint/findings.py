"""What ``kpsim lint`` reports: one frozen ``Finding`` per problem, with a stable code, a
severity a pipeline can fail on, and the capture line behind it.

    Finding(WARNING, "KP001", "no-endpoints", node, "ns/svc:port", "…", "file:41")
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from kpsim.model import Rule, SourceLocation


class Severity(Enum):
    """Ordered by ``rank``: ``--fail-on warning`` fails on warnings and errors."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}

#: Stable codes (docs/analyze.md): a code never changes meaning once released.
CODES: dict[str, str] = {
    "no-endpoints": "KP001",
    "local-black-hole": "KP002",
    "uneven-cascade": "KP003",
    "cascade-falls-through": "KP004",
    "shadowed-rule": "KP005",
    "missing-chain": "KP006",
    "unreferenced-chain": "KP007",
    "duplicate-endpoint": "KP008",
    "legacy-and-nft": "KP009",
    "partial-capture": "KP010",
    "nodeport-addresses": "KP011",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem. ``location`` is ``file:line`` of the rule (or gap) behind it."""

    severity: Severity
    kind: str  # a key of CODES
    node: str
    service: str | None
    message: str
    location: str | None = None

    @property
    def code(self) -> str:
        return CODES[self.kind]


def where(thing: Rule | SourceLocation | None) -> str | None:
    """``file:line`` of a rule or a source location, when the capture gave one."""
    origin = thing.origin if isinstance(thing, Rule) else thing
    return str(origin) if origin is not None else None


def at_or_above(findings: tuple[Finding, ...], threshold: Severity) -> bool:
    """Does any finding reach ``threshold`` (what ``--fail-on`` exits non-zero for)?"""
    return any(f.severity.rank >= threshold.rank for f in findings)
