"""Work out what a capture can and cannot tell, once, from what its parser saw.

    parser ─ CaptureFacts (COMMITs, the cut, elisions, lost rule lines, -L columns) ─┐
    Ruleset (chains, rules with their lines) ───────────────────────────────────────┴▶ assess
        ─▶ Capture(limits={(table, chain): last whole rule}, missing, gaps=(Gap…))

Every format parser fills the facts it can know; ``assess`` turns them into the model's
``Capture``, so every command reads the same answer.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from kpsim.model import BUILTIN_CHAINS, Capture, Diagnostic, Format, Gap, GapKind, Jump, Ruleset
from kpsim.model.references import references

#: How many chains a gap message names before it says "and N more".
_NAMED = 3
#: A target in a skipped line: it may have been a rule (prose has none).
_JUMP = re.compile(r"(?:^|\s)-[jg]\s")


@dataclass(slots=True)
class CaptureFacts:
    """What a parser saw about the capture itself (mutable while parsing)."""

    headers: bool = False  # `*table` lines: an iptables-save, where COMMIT closes a table
    uncommitted: list[tuple[str, int]] = field(default_factory=list)  # (table, its last line)
    dropped: int | None = None  # a last line not trusted (cut mid-line), not used
    dropped_chain: tuple[str, str] | None = None  # (table, chain) of the dropped line
    cut_lines: set[int] = field(default_factory=set)  # diagnostics about the cut itself
    elisions: list[tuple[int, str | None]] = field(default_factory=list)  # (line, table)
    lost: list[tuple[int, str, str]] = field(default_factory=list)  # rule lines not read
    interfaces_known: bool = True
    names_resolved: bool = False


def assess(ruleset: Ruleset, facts: CaptureFacts, diagnostics: Iterable[Diagnostic]) -> Capture:
    """The capture's completeness (see ``kpsim.model.capture``)."""
    limits: dict[tuple[str, str], int] = {}
    gaps: list[Gap] = []
    _truncation(ruleset, facts, limits, gaps)
    _elisions(ruleset, facts, limits, gaps)
    _lost_rules(ruleset, facts, limits, gaps)
    _, missing = references(ruleset)
    gaps += _missing_gaps(ruleset, missing)
    builtins_missing = _builtins_missing(ruleset)
    for table, chain in builtins_missing:
        gaps.append(
            Gap(GapKind.BUILTIN_NOT_CAPTURED, f"{table} {chain} not captured", None, table, chain)
        )
    all_tables = _all_tables(ruleset, facts)
    gaps += (
        Gap(
            GapKind.NOT_UNDERSTOOD,
            f"table {name} is not an iptables table: its rules are read, not understood",
            None,
            name,
        )
        for name in ruleset.tables
        if name not in BUILTIN_CHAINS
    )
    if not facts.interfaces_known:
        gaps.append(
            Gap(
                GapKind.INTERFACES_HIDDEN,
                "interfaces not shown (iptables -L without -v): rules are read as matching "
                "any interface",
            )
        )
    if facts.names_resolved:
        gaps.append(
            Gap(
                GapKind.NAMES_RESOLVED,
                "names resolved (iptables -L without -n): hosts, ports and protocols were "
                "read back through kpsim's name tables",
            )
        )
    skipped = [d for d in diagnostics if d.line not in facts.cut_lines and not benign(d)]
    if skipped:
        gaps.append(
            Gap(
                GapKind.SKIPPED_LINES,
                f"{len(skipped)} line(s) not read as rules (first at line {skipped[0].line}; "
                "see diagnostics)",
                skipped[0].line,
            )
        )
    return Capture(
        tables=tuple(ruleset.tables),
        all_tables=all_tables,
        cut_at=facts.dropped or (facts.uncommitted[-1][1] if facts.uncommitted else None),
        limits=MappingProxyType(limits),
        missing=tuple(missing),
        builtins_missing=builtins_missing,
        interfaces_known=facts.interfaces_known,
        names_resolved=facts.names_resolved,
        gaps=tuple(gaps),
    )


#: Diagnostics about lines that hold no rule: a prompt, a comment, markdown, a note.
#: Elisions are gaps of their own (ELIDED); rule lines not read are ``lost``.
_BENIGN = (
    "skipped comment",
    "skipped shell prompt",
    "skipped markdown fence",
    "skipped elision",
    "skipped author note",
    "skipped command line",
    "unquoted multi-word comment",  # the rule is read whole, as kube-proxy's tests write it
)


def benign(d: Diagnostic) -> bool:
    """A diagnostic about a line that held no rule (a prompt, a comment, markdown, prose)."""
    if d.message.startswith(_BENIGN):
        return True
    return d.message == "skipped line that is not a rule" and _JUMP.search(d.text) is None


def _truncation(
    ruleset: Ruleset, facts: CaptureFacts, limits: dict[tuple[str, str], int], gaps: list[Gap]
) -> None:
    """A table with no COMMIT: the chain of its last rule and every chain declared after
    it may have lost rules (iptables-save prints declarations first, then rules chain by
    chain); chains not declared yet are simply absent."""
    if facts.dropped is not None and facts.dropped_chain is not None:
        dtable, dchain = facts.dropped_chain
        _limit(limits, dtable, dchain, _number_before(ruleset, dtable, dchain, facts.dropped))
    if not facts.uncommitted and facts.dropped is not None:
        gaps.append(_cut_gap(facts.dropped, True, None))
    for table, last_line in facts.uncommitted:
        chains = ruleset.tables[table].chains if table in ruleset.tables else {}
        last: tuple[int, str, int] | None = None  # (line, chain, number) of its last rule
        for draft in chains.values():
            for rule in draft.rules[-1:]:
                line = rule.origin.line if rule.origin else 0
                if last is None or line > last[0]:
                    last = (line, draft.name, rule.number)
        names = list(chains)
        start = 0
        if last is not None:
            _limit(limits, table, last[1], last[2])
            start = names.index(last[1]) + 1
        for name in names[start:]:
            _limit(limits, table, name, 0)
        cut = facts.dropped if facts.dropped is not None and facts.dropped > last_line else None
        gaps.append(_cut_gap(cut or last_line, cut is not None, table))


def _cut_gap(line: int, dropped: bool, table: str | None) -> Gap:
    if dropped:
        where = f"cut off mid-line at line {line} (that line is not used)"
    else:
        where = f"cut off after line {line}"
    what = f": table {table} has no COMMIT" if table else ""
    return Gap(GapKind.TRUNCATED, f"capture {where}{what}", line, table)


def _elisions(
    ruleset: Ruleset, facts: CaptureFacts, limits: dict[tuple[str, str], int], gaps: list[Gap]
) -> None:
    """An elision (``...``) may hide rules of the chain before it and of the chain after
    it: a walk that goes past the elided place cannot know what it would have met."""
    for line, hinted in facts.elisions:
        before, after = _neighbours(ruleset, line, hinted)
        if before is not None:
            _limit(limits, *before)
        if after is not None and after[2] > 0 and (before is None or after[:2] != before[:2]):
            _limit(limits, after[0], after[1], 0)  # its first rules may be the hidden ones
        near = before or after
        if near is None:
            continue
        gaps.append(
            Gap(
                GapKind.ELIDED,
                f"rules left out at line {line} ({near[0]} {near[1]} may be incomplete)",
                line,
                near[0],
                near[1],
            )
        )


def _neighbours(
    ruleset: Ruleset, line: int, hinted: str | None
) -> tuple[tuple[str, str, int] | None, tuple[str, str, int] | None]:
    """The rules just before and just after ``line`` (table, chain, number), in the
    elision's table when known; the chain listed there when it has no rule before."""
    rows: list[tuple[int, str, str, int]] = []
    for tname, table in ruleset.tables.items():
        if hinted is not None and tname != hinted:
            continue
        for chain in table.chains.values():
            if chain.origin is not None:
                rows.append((chain.origin.line, tname, chain.name, 0))
            rows += ((r.origin.line, tname, chain.name, r.number) for r in chain.rules if r.origin)
    rows.sort()
    at = bisect.bisect_left(rows, (line,))
    before = rows[at - 1][1:] if at > 0 else None
    after = rows[at][1:] if at < len(rows) else None
    return before, after


def _limit(limits: dict[tuple[str, str], int], table: str, chain: str, number: int) -> None:
    key = (table, chain)
    limits[key] = min(limits.get(key, number), number)


def _lost_rules(
    ruleset: Ruleset, facts: CaptureFacts, limits: dict[tuple[str, str], int], gaps: list[Gap]
) -> None:
    """A rule line that could not be read is a rule missing from its chain: the walk
    stops where it would have been."""
    for line, table, chain in facts.lost:
        _limit(limits, table, chain, _number_before(ruleset, table, chain, line))
        gaps.append(
            Gap(
                GapKind.SKIPPED_LINES,
                f"a rule of {table} {chain} at line {line} could not be read",
                line,
                table,
                chain,
            )
        )


def _number_before(ruleset: Ruleset, table: str, chain: str, line: int) -> int:
    """The number of the chain's last rule read before ``line`` (0: none)."""
    found = ruleset.tables.get(table)
    rules = found.chains[chain].rules if found is not None and chain in found.chains else ()
    return max(
        (r.number for r in rules if r.origin is not None and r.origin.line < line), default=0
    )


def _missing_gaps(ruleset: Ruleset, missing: list[tuple[str, str]]) -> list[Gap]:
    """One gap per chain jumped to but not captured, with the first jumping line."""
    first: dict[tuple[str, str], int | None] = {}
    wanted = set(missing)
    for tname, table in ruleset.tables.items() if wanted else ():
        for chain in table.chains.values():
            for rule in chain.rules:
                target = rule.target
                key = (tname, target.chain) if isinstance(target, Jump) else None
                if key in wanted and key not in first:
                    first[key] = rule.origin.line if rule.origin else None
    return [
        Gap(
            GapKind.CHAIN_NOT_CAPTURED,
            f"chain {chain} not captured (jumped to from line {first.get((table, chain))})",
            first.get((table, chain)),
            table,
            chain,
        )
        for table, chain in missing
    ]


def _builtins_missing(ruleset: Ruleset) -> tuple[tuple[str, str], ...]:
    """Built-in chains of a captured table that the capture does not show. kube-proxy's
    own restore input never has them (the tracer adds its base jumps, with a note)."""
    out: list[tuple[str, str]] = []
    for tname, table in ruleset.tables.items():
        builtins = BUILTIN_CHAINS.get(tname, ())
        present = [c for c in builtins if c in table.chains]
        if not present and tname == "nat" and _restore_payload(table.chains):
            continue
        out += ((tname, c) for c in builtins if c not in table.chains)
    return tuple(out)


def _restore_payload(chains: Mapping[str, object]) -> bool:
    return any(name.startswith("KUBE-") for name in chains)


def _all_tables(ruleset: Ruleset, facts: CaptureFacts) -> bool:
    """Does a table the capture lacks mean an empty table? A whole ``iptables-save`` (or
    ``nft list ruleset``) prints every table loaded; a one-table capture (``-t nat``, a
    listing, grepped lines) says nothing of the others."""
    if ruleset.format not in (Format.SAVE, Format.NFT):
        return False
    return (facts.headers or ruleset.format is Format.NFT) and len(ruleset.tables) >= 2


def unsure_last(ruleset: Ruleset, line: int) -> Ruleset:
    """A capture whose last line, a rule, has no newline after it and no COMMIT to close
    it: the rule is kept (a paste usually just lost its newline), and every answer that
    takes it says so (``Capture.unsure``)."""
    for tname, table in ruleset.tables.items():
        for chain in table.chains.values():
            for rule in reversed(chain.rules):
                if rule.origin is not None and rule.origin.line == line:
                    gap = Gap(
                        GapKind.TRUNCATED,
                        f"the capture ends without a newline: its last line ({line}) may be cut",
                        line,
                        tname,
                        chain.name,
                    )
                    capture = replace(
                        ruleset.capture,
                        unsure=(tname, chain.name, rule.number),
                        gaps=(*ruleset.capture.gaps, gap),
                    )
                    return replace(ruleset, capture=capture)
    return ruleset
