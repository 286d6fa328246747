"""``lint``: every check over every node given, then the one check that needs them all
(which nodes serve a Local service that another node drops).

    [(node, ruleset, text)] ─ lint_nodes ─▶ LintReport(findings sorted by node, file:line)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kpsim.kube.policy import Layout
from kpsim.kube.services import Service, services
from kpsim.lint import addresses
from kpsim.lint import rules as rule_checks
from kpsim.lint import services as svc_checks
from kpsim.lint.findings import Finding
from kpsim.model import Capture, Ruleset


@dataclass(frozen=True, slots=True)
class LintInput:
    """One capture to lint; ``text`` is its raw text when kpsim has it (for the lines the
    parser reads past, such as iptables-nft-save's legacy warning)."""

    node: str
    ruleset: Ruleset
    text: str | None = None
    node_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LintedCapture:
    node: str
    path: str
    capture: Capture
    services: int


@dataclass(frozen=True, slots=True)
class LintReport:
    fixture_set: str
    captures: tuple[LintedCapture, ...]
    findings: tuple[Finding, ...]


def lint_nodes(inputs: Sequence[LintInput], fixture_set: str = "") -> LintReport:
    per_node: list[tuple[LintInput, tuple[Service, ...]]] = [
        (x, services(x.ruleset)) for x in inputs
    ]
    findings: list[Finding] = []
    for x, svcs in per_node:
        findings += _one(x, svcs)
    for x, _ in per_node:
        for drop in svc_checks.local_drops(x.ruleset):
            serving = [
                f"{other.node} ({', '.join(e.destination or e.chain for e in s.local_endpoints)})"
                for other, svcs in per_node
                if other.node != x.node
                for s in svcs
                if s.name == drop.service and s.local_endpoints
            ]
            findings.append(svc_checks.black_hole(x.node, drop, serving))
    captures = tuple(
        LintedCapture(x.node, x.ruleset.path, x.ruleset.capture, len(s)) for x, s in per_node
    )
    return LintReport(fixture_set, captures, tuple(sorted(findings, key=_order)))


def _one(x: LintInput, svcs: tuple[Service, ...]) -> list[Finding]:
    node, rs = x.node, x.ruleset
    out: list[Finding] = []
    layout = Layout(rs)  # either proxy mode's service chains, indexed once
    for svc in svcs:
        out += svc_checks.no_endpoints(node, svc, rs, layout)
        out += svc_checks.cascades(node, svc, rs, layout)
        out += svc_checks.duplicates(node, svc, rs, layout)
    out += rule_checks.shadowed(node, rs)
    out += rule_checks.missing_chains(node, rs)
    out += rule_checks.unreferenced(node, rs)
    out += rule_checks.both_backends(node, rs.path, x.text)
    out += rule_checks.capture_gaps(node, rs)
    out += addresses.nodeport_addresses(node, rs, x.node_ips)
    return out


def _order(f: Finding) -> tuple[str, int, str, int, str]:
    path, _, line = (f.location or "").rpartition(":")
    return (f.node, -f.severity.rank, path, int(line) if line.isdigit() else 0, f.message)
