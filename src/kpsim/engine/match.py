"""One rule against one branch: does it match, and with what probability?

    rule ─▶ core (-p -s -d -i -o -f) ─▶ each -m match (packet.answer) ─▶ alternatives
            False: miss    Unknown: stop, or assume (as the run says)    p: fork p / 1 − p

A ``statistic --mode random`` match forks the branch with exact weights; until one
does, a single flow goes through the matches with no weights (the common case).
"""

from __future__ import annotations

from fractions import Fraction

from kpsim.engine.answers import Unknown, answer
from kpsim.engine.branch import _ONE, Branch, Run
from kpsim.engine.flow import Flow, Hook
from kpsim.engine.packet import PROTOCOL_NUMBERS, RuleKey
from kpsim.model import (
    Address,
    CommentMatch,
    Log,
    OpaqueMatch,
    OpaqueTarget,
    Protocol,
    RecentCommand,
    RecentMatch,
    Rule,
    StatisticMatch,
    StatisticMode,
)
from kpsim.model.node import IPAddress, NodeContext

_HIT, _MISS, _STOP = "hit", "miss", "stop"

Alternative = tuple[Branch, str, str | None]  # (branch, hit|miss|stop, reason)


#: Targets that change neither the verdict, nor the packet, nor state a later rule reads
#: (logging, tracing, counting): whether their rule matches cannot change the outcome.
INERT_TARGETS = frozenset({"NFLOG", "TRACE", "ULOG", "AUDIT", "LED", "IDLETIMER"})


def inert(rule: Rule) -> bool:
    """Can this rule's matching change nothing a later rule or the verdict sees? Its target
    only logs or counts (none, LOG, NFLOG, TRACE …) and none of its matches leaves state
    behind (recent --set/--update/--remove, an nth counter)."""
    t = rule.target
    if not (
        t is None or isinstance(t, Log) or (isinstance(t, OpaqueTarget) and t.name in INERT_TARGETS)
    ):
        return False
    for m in rule.matches:
        if isinstance(m, RecentMatch) and m.command is not RecentCommand.RCHECK:
            return False
        if isinstance(m, StatisticMatch) and m.mode is StatisticMode.NTH:
            return False
        if isinstance(m, OpaqueMatch) and m.module == "recent":
            return False
    return True


def _where(table: str, rule: Rule) -> str:
    return f"{table} {rule.chain} rule {rule.number}"


def _address(addr: Address, value: IPAddress) -> bool | Unknown:
    if addr.network is None:
        return Unknown(f"address {addr.unresolved!r} was not resolved")
    return (value in addr.network) != addr.negated


def _protocol(proto: Protocol, value: str) -> bool:
    name = PROTOCOL_NUMBERS.get(proto.name, proto.name).lower()
    return (name in ("all", "0") or name == value) != proto.negated


def _core(rule: Rule, flow: Flow, hook: Hook) -> bool | Unknown:
    """-p -s -d -i -o -f; a definite False wins over an Unknown."""
    unknown: Unknown | None = None
    if rule.protocol is not None and not _protocol(rule.protocol, flow.protocol):
        return False
    if rule.source is not None:
        hit = _address(rule.source, flow.src)
        if hit is False:
            return False
        if isinstance(hit, Unknown):
            unknown = hit
    if rule.destination is not None:
        hit = _address(rule.destination, flow.dst)
        if hit is False:
            return False
        if isinstance(hit, Unknown):
            unknown = unknown or hit
    if rule.in_interface is not None and not rule.in_interface.matches(hook.in_iface):
        return False
    if rule.out_interface is not None:
        out = hook.out_iface
        if out is None:
            unknown = unknown or Unknown("out interface unknown here")
        elif not rule.out_interface.matches(out):
            return False
    if rule.fragment:
        return False  # a first packet is never a later fragment
    return unknown or True


def _evaluate(node: NodeContext, run: Run, hook: Hook, rule: Rule, b: Branch) -> list[Alternative]:
    """The rule's alternatives: (branch, hit|miss|stop, reason); weights sum to 1.
    Until a ``statistic --mode random`` forks it, one flow goes through the matches
    with no weights and no lists (the common case)."""
    flow = b.flow
    core = _core(rule, flow, hook)
    if core is False:
        return [(b, _MISS, None)]
    unknown = None if core is True else core
    if rule.matches:
        key = (hook.table, rule.chain, rule.number)
        for i, m in enumerate(rule.matches):
            if type(m) is CommentMatch:  # always true, no side effect
                continue
            ans, flow = answer(m, flow, node, key, hook)
            if ans is True:
                continue
            if ans is False:
                return [(b.derive(_ONE, flow), _MISS, None)]
            if isinstance(ans, Unknown):
                unknown = unknown or ans
                continue
            return _fork(node, run, hook, rule, key, b, i, ans, flow, unknown)
    if unknown is None:
        return [(b.derive(_ONE, flow), _HIT, None)]
    return _resolve(run, hook, rule, b, [(_ONE, flow)], unknown)


def _fork(
    node: NodeContext,
    run: Run,
    hook: Hook,
    rule: Rule,
    key: RuleKey,
    b: Branch,
    at: int,
    p: Fraction,
    flow: Flow,
    unknown: Unknown | None,
) -> list[Alternative]:
    """Match ``at`` answered with probability ``p``: both ways, exactly, and every
    later match on each surviving alternative."""
    alive: list[tuple[Fraction, Flow]] = [(p, flow)]
    missed: list[tuple[Fraction, Flow]] = [(1 - p, flow)]
    for m in rule.matches[at + 1 :]:
        nxt = []
        for w, f in alive:
            ans, f2 = answer(m, f, node, key, hook)
            if isinstance(ans, Unknown):
                unknown = unknown or ans
                nxt.append((w, f2))
            elif ans is True or ans is False:
                (nxt if ans else missed).append((w, f2))
            else:  # statistic --mode random: both ways, exactly
                nxt.append((w * ans, f2))
                missed.append((w * (1 - ans), f2))
        alive = nxt
    out = [(b.derive(w, f), _MISS, None) for w, f in missed]
    return out + _resolve(run, hook, rule, b, alive, unknown)


def _resolve(
    run: Run,
    hook: Hook,
    rule: Rule,
    b: Branch,
    alive: list[tuple[Fraction, Flow]],
    unknown: Unknown | None,
) -> list[Alternative]:
    """Alternatives that matched everything decidable: an Unknown among their matches
    stops them or is assumed, as the run says."""
    if unknown is None:
        return [(b.derive(w, f), _HIT, None) for w, f in alive]
    if inert(rule):  # matched or not, the walk goes on the same: skipped, not UNKNOWN
        return [(b.derive(w, b.flow), _MISS, None) for w, _ in alive]
    where = _where(hook.table, rule)
    if run.unknown == "stop":
        return [(b.derive(w, f), _STOP, f"{where}: {unknown.reason}") for w, f in alive]
    hit = run.unknown == "assume-match"
    text = f"assumed {where} {'matches' if hit else 'does not match'} ({unknown.reason})"
    kind = _HIT if hit else _MISS
    return [(b.derive(w, f).assume(text), kind, None) for w, f in alive]
