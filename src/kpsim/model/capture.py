"""What a capture can and cannot tell: the completeness of one input, computed once when
it is read (``kpsim.formats.capture.assess``) and read by every command.

    iptables-save, cut at line 812 ─▶ Capture(cut_at=812, limits={(nat, KUBE-SVC-X): 2, …},
                                              gaps=(Gap(TRUNCATED, "…", line=812), …))

A command's answer that depends on something the capture lacks is UNKNOWN, or carries an
explicit assumption, with the gap's reason and line — never a confident guess. The
default ``Capture()`` is a capture with nothing missing (rulesets built by hand).
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType


class GapKind(Enum):
    """The kinds of thing a capture can lack (JSON: ``capture.gaps[].kind``)."""

    TRUNCATED = "truncated"  # ends inside a table (no COMMIT) or mid-line
    ELIDED = "elided"  # a "..." / "---" line where rules were left out
    CHAIN_NOT_CAPTURED = "chain-not-captured"  # jumped to, not in the capture
    TABLE_NOT_CAPTURED = "table-not-captured"  # a table a packet meets is not in it
    BUILTIN_NOT_CAPTURED = "builtin-not-captured"  # e.g. nat POSTROUTING of a partial -L
    INTERFACES_HIDDEN = "interfaces-hidden"  # iptables -L without -v: no -i/-o shown
    NAMES_RESOLVED = "names-resolved"  # iptables -L without -n: hosts and ports named
    SKIPPED_LINES = "skipped-lines"  # lines kpsim could not read (see diagnostics)
    PROXY_MODE = "proxy-mode"  # rules that do not choose the endpoint (IPVS, userspace)
    NOT_UNDERSTOOD = "not-understood"  # rules kpsim reads but does not understand


@dataclass(frozen=True, slots=True)
class Gap:
    """One thing the capture cannot tell, with where it shows (line, table, chain)."""

    kind: GapKind
    message: str
    line: int | None = None
    table: str | None = None
    chain: str | None = None


def _empty_limits() -> Mapping[tuple[str, str], int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Capture:
    """The completeness of one capture.

    ``tables`` are the tables it shows; ``all_tables`` says a table it does not show is
    empty on the node (a whole ``iptables-save`` prints every loaded table), not merely
    not captured. ``limits`` marks chains whose rules may be incomplete: for
    (table, chain) → n, rules after rule n may be missing (0: any of them, e.g. a chain
    declared after the cut). ``missing`` are chains jumped to but not captured;
    ``builtins_missing`` built-in chains of a captured table the capture does not show;
    ``unsure`` the rule on a last line with no newline after it (kept, but maybe cut).
    """

    tables: tuple[str, ...] = ()
    all_tables: bool = True
    cut_at: int | None = None
    unsure: tuple[str, str, int] | None = None  # (table, chain, number) of a maybe-cut last rule
    limits: Mapping[tuple[str, str], int] = field(default_factory=_empty_limits)
    missing: tuple[tuple[str, str], ...] = ()
    builtins_missing: tuple[tuple[str, str], ...] = ()
    interfaces_known: bool = True
    names_resolved: bool = False
    gaps: tuple[Gap, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.gaps

    def has_table(self, table: str) -> bool | None:
        """True: captured; False: known empty on the node; None: not captured."""
        if table in self.tables:
            return True
        return False if self.all_tables else None

    def limit(self, table: str, chain: str) -> int | None:
        """The last rule number of ``chain`` known to be followed by nothing hidden,
        or None when the chain is whole."""
        return self.limits.get((table, chain))

    def builtin_captured(self, table: str, chain: str) -> bool:
        return (table, chain) not in self.builtins_missing

    def gap_for(self, table: str, chain: str) -> Gap | None:
        """The gap that explains a cut or missing chain, for a reason's text."""
        for gap in self.gaps:
            if gap.table == table and gap.chain == chain:
                return gap
        for gap in self.gaps:
            if gap.kind in (GapKind.TRUNCATED, GapKind.ELIDED) and gap.table == table:
                return gap
        return None
