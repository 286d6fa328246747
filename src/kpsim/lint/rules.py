"""Findings about the rules themselves, whatever kube-proxy meant: rules that can never
match, jumps to chains the capture lacks, kube-proxy chains nothing jumps to, both
iptables back-ends in use, and what the capture itself could not show.

A chain missing from a partial capture (cut, elided, one table, grepped) is "not
captured", an info; only a whole ``iptables-save`` — which the kernel would have refused
to load with a dangling jump — makes it a warning about the file.
"""

from __future__ import annotations

import re

from kpsim.lint.findings import Finding, Severity, where
from kpsim.model import (
    CommentMatch,
    Dnat,
    Format,
    GapKind,
    Jump,
    Masquerade,
    Redirect,
    Reject,
    Rule,
    Ruleset,
    Snat,
    Standard,
)
from kpsim.model.references import references

#: kube-proxy's per-service chains: one left with no jump to it is stale.
STALE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-")
#: What iptables-nft-save prints when legacy tables are loaded too.
LEGACY_WARNING = re.compile(r"^# Warning: iptables-legacy tables present", re.MULTILINE)
_PARTIAL = (GapKind.TRUNCATED, GapKind.ELIDED)


def unconditional(rule: Rule) -> bool:
    """Matches every packet: no address, interface, protocol, fragment or match but a
    comment."""
    return (
        rule.source is None
        and rule.destination is None
        and rule.protocol is None
        and rule.in_interface is None
        and rule.out_interface is None
        and rule.fragment is None
        and all(isinstance(m, CommentMatch) for m in rule.matches)
    )


def terminates(rule: Rule) -> bool:
    """Evaluation of the chain never goes past this rule (a plain jump returns, so not)."""
    t = rule.target
    if isinstance(t, Jump):
        return t.goto
    return isinstance(t, Standard | Reject | Dnat | Snat | Masquerade | Redirect)


def shadowed(node: str, ruleset: Ruleset) -> list[Finding]:
    """One finding per chain whose rules after an unconditional terminating rule can never
    match."""
    out: list[Finding] = []
    # iptables -L prints no match it cannot name (e.g. some under iptables-nft): a listed
    # rule that looks unconditional may not be
    listing = ruleset.format is Format.LIST
    sev = Severity.INFO if listing else Severity.WARNING
    caveat = " (as listed: iptables -L may omit matches; check iptables-save)" if listing else ""
    for tname, table in ruleset.tables.items():
        for chain in table.chains.values():
            rules = chain.rules
            for i, rule in enumerate(rules[:-1]):
                if unconditional(rule) and terminates(rule):
                    dead = rules[i + 1]
                    msg = (
                        f"{tname} {chain.name}: {len(rules) - i - 1} rule(s) after rule "
                        f"{rule.number} ({where(rule) or 'unconditional'}) can never match: "
                        f"it takes every packet and ends the chain{caveat}"
                    )
                    out.append(Finding(sev, "shadowed-rule", node, None, msg, where(dead)))
                    break
    return out


def partial(ruleset: Ruleset) -> bool:
    """Could rules or chains be missing from this capture (cut, elided, not all tables)?"""
    cap = ruleset.capture
    return (
        not cap.all_tables
        or cap.cut_at is not None
        or bool(cap.limits)
        or any(g.kind in _PARTIAL for g in cap.gaps)
    )


def missing_chains(node: str, ruleset: Ruleset) -> list[Finding]:
    out: list[Finding] = []
    for gap in ruleset.capture.gaps:
        if gap.kind is not GapKind.CHAIN_NOT_CAPTURED:
            continue
        loc = f"{ruleset.path}:{gap.line}" if gap.line else None
        if partial(ruleset):
            msg = f"{gap.table} {gap.chain}: not captured (a partial capture): {gap.message}"
            out.append(Finding(Severity.INFO, "missing-chain", node, None, msg, loc))
        else:
            msg = (
                f"{gap.table} {gap.chain}: jumped to but not defined in a whole capture "
                "(the kernel refuses such a ruleset: the file was edited or filtered)"
            )
            out.append(Finding(Severity.WARNING, "missing-chain", node, None, msg, loc))
    return out


def unreferenced(node: str, ruleset: Ruleset) -> list[Finding]:
    """kube-proxy chains nothing jumps to: stale after a sync or an upgrade. In a cut or
    elided capture the jumps may be in what it lacks: one summary, not a claim per chain."""
    refs, _ = references(ruleset)
    stale = [
        (tname, name, chain)
        for tname, table in ruleset.tables.items()
        for name, chain in table.chains.items()
        if name.startswith(STALE_PREFIXES) and refs[tname].get(name, 0) == 0
    ]
    if not stale:
        return []
    if partial(ruleset):
        first = stale[0][2]
        msg = (
            f"{len(stale)} kube-proxy chain(s) ({stale[0][1]} …) have no jump to them in what "
            "was captured; the capture is partial, so the jumps may be in what it lacks"
        )
        return [Finding(Severity.INFO, "unreferenced-chain", node, None, msg, where(first.origin))]
    return [
        Finding(
            Severity.INFO,
            "unreferenced-chain",
            node,
            None,
            f"{tname} {name}: no rule jumps to it: a stale chain",
            where(chain.origin),
        )
        for tname, name, chain in stale
    ]


def both_backends(node: str, path: str, text: str | None) -> list[Finding]:
    """iptables-nft-save's warning that legacy tables are loaded too: the kernel runs
    both sets of rules, and this capture shows only one."""
    if text is None or (m := LEGACY_WARNING.search(text)) is None:
        return []
    line = text.count("\n", 0, m.start()) + 1
    msg = (
        "iptables-legacy and iptables-nft rules both present: packets meet both, this "
        "capture shows only the nft ones (capture iptables-legacy-save too)"
    )
    return [Finding(Severity.WARNING, "legacy-and-nft", node, None, msg, f"{path}:{line}")]


def capture_gaps(node: str, ruleset: Ruleset) -> list[Finding]:
    """What the capture could not show (chains not captured are ``missing_chains``), and
    a filter table it does not show: lint cannot see kube-proxy's REJECTs and DROPs."""
    out: list[Finding] = []
    if ruleset.capture.has_table("filter") is None and "nat" in ruleset.tables:
        msg = (
            "partial capture: the filter table is not captured, where kube-proxy puts the "
            "REJECTs of services without endpoints and the DROPs of Local-policy services "
            "without a local endpoint: lint cannot tell whether any exist (lint an "
            "iptables-save of all tables)"
        )
        out.append(Finding(Severity.INFO, "partial-capture", node, None, msg))
    for gap in ruleset.capture.gaps:
        if gap.kind is GapKind.CHAIN_NOT_CAPTURED:
            continue
        loc = f"{ruleset.path}:{gap.line}" if gap.line else None
        msg = f"partial capture ({gap.kind.value}): {gap.message}"
        out.append(Finding(Severity.INFO, "partial-capture", node, None, msg, loc))
    return out
