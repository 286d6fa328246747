"""Read kube-proxy's ``nft -f`` transaction with one cheap pass, each chain's hot-shape rules
built when first read (``lazy``) or all at the end, without the line-by-line reader.

    text ─ one regex pass ─▶ runs of ``add rule ip kube-proxy NAME <hot shape>`` lines
         │                   (after their ``add chain``), by chain: offsets and line numbers;
         │                   an endpoint's whole chain; element lines; comments
         └ every other line (table, sets, maps, other rules) read now: NftReader
    kube_proxy.assemble (hook slots, reachability from the jump targets read off the text)
         ─▶ Ruleset(chains: LazyChain, built by kp_hot.py on first use, or all at the end)

Why: on a 10,000-service table 114,000 of 115,000 rule lines are one of seven shapes
(kp_fast.py); reading them into drafts line by line and lowering every one cost ~1.3 s of
a ~2.3 s load, against ~0.9 s for the whole iptables-mode load of the same services. With
this pass: 0.85 s on demand (what ``trace`` reads), 1.3 s whole (CPU, cold process;
docs/performance.md, "nftables mode"). A whole load (not ``lazy``) also makes each
endpoint's nat chain as it reads its lines and every other deferred chain before
``assemble`` (kp_build.py), and no line of kube-proxy's needs pyparsing (kp_maps.py,
kp_plain.py, kp_shapes.py), the endpoint chains with one stand-in NftChain (kp_hot.py):
bench/nft.py, 2026-12-06 22:14 UTC, load average 1.8-1.9, best of 5: 1.169 s against the
iptables-mode load's 1.214 s (0.96×; median 1.26 s against 1.39 s; 9f47e9c's 1.266 s).

Same answers as ``kube_proxy.parse_kube_proxy``, or none: a line is deferred only when it
is in a shape ``fast_lower`` lowers without a doubt (``_BODY``: no quotes, dotted quads,
numgen buckets of digits…; ``ip saddr @set`` only when every such set is a dynamic one),
so no deferred line can hold a diagnostic. Any input this pass cannot vouch for — a
diagnostic or note, another table, a listing (``table … {``), a command other than
``add`` (``flush``/``delete``/``insert`` reorder or remove), ``\\r``, no newline at the end,
strict reading — gives None, and the caller reads it whole (``tests/test_nft_lazy.py``
compares the two on every nft input).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kpsim.formats.common import RulesetBuilder, Sink
from kpsim.formats.iptables.construct import constructor
from kpsim.formats.nft.kp_build import EP_JUMPS, MASQUERADE, NAME, RULE, Deferred, freeze
from kpsim.formats.nft.kp_commands import NftReader
from kpsim.formats.nft.kp_hot import NotHot, endpoint_chains
from kpsim.formats.nft.kp_text import NftChain, NftSet, NftTable, elements
from kpsim.formats.nft.kube_proxy import (
    KUBE_PROXY_TABLE,
    NOTE,
    _lower_chain,
    assemble,
    jumps_of,
    parse_kube_proxy,
)
from kpsim.model import BUILTIN_CHAINS, Format, Rule, Ruleset

# ---------------------------------------------------------------- what may be deferred

_NAME = NAME  # a chain name kube-proxy writes (kp_build.py)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: A dotted quad as ``kp_values.ipv4`` takes it (no leading zero, each octet ≤ 255).
_IPV4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_VERDICT = rf"(?:jump|goto) {_NAME}"
_BUCKET = rf"[0-9]{{1,9}} : {_VERDICT}"
#: The seven shapes ``kp_fast.fast_lower`` reads (kube-proxy's hot rules), each in the one
#: spelling kube-proxy writes; ``ip saddr @set`` also needs the set dynamic (checked after).
_BODY = (
    rf"(?:{_VERDICT}"
    rf"|ip saddr (?:{_IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?|@{_NAME}) {_VERDICT}"
    rf"|meta l4proto (?:tcp|udp|sctp) dnat to {_IPV4}(?::[0-9]{{1,5}})?"
    rf"|numgen random mod [1-9][0-9]{{0,8}} vmap \{{ {_BUCKET}(?:, {_BUCKET})*+ \}}"
    rf"|ct state new jump {_NAME}"
    rf"|update @{_NAME} \{{ ip saddr \}})"
)
_CHAIN = "\nadd chain ip kube-proxy "
_RULE = RULE
_ELEMENT = "add element ip kube-proxy "
_MASQUERADE = MASQUERADE
#: An endpoint's chain as kube-proxy writes it (50,000 of a 10,000-service table's 61,000
#: chains): its ``add chain`` line and its two rules, three lines the scan's loop reads by
#: position, a run of such chains one match (a service's endpoints are written together).
#: Then no other rule of the chain follows (else the general form below reads it).
_ENDPOINT = (
    rf"(?P<ep>{_NAME})\n{_RULE}(?P=ep) ip saddr {_IPV4} {_MASQUERADE}\n{_RULE}(?P=ep) "
    rf"meta l4proto (?:tcp|udp|sctp) dnat to {_IPV4}(?::[0-9]{{1,5}})?(?!\n{_RULE}(?P=ep) )"
)
#: A run of endpoint chains; a chain's ``add chain`` line and the hot-shape rules right
#: after it; a run of one chain's hot-shape rules; an ``add element`` line whose list has no
#: quote or brace (read here as NftReader reads it); comment lines that are no
#: ``# kpsim:meta`` (nothing to read). Each from the newline before its first line to the
#: end of its last: the literal "\n" lets ``re`` skip ahead to each line start.
_SCAN = re.compile(
    rf"(?P<eps>(?:\nadd chain ip kube-proxy {_ENDPOINT})++)(?=\n)"
    rf"|\nadd (?:chain ip kube-proxy (?P<chain>{_NAME})(?P<rules>(?:\n{_RULE}(?P=chain) {_BODY})*+)"
    rf"|rule ip kube-proxy (?P<run>{_NAME}) {_BODY}(?:\n{_RULE}(?P=run) {_BODY})*+"
    rf"|element ip kube-proxy (?P<set>{_NAME}) \{{(?P<items>[^{{}}\"\n]*+)\}})(?=\n)"
    r"|(?:\n#(?! kpsim:meta )[^\n]*+)++",
    re.ASCII,
)
#: ``ip saddr @set jump|goto X`` anywhere: kp_fast reads it only for a dynamic set.
_SET_USE = re.compile(rf" ip saddr @({_NAME}) (?:jump|goto) ", re.ASCII)
_TABLE = ("ip", KUBE_PROXY_TABLE)
#: A chain named as a built-in one is lowered at once (its hook slot may reset it).
_BUILTIN_NAMES = frozenset(n for names in BUILTIN_CHAINS.values() for n in names)

#: ``NftChain(name, line, text, kind, hook, priority, policy, comment, rules)``
#: positionally (construct.py), for 50,000 endpoint chains
_new_nft_chain: Callable[..., NftChain] = constructor(NftChain)
_NAME_AT = len(_CHAIN) - 1  # where the name starts in an ``add chain`` line


class _NotClean(Exception):
    """The input holds something only the whole reader answers exactly."""


class _StandInChanged(_NotClean):
    """A line read now changed the endpoint chains' shared NftChain: the pass is run
    again with each chain's own."""


# ---------------------------------------------------------------- the pass


def read_kube_proxy(text: str, path: str, *, strict: bool = False, lazy: bool = False) -> Ruleset:
    """kube-proxy's table: by the one pass when it can vouch for the input, else whole."""
    if not strict:
        found = scan_kube_proxy(text, path, lazy=lazy)
        if found is not None:
            return found
    return parse_kube_proxy(text, path, strict=strict)


def scan_kube_proxy(text: str, path: str, *, lazy: bool = False) -> Ruleset | None:
    """The ruleset of a clean ``nft -f`` transaction of kube-proxy's ``ip`` table (its
    deferred chains built on first use when ``lazy``); None when the whole reader must
    answer (see the module's docstring)."""
    if not text.endswith("\n") or "\r" in text:
        return None
    try:
        try:
            return _Pass(text, path, stand_in=not lazy).run(lazy)
        except _StandInChanged:  # (no kube-proxy table has it: a rule read later, a hook)
            return _Pass(text, path, stand_in=False).run(lazy)
    except _NotClean:
        return None


class _Pass:
    def __init__(self, text: str, path: str, *, stand_in: bool) -> None:
        self.text = text
        self.path = path
        self.sink = Sink(path, False)
        self.reader = NftReader(path, self.sink)
        self.deferred = Deferred(text, path)
        if stand_in:  # a whole load's one NftChain for the endpoint chains (kp_hot.py)
            self.deferred.stand_in = NftChain("", 0, "")

    def run(self, lazy: bool) -> Ruleset:
        text, reader, path = self.text, self.reader, self.path
        runs, endpoints = self.deferred.runs, self.deferred.endpoints
        # a whole load builds each endpoint's chain for nat as it reads its lines (freeze
        # takes it if nothing else is added to it): 50,000 chains' lookups saved there
        ready = None if lazy else self.deferred.ready
        stand_in = self.deferred.stand_in
        done = 0  # the offset up to which the text is read
        lines = 0  # newlines before ``done``
        table: NftTable | None = None
        sets: dict[str, NftSet] | None = None  # the table's, once an element is read
        for m in _SCAN.finditer(text):
            start, end = m.span()
            if start != done:
                self._eager(done, start, lines)
                lines += text.count("\n", done, start)
            number = lines + 2  # the line after the newline at ``start``
            done = end
            eps, _, chain, _, run, set_name, items = m.groups()
            if eps is not None:  # endpoints' chains, one after the other, each whole
                if table is None:  # as NftReader makes it on its first ``add chain``
                    table = reader.table(*_TABLE, number)
                chains = table.chains
                # the run's lines split once, three a chain (a service's endpoints together);
                # their number is the newlines from ``start`` on (16 MB not counted again)
                run_lines = text[start + 1 : end].split("\n")
                lines += len(run_lines)
                three = iter(run_lines)
                if ready is not None and stand_in is not None:  # a whole load: each one's
                    try:  # nat chain now (freeze's)
                        number = endpoint_chains(
                            three, number, chains, endpoints, ready, path, stand_in
                        )
                    except NotHot:
                        raise _NotClean from None  # a chain added again
                    continue
                for head, one, two in zip(three, three, three, strict=True):
                    ep = head[_NAME_AT:]
                    if ep in chains:
                        raise _NotClean  # added again: its earlier lines are elsewhere
                    chains[ep] = _new_nft_chain(ep, number, head, None, None, None, None, None, [])
                    endpoints[ep] = (number + 1, one, two)
                    number += 3
                continue
            if set_name is None:  # one line (an element's) needs no count
                lines += text.count("\n", start, end)
            else:
                lines += 1
            if chain is not None:  # ``add chain``, as NftReader reads it, then its rules
                if table is None:  # as NftReader makes it on its first ``add chain``
                    table = reader.table(*_TABLE, number)
                line_end = start + len(_CHAIN) + len(chain)  # its rules' newline, if any
                if chain not in table.chains:
                    table.chains[chain] = NftChain(chain, number, text[start + 1 : line_end])
                start = line_end
                if start == end:
                    continue  # no rule after it
                number += 1
                run = chain
            elif run is not None:
                if table is None or run not in table.chains:
                    raise _NotClean  # a rule before its chain: the whole reader says so
            elif set_name is not None:  # ``add element ip kube-proxy SET { a, b }``
                found_set = sets.get(set_name) if sets is not None else None
                if found_set is None:
                    sets = self._sets()
                    found_set = sets.get(set_name)
                    if found_set is None:
                        raise _NotClean  # an element before its set: the whole reader says so
                col = len(_ELEMENT) + len(set_name) + 3  # of the first element, as NftReader
                if "," in items:
                    found_set.elements += [(number, col, e) for e in elements(items)]
                elif item := items.strip():  # one element (nearly every line): as elements()
                    found_set.elements.append((number, col, item))
                continue
            else:
                continue  # comment lines: nothing to read
            found = runs.get(run)
            if found is None:
                found = runs[run] = []
            found.append((start, end, number))
        self._eager(done, len(text), lines)
        return self._finish(lazy)

    def _sets(self) -> dict[str, NftSet]:
        """The table's sets so far (the element lines' inlined reading looks them up)."""
        table = self.reader.tables.get(_TABLE)
        return {} if table is None else table.sets

    def _eager(self, start: int, end: int, lines: int) -> None:
        """Read ``text[start:end]`` (whole lines, after the newline that ends a run) now."""
        if start >= end:
            return
        chunk = self.text[start:end].split("\n")
        number = lines + 1
        if start > 0:  # the newline that ends the last run
            chunk = chunk[1:]
            number += 1
        reader = self.reader
        for offset, line in enumerate(chunk):
            if not line.startswith(("add ", "#")) and line.strip():
                raise _NotClean  # flush, delete, insert, a listing: order and deletions
            reader.line(number + offset, line)
        if (
            self.sink.items
            or reader.listed
            or reader._pending is not None
            or reader._table is not None
            or reader._chain is not None
            or reader._set is not None
        ):
            raise _NotClean

    def _finish(self, lazy: bool) -> Ruleset:
        reader, deferred = self.reader, self.deferred
        if list(reader.tables) != [_TABLE] or reader.notes:
            raise _NotClean
        table = reader.tables[_TABLE]
        deferred.sets = table.sets
        if deferred.stand_in is not None:
            self._own_chains(table)
        # a whole load builds every deferred line below, hot_rules checking each set there
        # (this turn over the whole text: 0.014 s, measured)
        for name in set(_SET_USE.findall(self.text)) if lazy else ():
            found = table.sets.get(name)
            if found is None or not found.dynamic:
                raise _NotClean  # fast_lower leaves it to the general reader
        builder = RulesetBuilder(self.path, Format.NFT)
        builder.note(NOTE)
        builder.metadata.update(reader.metadata)
        chains, lowered = self._lowered(table)
        if self.sink.items:
            raise _NotClean
        # an endpoint's chain jumps to mark-for-masquerade only (one list for 50,000)
        only = deferred.endpoints.keys() - deferred.runs.keys()
        jumps = dict.fromkeys(only - lowered, EP_JUMPS)
        if not lazy:
            try:
                deferred.prebuild([n for n in deferred.runs if chains[n] is None])
            except NotHot:
                raise _NotClean from None
            for name in deferred.ready.keys() & (deferred.runs.keys() | lowered):
                del deferred.ready[name]  # more rules than its two: built by freeze
        for name in chains.keys() - jumps.keys():
            rules = chains[name]
            jumps[name] = deferred.jumps(name) if rules is None else jumps_of(rules)
        assemble(builder, table, chains, jumps)
        return freeze(builder, table, deferred, jumps, lazy)

    def _own_chains(self, table: NftTable) -> None:
        """An endpoint chain named as a built-in one given its own NftChain back
        (``_lowered`` lowers it now), as the scan makes it (freeze gives any other its
        line); _StandInChanged when a line read now changed the stand-in."""
        deferred = self.deferred
        if deferred.stand_in != NftChain("", 0, ""):
            raise _StandInChanged
        endpoints, chains = deferred.endpoints, table.chains
        for name in endpoints.keys() & _BUILTIN_NAMES:
            chains[name] = _new_nft_chain(
                name, endpoints[name][0] - 1, _CHAIN[1:] + name, None, None, None, None, None, []
            )

    def _lowered(self, table: NftTable) -> tuple[dict[str, list[Rule] | None], set[str]]:
        """Each chain's model rules, lowered now as the whole reader does, in its order;
        None for a chain whose every rule is deferred (or that has none: built later, it
        is as empty). Only the chains with a rule read now are visited (a few hundred of
        61,000): the rest are None from ``dict.fromkeys``. And the names of those lowered
        (helper chains too): the chains not None, without a turn over 61,000."""
        deferred = self.deferred
        now = [c for n, c in table.chains.items() if c.rules or n in _BUILTIN_NAMES]
        for chain in now:  # rules read now and deferred ones: in line order
            if chain.name in deferred.runs or chain.name in deferred.endpoints:
                chain.rules = sorted([*chain.rules, *deferred.items(chain.name)])
        chains: dict[str, list[Rule] | None] = dict.fromkeys(table.chains)
        for chain in now:
            _lower_chain(chain, table, self.sink, chains)
        lowered = {c.name for c in now}
        if len(chains) == len(table.chains):
            return chains, lowered
        # a statement list made helper chains (``X#2``): the whole reader has each just
        # before its chain, here they came last
        helpers: dict[str, list[str]] = {}
        for name in list(chains)[len(table.chains) :]:
            helpers.setdefault(name.rsplit("#", 1)[0], []).append(name)
            lowered.add(name)
        ordered: dict[str, list[Rule] | None] = {}
        for name in table.chains:
            for helper in helpers.get(name, ()):
                ordered[helper] = chains[helper]
            ordered[name] = chains[name]
        return ordered, lowered
