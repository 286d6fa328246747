"""kube-proxy's nftables table (``table ip kube-proxy``) into the one rule model.

    nft text ─ kp_commands.NftReader ─▶ drafts ─ kp_lower ─▶ model chains
    base chains (hook, priority) ─▶ the iptables hook slot the engine walks in order:

      prerouting: raw -300, mangle -150, nat -100      input:  mangle, filter 0, nat 100
      forward:    mangle -150, filter 0                output: raw, mangle, nat -100, filter 0
      postrouting: mangle -150, nat 100

A base chain goes to the slot of its type at or before its priority, so the order between
kube-proxy's chains and DNAT is the kernel's (``filter-prerouting`` at ``dstnat - 10``
before nat PREROUTING; ``filter-output-post-dnat`` at ``dstnat + 10`` after nat OUTPUT).
Each slot's built-in chain jumps to its base chains in priority order. Every kube-proxy
chain a slot reaches is in that slot's table, as in iptables a chain is in one table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from types import MappingProxyType

from kpsim.formats.common import ChainDraft, RulesetBuilder, Sink
from kpsim.formats.iptables.construct import new_location, new_rule
from kpsim.formats.nft.kp_commands import NftReader
from kpsim.formats.nft.kp_fast import fast_lower
from kpsim.formats.nft.kp_literal import Lowered
from kpsim.formats.nft.kp_lower import Statement, StatementError
from kpsim.formats.nft.kp_text import NftChain, NftTable
from kpsim.model import (
    BUILTIN_CHAINS,
    Family,
    Format,
    Gap,
    GapKind,
    HookEntry,
    Jump,
    Match,
    OpaqueTarget,
    Rule,
    Ruleset,
    SourceLocation,
    Target,
    Verdict,
)

NOTE = (
    "nftables: kube-proxy's table read into the rule model; each base chain walked at "
    "its hook in priority order"
)
KUBE_PROXY_TABLE = "kube-proxy"

#: (hook, slot table, slot priority) in the order the engine walks each hook.
_SLOTS = {
    "prerouting": (("raw", -300), ("mangle", -150), ("nat", -100)),
    "input": (("mangle", -150), ("filter", 0), ("security", 50), ("nat", 100)),
    "forward": (("mangle", -150), ("filter", 0), ("security", 50)),
    "output": (("raw", -300), ("mangle", -150), ("nat", -100), ("filter", 0), ("security", 50)),
    "postrouting": (("mangle", -150), ("nat", 100)),
}


#: ``table FAMILY NAME`` anywhere, then checked to start its line (below): a pattern led by
#: ``^`` is tried at every line start, 0.13 s over the 208,000 lines of a 10,000-service
#: transaction; one led by the literal finds the few ``table`` words in ~0.01 s (measured).
_TABLES = re.compile(r"table (?:ip|ip6|inet|arp|bridge|netdev) (\S+)")
_LINE_HEAD = re.compile(r"[^\S\n]*(?:add |create )?")


def is_kube_proxy_nft(text: str) -> bool:
    """Does the text hold kube-proxy's nftables table (other tables beside it are read
    by the iptables-nft reader, beside.py)?"""
    names = set()
    for m in _TABLES.finditer(text):
        if _LINE_HEAD.fullmatch(text, text.rfind("\n", 0, m.start()) + 1, m.start()):
            if m.group(1) == KUBE_PROXY_TABLE:
                return True  # the rest of the text need not be searched (kube-proxy's
            names.add(m.group(1))  # table is its first line: 0.012 s of 26 MB saved)
    if names:
        return False
    head = text[: 1 << 20]
    return " ip kube-proxy " in head or " ip6 kube-proxy " in head or " inet kube-proxy " in head


def parse_kube_proxy(text: str, path: str, *, strict: bool = False) -> Ruleset:
    sink = Sink(path, strict)
    reader = NftReader(path, sink)
    reader.read(text)
    builder = RulesetBuilder(path, Format.NFT)
    builder.note(NOTE)
    builder.metadata.update(reader.metadata)
    for note in reader.notes:
        builder.note(note)
    ours = [t for t in reader.tables.values() if t.name == KUBE_PROXY_TABLE]
    table = next((t for t in ours if t.family in ("ip", "inet")), ours[0] if ours else None)
    others = [t for t in reader.tables.values() if t is not table]
    for t in others:
        if t.name == KUBE_PROXY_TABLE:
            builder.note(f"table {t.family} {t.name} (line {t.line}) is not read: one family "
                         "a capture, and kpsim read the ip one")  # fmt: skip
    if table is not None:
        if table.family == "ip6":
            builder.family = Family.IPV6
        _build(builder, table, sink, fill=reader.cut is None)
    diagnostics = list(sink.items)
    if any(t.name != KUBE_PROXY_TABLE for t in others):
        # imported here: the iptables-nft reader (beside.py and its grammar, ~5 ms to
        # import) is for tables beside kube-proxy's, which its own transaction never has
        from kpsim.formats.nft.beside import merge, read_beside

        family = "ip6" if table is not None and table.family == "ip6" else "ip"
        diagnostics += merge(builder, read_beside(text, path, strict, family))
        diagnostics.sort(key=lambda d: (d.line, d.col))
    ruleset = builder.freeze(diagnostics)
    return _assess(ruleset, reader.listed, reader.cut)


def _build(builder: RulesetBuilder, table: NftTable, sink: Sink, *, fill: bool = True) -> None:
    chains: dict[str, list[Rule] | None] = {}
    for chain in table.chains.values():
        _lower_chain(chain, table, sink, chains)
    jumps = {name: jumps_of(rules or ()) for name, rules in chains.items()}
    assemble(builder, table, chains, jumps, fill=fill)


def jumps_of(rules: Iterable[Rule]) -> list[str]:
    """The chains a chain's rules jump or go to, in rule order."""
    return [t.chain for r in rules if isinstance(t := r.target, Jump)]


#: The draft of a chain built later (``kp_lazy``): placed like any, never filled here.
LATER = ChainDraft("")


def assemble(
    builder: RulesetBuilder,
    table: NftTable,
    chains: dict[str, list[Rule] | None],
    jumps: dict[str, list[str]],
    *,
    fill: bool = True,
) -> None:
    """Base chains into hook slots, then every chain into the table of the slot that
    reaches it (``chains``: each chain's model rules in the order lowered; None for a
    chain built later by ``kp_lazy``, whose draft is then ``LATER``). ``fill``: the other
    built-in chains of a slot's table are there, empty (no base chain at that hook); not
    for a cut text, whose base chains may have come after the cut."""
    slots: dict[tuple[str, str], list[NftChain]] = {}
    for chain in table.chains.values():
        if chain.hook is not None:
            slot = _slot(chain, builder)
            if slot is not None:
                slots.setdefault(slot, []).append(chain)
    placed: dict[str, set[str]] = {}  # per table, the chains placed there so far
    placed_names: set[str] = set()
    for (tname, hook_chain), bases in sorted(slots.items()):
        bases.sort(key=lambda c: (c.priority or 0, c.name))
        for name in BUILTIN_CHAINS[tname] if fill else (hook_chain,):
            if name not in builder.tables.get(tname, {}):  # no base chain: the packet goes on
                builder.declare(tname, name, Verdict.ACCEPT, None, None)
        slot_rules = builder.tables[tname][hook_chain]
        slot_rules.origin = SourceLocation(builder.path, bases[0].line, bases[0].text)
        for n, base in enumerate(bases, 1):
            origin = SourceLocation(builder.path, base.line, base.text)
            policy = Verdict.DROP if base.policy == "drop" else Verdict.ACCEPT
            entry = HookEntry(base.name, policy=policy)  # its accept ends only this chain
            slot_rules.rules.append(Rule(tname, hook_chain, n, entry, origin=origin))
        builtin = BUILTIN_CHAINS[tname]
        drafts = builder.tables[tname]
        done = placed.setdefault(tname, set())
        # a chain placed in this table before was placed with all it reaches: placing it
        # again would set the same draft to the same rules, so the walk stops there (nat
        # PREROUTING and OUTPUT both reach all 61,000 chains of a 10,000-service table).
        # A chain named as a built-in one is placed again (its slot may have reset it).
        reached = _reachable((b.name for b in bases), jumps, done)
        for name in reached:
            if chains[name] is None and name not in drafts:  # built later: 61,000 of them
                drafts[name] = LATER
            else:
                _place(builder, tname, name, table, chains)
        placed_names.update(reached)  # whole sets at once: 61,000 names
        done.update(reached)
        done.difference_update(builtin)  # never in it before: placed again each time
    unreached = chains.keys() - placed_names
    for name in chains if unreached else ():  # chains no hook reaches: shown in nat, as
        if name in unreached:  # kube-proxy's
            _place(builder, "nat", name, table, chains)


def _place(
    builder: RulesetBuilder,
    tname: str,
    name: str,
    table: NftTable,
    chains: dict[str, list[Rule] | None],
) -> None:
    rules = chains[name]
    if rules is None:  # built later: placed once per table, never a built-in chain's name
        drafts = builder.tables.setdefault(tname, {})
        assert name not in drafts, name
        drafts[name] = LATER
        return
    source = table.chains.get(name)
    origin = new_location(builder.path, source.line, source.text) if source else None
    draft = builder.declare(tname, name, None, None, origin)
    if rules and rules[0].table != tname:
        rules = [dataclasses.replace(r, table=tname) for r in rules]
    draft.rules = list(rules)


def _reachable(starts: Iterable[str], jumps: dict[str, list[str]], done: set[str]) -> list[str]:
    """The chains reached from ``starts``, depth first, none of ``done`` walked through."""
    seen: dict[str, None] = {}  # ordered, and a set's lookups: 40,000 chains in a big table
    todo = list(starts)
    pop, push, extend, targets_of = todo.pop, todo.append, todo.extend, jumps.get
    while todo:
        name = pop()
        if name in seen or name in done:
            continue
        targets = targets_of(name)
        if targets is None:
            continue
        seen[name] = None
        if len(targets) != 1:
            extend(targets)
        elif targets[0] not in seen:  # a seen one would be passed over when popped: an
            push(targets[0])  # endpoint chain's mark-for-masquerade, 50,000 times
    return list(seen)


def _slot(chain: NftChain, builder: RulesetBuilder) -> tuple[str, str] | None:
    """The engine's (table, built-in chain) for a base chain, by its type and priority."""
    hook = chain.hook or ""
    slots = _SLOTS.get(hook)
    if slots is None or chain.priority is None:
        builder.note(f"base chain {chain.name} (hook {hook}) is not walked: kpsim walks the "
                     "prerouting, input, forward, output and postrouting hooks")  # fmt: skip
        return None
    if chain.kind == "nat":
        found = [t for t, _ in slots if t == "nat"]
        return (found[0], hook.upper()) if found else None
    at = [i for i, (_, prio) in enumerate(slots) if prio <= chain.priority]
    i = at[-1] if at else 0
    while slots[i][0] == "nat":
        if i + 1 < len(slots):
            i += 1
        else:
            builder.note(f"base chain {chain.name} runs after nat {hook} in the kernel; "
                         "kpsim walks it before")  # fmt: skip
            i -= 1
    return (slots[i][0], hook.upper())


def _lower_chain(
    chain: NftChain, table: NftTable, sink: Sink, chains: dict[str, list[Rule] | None]
) -> None:
    rules: list[Rule] = []
    path = sink.path
    for line, col, text in chain.rules:
        origin = new_location(path, line, text)
        try:
            low = fast_lower(text, table.sets) or Statement(text, table.sets).read()
        except StatementError as exc:
            sink.report(line, col + exc.offset, str(exc), text)
            bad = OpaqueTarget("nft", text=f"not read: {text}")
            rules.append(Rule("nat", chain.name, len(rules) + 1, bad, origin=origin))
            continue
        if low.branches is not None:  # a map's rule per element, as _alternatives has them
            _branches(low, chain.name, origin, rules)  # (10,000 of the services chain's)
            continue
        for extra, target in _alternatives(low, chain.name, len(rules), chains, origin):
            rules.append(  # new_rule: Rule(…) positionally, 5× as fast (construct.py)
                new_rule(
                    "nat",
                    chain.name,
                    len(rules) + 1,
                    target,
                    low.source,
                    low.destination,
                    low.protocol,
                    low.in_interface,
                    low.out_interface,
                    None,
                    tuple(low.matches) + extra,
                    None,
                    origin,
                )
            )
    chains[chain.name] = rules


def _branches(low: Lowered, chain: str, origin: SourceLocation, rules: list[Rule]) -> None:
    """A rule per branch, each its match after the statement's: what ``_lower_chain`` makes
    of ``_alternatives``' answer for a map, without the list of pairs between."""
    head, n, add = tuple(low.matches), len(rules), rules.append
    src, dst, proto, iin, out = (low.source, low.destination, low.protocol, low.in_interface,
                                 low.out_interface)  # fmt: skip
    for match, target in low.branches or ():
        n += 1
        add(new_rule("nat", chain, n, target, src, dst, proto, iin, out, None, (*head, match),
                     None, origin))  # fmt: skip


def _alternatives(
    low: Lowered,
    chain: str,
    at: int,
    chains: dict[str, list[Rule] | None],
    origin: SourceLocation,
) -> list[tuple[tuple[Match, ...], Target | None]]:
    """The model rules one nft rule becomes: one per map element, or one whose target
    is its only statement, or a jump to a chain holding its statements in order."""
    if low.branches is not None:
        return [((m,), t) for m, t in low.branches]
    if len(low.actions) <= 1:
        return [((), low.actions[0] if low.actions else None)]
    last = low.actions[-1]
    if isinstance(last, Jump) and last.goto:
        bad = OpaqueTarget(
            "nft", text=f"goto after other statements is not modelled: {origin.text}"
        )
        return [((), bad)]
    sub = f"{chain}#{at + 1}"
    chains[sub] = [
        Rule("nat", sub, n, action, origin=origin) for n, action in enumerate(low.actions, 1)
    ]
    return [((), Jump(sub))]


def _assess(ruleset: Ruleset, listed: bool, cut: tuple[int, str | None] | None = None) -> Ruleset:
    """A listing (``nft list ruleset``) shows every table: one it lacks is empty on the
    node. Commands (``nft -f`` input) say nothing of the tables they do not touch. A text
    that ends inside a block is cut there: what came after (base chains, chains, the
    rest of the open chain) is not captured, and a walk that needs it is UNKNOWN."""
    capture = dataclasses.replace(ruleset.capture, all_tables=listed and cut is None)
    if cut is not None:
        line, chain = cut
        where = [t for t, table in ruleset.tables.items() if chain in table.chains]
        limits = dict(capture.limits)
        for tname in where:  # the open chain's rules stop where the text does
            rules = ruleset.tables[tname].chains[chain or ""].rules
            limits[(tname, chain or "")] = rules[-1].number if rules else 0
        gap = Gap(GapKind.TRUNCATED, f"the nft text is cut at line {line} (it ends inside a "
                  "block): what came after it is not captured", line)  # fmt: skip
        capture = dataclasses.replace(
            capture,
            cut_at=line,
            limits=MappingProxyType(limits),
            gaps=(*capture.gaps, gap),
        )
    return dataclasses.replace(ruleset, capture=capture)
