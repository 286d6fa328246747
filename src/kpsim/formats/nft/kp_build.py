"""The model of kp_lazy's pass: each deferred chain's rules (kp_hot.py) when first read or
now, the chains' jump targets, the frozen Ruleset.

    Deferred  where each chain's deferred lines are in the text; its rules for a table
    freeze    drafts (``LATER`` for a deferred chain) ─▶ Ruleset of LazyChain or Chain

Split from kp_lazy.py (the pass over the text) to keep each module to one job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from types import MappingProxyType

from kpsim.formats.capture import assess
from kpsim.formats.common import RulesetBuilder
from kpsim.formats.iptables.construct import constructor, new_chain, new_location
from kpsim.formats.nft.kp_hot import endpoint_rules, hot_rules
from kpsim.formats.nft.kp_text import NftChain, NftSet, NftTable
from kpsim.formats.nft.kube_proxy import LATER, _assess, jumps_of
from kpsim.model import Chain, Rule, Ruleset, Table

#: A chain name kube-proxy writes (``endpoint-…-ns/svc/tcp/p__10.0.0.1/80``): no blank,
#: quote, brace, comma or ``@``; never ``jump``/``goto`` (targets are read off the text).
NAME = r"(?!(?:jump|goto) )[A-Za-z0-9_][A-Za-z0-9_./:-]*+"
RULE = "add rule ip kube-proxy "
MASQUERADE = "jump mark-for-masquerade"
#: The targets of deferred lines, in order: each shape's ``jump X``/``goto X``, every
#: bucket's of a numgen vmap (no chain name on a deferred line is ``jump`` or ``goto``).
_TARGETS = re.compile(rf" (?:jump|goto) ({NAME})", re.ASCII)
EP_JUMPS = [MASQUERADE[5:]]  # an endpoint chain's jump targets (shared, never changed)


@cache
def _new_lazy() -> Callable[..., Chain]:
    """``LazyChain(name, source, policy, counters, origin)`` positionally (construct.py).
    Made on first use: iptables/lazy.py brings the iptables reader with it (~12 ms to
    import, measured), which a whole load of kube-proxy's nft table never needs."""
    from kpsim.formats.iptables.lazy import LazyChain

    new: Callable[..., Chain] = constructor(Chain, LazyChain)
    return new


class Deferred:
    """The deferred rule lines of kube-proxy's table: where each chain's runs are."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.sets: dict[str, NftSet] = {}
        #: chain → (start, end, number of its first line) of each run of deferred lines,
        #: ``start`` the offset of the newline before the run
        self.runs: dict[str, list[tuple[int, int, int]]] = {}
        #: endpoint chain → (number of its first rule's line, the two rule lines)
        self.endpoints: dict[str, tuple[int, str, str]] = {}
        #: chain → its rules for the ``nat`` table, built before ``assemble`` (``prebuild``)
        self.built: dict[str, tuple[Rule, ...]] = {}
        #: endpoint chain → its nat Chain, made by a whole load's scan (its two rules only)
        self.ready: dict[str, Chain] = {}
        #: a whole load's one NftChain for every endpoint chain (kp_hot.endpoint_chains)
        self.stand_in: NftChain | None = None

    def items(self, name: str) -> list[tuple[int, int, str]]:
        """The chain's deferred lines as the line reader keeps them: (line, col, text)."""
        cut = len(RULE) + len(name) + 1
        out: list[tuple[int, int, str]] = []
        if name in self.endpoints:
            at, one, two = self.endpoints[name]
            out += [(at, cut + 1, one[cut:]), (at + 1, cut + 1, two[cut:])]
        for start, end, first in self.runs.get(name, ()):
            lines = self.text[start + 1 : end].split("\n")
            out += [(number, cut + 1, line[cut:]) for number, line in enumerate(lines, first)]
        return out

    def prebuild(self, names: list[str]) -> None:
        """Every chain with runs built for ``nat`` now (a whole load builds them anyway,
        and nearly all are nat's): its jump targets are then read off its rules, 0.01 s
        for 12,000 chains against 0.04 s by a regex over their lines (measured)."""
        built = self.built
        for name in names:
            built[name] = self._build(name, "nat")

    def jumps(self, name: str) -> list[str]:
        """The chain's jump targets, in rule order (as ``jumps_of`` its rules)."""
        rules = self.built.get(name)
        if rules is not None:
            return jumps_of(rules)
        found = list(EP_JUMPS) if name in self.endpoints else []
        for start, end, _ in self.runs.get(name, ()):
            found += _TARGETS.findall(self.text, start, end)
        return found

    def build(self, name: str, table: str) -> tuple[Rule, ...]:
        """The chain's rules, as ``kube_proxy._lower_chain`` builds them from the same lines
        (every one a hot shape: no statement list, so no helper chain)."""
        if table == "nat":
            rules = self.built.get(name)
            if rules is not None:
                return rules
        return self._build(name, table)

    def _build(self, name: str, table: str) -> tuple[Rule, ...]:
        found = self.endpoints.get(name)
        head: tuple[Rule, ...] = ()
        if found is not None:
            head = endpoint_rules(table, name, *found, self.path)
        if name not in self.runs:
            return head
        runs, cut = self.runs[name], len(RULE) + len(name) + 1
        return head + hot_rules(table, name, self.text, runs, cut, self.path, self.sets, len(head))


class _TableSource:
    """What a ``LazyChain`` of one table asks for its rules (a chain reached from two hook
    slots is in two tables, its rules built for each)."""

    __slots__ = ("deferred", "table")

    def __init__(self, deferred: Deferred, table: str) -> None:
        self.deferred = deferred
        self.table = table

    def rules(self, name: str) -> tuple[Rule, ...]:
        return self.deferred.build(name, self.table)


def freeze(
    builder: RulesetBuilder,
    table: NftTable,
    deferred: Deferred,
    jumps: dict[str, list[str]],
    lazy: bool,
) -> Ruleset:
    """The model: a deferred chain (draft ``LATER``) a ``LazyChain`` (``lazy``) or built
    now; the capture's missing chains from the jump targets, without building any."""
    tables: dict[str, Table] = {}
    missing: list[tuple[str, str]] = []
    path = builder.path
    nft_chains, endpoints, runs = table.chains, deferred.endpoints, deferred.runs
    stand_in = deferred.stand_in
    # plain for speed: a turn per chain, 61,000 of them: ~0.1 s of a ~1.2 s load (measured)
    for tname, drafts in builder.tables.items():
        source = _TableSource(deferred, tname)
        new_lazy = _new_lazy() if lazy else new_chain
        built = deferred.built if tname == "nat" else {}  # prebuild's, for nat
        ready = deferred.ready if tname == "nat" else {}  # the scan's, for nat
        chains: dict[str, Chain] = {}
        targets: set[str] = set()
        later: list[list[str]] = []  # the jump targets of each deferred chain not ready
        from_ready = False
        for name, d in drafts.items():
            if d is not LATER:
                chains[name] = new_chain(name, tuple(d.rules), d.policy, d.counters, d.origin)
                targets.update(jumps_of(d.rules))
                continue
            done = ready.get(name)
            if done is not None:  # its targets: EP_JUMPS (kp_lazy), added once below
                chains[name] = done
                from_ready = True
                continue
            later.append(jumps[name])
            nft = nft_chains[name]
            if nft is stand_in:  # an endpoint chain outside nat or read on: its own line
                origin = new_location(
                    path, endpoints[name][0] - 1, f"add chain ip kube-proxy {name}"
                )
            else:
                origin = new_location(path, nft.line, nft.text)
            if lazy:
                chains[name] = new_lazy(name, source, None, None, origin)
                continue
            rules = built.get(name)
            if rules is None:
                found = endpoints.get(name)
                if found is not None and name not in runs:  # an endpoint's chain, two rules
                    rules = endpoint_rules(tname, name, found[0], found[1], found[2], path)
                else:
                    rules = deferred.build(name, tname)
            chains[name] = new_chain(name, rules, None, None, origin)
        # every deferred chain's targets at once (a set's union in C), the 49,000 ready
        # ones' EP_JUMPS once: ~6 ms less than a list of every deferred chain's (measured)
        targets.update(*later, EP_JUMPS if from_ready else ())
        missing += ((tname, t) for t in targets - chains.keys())
        tables[tname] = Table(tname, MappingProxyType(chains))
    ruleset = Ruleset(
        path=path,
        format=builder.format,
        family=builder.family,
        tables=MappingProxyType(tables),
        metadata=MappingProxyType(dict(builder.metadata)),
        notes=builder.all_notes(),
    )
    capture = assess(ruleset, builder.facts, (), missing=sorted(missing))
    return _assess(replace(ruleset, capture=capture), False)
