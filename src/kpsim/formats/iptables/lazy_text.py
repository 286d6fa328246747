"""What ``kpsim show`` asks of a table read on demand (``lazy``), read off the lines the
lazy pass vouched for instead of its 165,000 rules: each chain's rule count, how many rules
jump to each chain, and kube-proxy's service and endpoint chains' few numbers (the
statistic and target of each endpoint jump, each endpoint's DNAT destination).

Why: building every rule of a 10,000-service dump to count and read them took 0.9–1.5 s
of ``show``'s ~2 s; these few C-level passes over the text take ~0.1 s (measured).

Only deferred lines are read here, and a deferred line is one the fast path builds without
a doubt (``lazy_scan``): its target is last (``-j NAME`` or ``-j DNAT --to-destination
IP[:PORT]``), its statistic just before it, its comment free of escapes. Rules read at once
(``Source.eager``) are taken from the model, as built; a chain with any of them is
answered from its rules (``TableText.deferred_only``), never from its text.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from itertools import chain, compress, repeat, tee
from operator import itemgetter, truth
from typing import cast

from kpsim.formats.iptables import fast
from kpsim.formats.iptables.lazy import _RULES_SLOT, LazyChain
from kpsim.formats.iptables.lazy_scan import JUMP_TARGET
from kpsim.formats.iptables.lazy_source import Source
from kpsim.formats.iptables.targets import TARGET_KEYWORDS
from kpsim.formats.on_demand import ChainsOnDemand
from kpsim.model import Chain, Jump, Table

_CHAIN = r"[A-Za-z0-9_.-]++"
#: An endpoint jump, its statistic's probability (group 1) when it has one: the statistic
#: is the last match of a deferred line, just before its target. Starting at " -" lets
#: ``re`` skip ahead: 47 ms on 10,000 services, 110 ms from each line's "-A" (measured).
_SEP_JUMP = re.compile(
    rf" -(?:m statistic --mode random --probability ([0-9.]++) -)?j (KUBE-SEP-{_CHAIN})\n",
    re.ASCII,
)
#: A DNAT (the target ends the line: its destination is the line's end).
_DNAT = re.compile(r" -j DNAT --to-destination ([0-9.:]++)\n", re.ASCII)
_SERVICE_CHAINS = ("KUBE-SVC-", "KUBE-SVL-")
_FIRST = itemgetter(0)
#: The groups of ``fast._RESTORE_RE`` and ``fast._SAVE_RE`` (numbered from 1) of the
#: fields ``TableText.fields`` reads: the same values in either order.
_GROUPS = {
    fast._RESTORE_RE: {"sneg": 12, "src": 13, "addrtype": 6, "recent": 4, "seconds": 5,
                       "probability": 14, "jump": 17},
    fast._SAVE_RE: {"sneg": 2, "src": 3, "addrtype": 11, "recent": 8, "seconds": 9,
                    "probability": 14, "jump": 17},
}  # fmt: skip
Row = tuple[str | None, ...]


class TableText:
    """One lazily read table: its deferred lines' counts and jumps, and readers of
    kube-proxy's service and endpoint chains."""

    def __init__(self, table: Table, source: Source) -> None:
        self.table = table
        self.source = source
        runs = source.runs
        if runs is None or not source.first:
            self.lo = self.hi = 0
            self.items: list[int] = []
        else:
            lo, hi = source.items
            offsets = runs.offsets
            self.lo, self.hi = offsets[lo], offsets[hi] + 1  # the newline after the last run
            self.items = list(range(lo, hi))
        self.eager = {n: d.rules for n, d in source.eager.items() if d.rules}
        self._sep_jumps: dict[str, tuple[list[str], list[str]]] | None = None
        self._dnat: dict[str, str] | None = None

    def counts(self) -> Counter[str]:
        """Rules per chain: deferred lines (a run from the newline before its first line to
        the end of its last holds as many newlines as lines) and rules read at once."""
        runs = self.source.runs
        out: Counter[str] = Counter()
        if runs is not None and self.items:
            names, offsets, count = runs.names, runs.offsets, self.source.text.count
            lo, hi = self.items[0], self.items[-1] + 1
            sizes = map(count, repeat("\n"), offsets[lo:hi], offsets[lo + 1 : hi + 1])
            kept = list(map(truth, names[lo:hi]))
            # a chain a run: one C-level expansion, then Counter's C loop (no Python
            # loop over the 72,000 runs)
            chains = cast(list[str], names[lo:hi])
            lines = map(repeat, compress(chains, kept), compress(sizes, kept))
            out.update(chain.from_iterable(lines))
        for name, rules in self.eager.items():
            out[name] += len(rules)
        return out

    def jumps(self) -> Counter[str]:
        """How many rules jump to each chain (``model.references``' count)."""
        text, runs = self.source.text, self.source.runs
        # the lazy pass's own search of these lines: 30 ms not spent again (measured)
        found: Counter[str] = Counter(self.source.targets)
        if runs is not None and self.items:
            names, offsets = runs.names, runs.offsets
            for i in self.items:  # lines read at once between the runs: from their rules
                if names[i] is None:
                    found.subtract(JUMP_TARGET.findall(text, offsets[i], offsets[i + 1] + 1))
        for keyword in TARGET_KEYWORDS & found.keys():  # never a Jump in a deferred line
            del found[keyword]
        found.update(
            [
                t.chain
                for rules in self.eager.values()
                for r in rules
                if isinstance(t := r.target, Jump)
            ]
        )
        # no zero counts; ``+found`` rebuilt the Counter in a Python loop (10 ms, measured)
        for name in [name for name, n in found.items() if n <= 0]:
            del found[name]
        return found

    def mentioning(self, words: str) -> set[str]:
        """The chains with a deferred line holding ``words``, and those with a rule read at
        once: all that may hold a rule whose comment says ``words``."""
        # a literal search (C-speed), then each hit's line start: a regex from every
        # line's start took ~0.1 s on 10,000 services (measured)
        text, out, at = self.source.text, set(self.eager), self.lo
        while (at := text.find(words, at, self.hi)) >= 0:
            # from a window before the hit: ``rfind`` from ``lo`` took 20 ms a hit (measured)
            near = max(self.lo, at - 4096)
            start = text.rfind("\n", near, at)
            start = (text.rfind("\n", self.lo, at) if start < 0 else start) + 1
            if text.startswith("-A ", start):  # else a line read at once: in ``eager``
                out.add(text[start + 3 : text.find(" ", start + 3, at + 1)])
            at += len(words)
        return out

    def deferred_only(self, name: str) -> bool:
        """Is every rule of ``name`` a deferred line (its text says all about it)?"""
        return name not in self.eager

    def fields(self, name: str, *wanted: str) -> list[Row] | None:
        """Per rule of a chain whose every rule is a deferred line, these fields as the
        fast path reads them (``_GROUPS``: ``sneg``/``src`` a ``-s`` and its "! ",
        ``addrtype`` "src"/"dst" for ``--src/dst-type LOCAL``, ``recent`` the command and
        ``seconds`` of a ``-m recent``, ``probability``, ``jump`` a ``-j NAME``'s NAME, a
        target keyword included; None where the rule has none); else None.

        Why: ``show`` reads a 10,000-service dump's 1,000 KUBE-EXT chains (the policy
        Local or not) and 2,000 service chains with session affinity; building their
        rules took ~0.07 s of it (measured)."""
        if not self.deferred_only(name):
            return None
        text, out = self.source.text, []
        first, second = fast._RESTORE_RE.fullmatch, fast._SAVE_RE.fullmatch
        groups = {r: [g[w] for w in wanted] for r, g in _GROUPS.items()}
        for start, end in self.source.spans(name):
            for line in text[start + 1 : end].split("\n"):
                m = first(line) or second(line)
                if m is None:  # never for a vouched line: the rules answer
                    return None
                found = m.group(*groups[m.re])
                out.append(found if isinstance(found, tuple) else (found,))
        return out

    def local_sources(self, name: str) -> list[tuple[str, bool]] | None:
        """Per rule of a chain whose every rule is a deferred line: the chain it jumps to
        ("" for a target keyword or DNAT) and whether only node-local or pod sources take
        it (``-s`` not negated, or ``-m addrtype --src-type LOCAL``); else None."""
        rows = self.fields(name, "sneg", "src", "addrtype", "jump")
        if rows is None:
            return None
        keywords = TARGET_KEYWORDS
        return [
            (
                "" if jump is None or jump in keywords else jump,
                (src is not None and sneg is None) or local == "src",
            )
            for sneg, src, local, jump in rows
        ]

    def sep_jumps(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per service chain without affinity: the probability ("" for none) and the
        endpoint chain of each of its endpoint jumps, in order."""
        if self._sep_jumps is None:
            self._read_service_runs()
        assert self._sep_jumps is not None
        return self._sep_jumps

    def dnat(self) -> dict[str, str]:
        """Each endpoint chain's (KUBE-SEP-…) first DNAT destination, as ``str(NatRange)``
        writes it (a deferred one is ``IP`` or ``IP:PORT``, the port without leading
        zeros)."""
        if self._dnat is None:
            self._read_service_runs()
        assert self._dnat is not None
        return self._dnat

    def _read_service_runs(self) -> None:
        """``sep_jumps`` and ``dnat``, each run of a service or endpoint chain searched on
        its own, the runs picked and searched by ``map`` in C: a search of the whole table
        found each hit's chain by a bisection of the runs and a Python loop over its
        100,000 hits, 0.14 s against 0.07 s (measured)."""
        text, runs = self.source.text, self.source.runs
        jumps: dict[str, tuple[list[str], list[str]]] = {}
        dests: dict[str, str] = {}
        if runs is not None and self.items:
            lo, hi = self.items[0], self.items[-1] + 1
            # each run from the newline before its first line to the one after its last;
            # lines read at once (no name) are in ``eager``
            names = [name or "" for name in runs.names[lo:hi]]
            starts, ends = runs.offsets[lo:hi], [end + 1 for end in runs.offsets[lo + 1 : hi + 1]]
            seps = list(map(str.startswith, names, repeat("KUBE-SEP-")))
            # each run's DNATs, the first of a chain's kept (``setdefault``), all in C and
            # a run's at a time: a list of 50,000 matches, then a loop over it, took 36 ms
            # and 2,000 fresh pages of 10,000 services' 60,000 chains, this ~25 (measured)
            found = map(_DNAT.findall, repeat(text), compress(starts, seps), compress(ends, seps))
            rows, hit = tee(found)
            firsts = map(_FIRST, filter(None, rows))
            deque(map(dests.setdefault, compress(compress(names, seps), hit), firsts), 0)
            services = list(map(str.startswith, names, repeat(_SERVICE_CHAINS)))
            rows = map(_SEP_JUMP.findall, repeat(text), compress(starts, services),
                       compress(ends, services))  # fmt: skip
            for name, hits in zip(compress(names, services), rows, strict=True):
                if hits:
                    chains = jumps.get(name) or jumps.setdefault(name, ([], []))
                    chains[0].extend([p for p, _ in hits])
                    chains[1].extend([c for _, c in hits])
        for name in self.mentioning(" -m recent "):  # session affinity: from its rules
            jumps.pop(name, None)
        self._sep_jumps, self._dnat = jumps, dests


def table_text(table: Table) -> TableText | None:
    """The table's deferred lines when it was read on demand (any of its chains still
    unbuilt leads to them); else None: its rules are all there is to read."""
    chains = table.chains
    # a chain not made yet is its recipe, the source first: none is made to find it
    stored = chains.stored() if isinstance(chains, ChainsOnDemand) else chains.values()
    for found in stored:
        if type(found) is tuple or type(found) is LazyChain:
            source = found[0] if type(found) is tuple else _RULES_SLOT.__get__(found, Chain)
            if not isinstance(source, Source):
                return None
            # made once per table: ``show`` asks 5 times, each a scan of 61,000 chains
            if not isinstance(source.view, TableText) or source.view.table is not table:
                source.view = TableText(table, source)
            return source.view
    return None
