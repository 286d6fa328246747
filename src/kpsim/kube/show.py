"""``kpsim show``: what a capture holds — format, tables, chains, services, diagnostics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple

from kpsim.kube import services as kube
from kpsim.kube.fast_services import fast_services
from kpsim.kube.fast_show import chain_counts
from kpsim.kube.mode import ModeFinding, ProxyMode, proxy_mode
from kpsim.kube.policy import with_policies
from kpsim.model import Capture, Diagnostic, Format, Ruleset, Table


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
    capture: Capture = field(default_factory=Capture)
    mode: ModeFinding | None = None


@dataclass(frozen=True, slots=True)
class ShowReport:
    fixture_set: str
    origin: str
    inputs: tuple[InputSummary, ...]


def summarize(ruleset: Ruleset, node: str) -> InputSummary:
    """What ``show`` says of one capture; one read on demand (``formats.iptables.lazy``)
    is counted and its services read off its text, its chains not built (``fast_show``)."""
    refs, missing, sizes = chain_counts(ruleset)
    chains: list[ChainSummary] = []
    tables: dict[str, tuple[int, int]] = {}  # table → (chains, rules)
    for tname, table in ruleset.tables.items():
        rows = _chain_rows(tname, table, refs[tname], sizes[tname])
        tables[tname] = (len(rows), sum([row.rules for row in rows]))
        chains += rows
    mode = proxy_mode(ruleset)
    ipvs = kube.is_ipvs(ruleset) or mode.mode is ProxyMode.IPVS
    notes = ruleset.notes
    if not mode.chooses_endpoints and mode.mode is not ProxyMode.NONE:
        notes += (mode.message,)
    return InputSummary(
        path=ruleset.path,
        node=node,
        format=ruleset.format,
        family=ruleset.family.value,
        tables=tables,
        chains=tuple(chains),
        missing_chains=tuple(missing),
        services=with_policies(ruleset, fast_services(ruleset)),
        ipvs=ipvs,
        notes=notes,
        diagnostics=ruleset.diagnostics,
        capture=ruleset.capture,
        mode=mode,
    )


def _chain_rows(
    tname: str, table: Table, refs: Mapping[str, int], sizes: Mapping[str, int]
) -> list[ChainSummary]:
    """One row per chain, in the table's order.

    Built by ``tuple.__new__(ChainSummary, …)`` over zipped columns, all in C but the
    policies': the named tuple's own ``__new__`` is Python code, and a comprehension per
    chain a Python loop; 0.043 s → 0.012 s for 61,000 chains (measured)."""
    names = list(table.chains)
    policies = [c.policy.value if c.policy else None for c in table.chains.values()]
    zero = repeat(0)
    columns = zip(repeat(tname), names, policies, map(sizes.get, names, zero),
                  map(refs.get, names, zero))  # fmt: skip
    return list(map(tuple.__new__, repeat(ChainSummary), columns))
