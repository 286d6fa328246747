"""Walking one table's built-in chain for one branch of a trace.

    nat PREROUTING ─▶ KUBE-SERVICES ─▶ KUBE-SVC-X ─┬ p   ─▶ KUBE-SEP-A ─▶ DNAT (hook ends)
                                                   └ 1-p ─▶ next rule …

Rules are taken in order; a ``statistic --mode random`` match forks the branch in two with
exact weights; jumps push a frame, gotos replace one, RETURN pops. A hook ends with a
verdict (DROP, REJECT, UNKNOWN) or with "go on to the next table" (ACCEPT, NAT, policy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from fractions import Fraction
from typing import Literal

from kpsim.model import (
    Address,
    Chain,
    ConnmarkMode,
    ConnmarkTarget,
    Ct,
    Dnat,
    Jump,
    Log,
    MarkTarget,
    Masquerade,
    OpaqueTarget,
    Protocol,
    Redirect,
    Reject,
    Rule,
    Snat,
    Standard,
    Verdict,
)
from kpsim.packet import (
    PROTOCOL_NUMBERS,
    Flow,
    Hook,
    IPAddress,
    NodeContext,
    Unknown,
    answer,
    ip,
)
from kpsim.prepare import ChainIndex

UnknownMode = Literal["stop", "assume-no-match", "assume-match"]

MAX_DEPTH = 64  # jump-stack depth; real rulesets stay far below
MAX_BRANCHES = 100_000  # forks per trace before the rest is reported UNKNOWN
MAX_RULES = 2_000_000  # rule evaluations per trace (guards diamond-shaped chain graphs)

#: Targets that only touch headers or logging: evaluation goes on after them.
_PASSIVE = "NFLOG TRACE CHECKSUM TCPMSS TOS DSCP TTL HL CLASSIFY AUDIT SECMARK CONNSECMARK ULOG"
PASSIVE_TARGETS = frozenset(_PASSIVE.split()) | {"IDLETIMER", "LED", "NOTRACK"}


class Disposition(str, Enum):
    """What finally happens to the connection's first packet."""

    DNAT = "DNAT"  # destination rewritten, packet sent on (or delivered, if now local)
    ACCEPT = "ACCEPT"  # forwarded or sent out unchanged
    LOCAL = "LOCAL"  # delivered to a local process (REDIRECT included)
    DROP = "DROP"
    REJECT = "REJECT"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Step:
    """One decisive rule on the path; ``number`` 0 and ``rule`` None mean the policy."""

    table: str
    chain: str
    number: int
    rule: Rule | None


# ---------------------------------------------------------------- one branch of the trace

_HIT, _MISS, _STOP = "hit", "miss", "stop"


@dataclass(frozen=True, slots=True)
class Branch:
    """One possible history of the packet so far, with its exact probability."""

    prob: Fraction
    flow: Flow
    path: tuple[Step, ...] = ()
    assumptions: tuple[str, ...] = ()
    masquerade: bool = False
    snat_to: str | None = None
    redirected: bool = False

    def derive(self, weight: Fraction, flow: Flow) -> Branch:
        if weight == 1 and flow is self.flow:
            return self
        return replace(self, prob=self.prob * weight, flow=flow)

    def assume(self, text: str) -> Branch:
        return (
            self
            if text in self.assumptions
            else replace(self, assumptions=(*self.assumptions, text))
        )


End = tuple[Branch, Disposition | None, str | None]  # verdict None: on to the next table
Frame = tuple[Chain, Sequence[int], int, frozenset[str]]  # chain, candidates, cursor, gotos


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
    found: list[bool | Unknown] = [True]
    if rule.protocol is not None:
        found.append(_protocol(rule.protocol, flow.protocol))
    if rule.source is not None:
        found.append(_address(rule.source, flow.src))
    if rule.destination is not None:
        found.append(_address(rule.destination, flow.dst))
    if rule.in_interface is not None:
        found.append(rule.in_interface.matches(hook.in_iface))
    if rule.out_interface is not None:
        out = hook.out_iface
        found.append(
            Unknown("out interface unknown here")
            if out is None
            else rule.out_interface.matches(out)
        )
    if rule.fragment is not None:
        found.append(not rule.fragment)  # a first packet is never a later fragment
    if False in found:
        return False
    return next((f for f in found if isinstance(f, Unknown)), True)


@dataclass
class Run:
    """Per-trace settings and budgets."""

    unknown: UnknownMode
    forks: int = 0
    rules: int = 0


class Walker:
    """Walks hooks over prepared tables; shared by every trace of a ``Tracer``."""

    def __init__(
        self,
        tables: Mapping[str, Mapping[str, Chain]],
        index: Mapping[tuple[str, str], ChainIndex],
        node: NodeContext,
    ) -> None:
        self.tables = tables
        self.index = index
        self.node = node

    def _frame(self, table: str, chain: Chain, flow: Flow, gotos: frozenset[str]) -> Frame:
        idx = self.index.get((table, chain.name))
        cands = idx.candidates(flow) if idx else range(len(chain.rules))
        return (chain, cands, 0, gotos | {chain.name})

    def run_hook(self, run: Run, hook: Hook, start: Branch) -> list[End]:
        """Walk one table's built-in chain; forks wait on a work list."""
        chain = self.tables[hook.table].get(hook.chain)
        if chain is None:  # a built-in chain the input did not show: empty, ACCEPT
            return [(start, None, None)]
        ends: list[End] = []
        work: list[tuple[Branch, list[Frame], Rule | None]] = [
            (start, [self._frame(hook.table, chain, start.flow, frozenset())], None)
        ]
        while work:
            b, frames, pending = work.pop()
            ends.append(self._walk(run, hook, b, frames, pending, work, ends))
        return ends

    def _walk(
        self,
        run: Run,
        hook: Hook,
        b: Branch,
        frames: list[Frame],
        pending: Rule | None,
        work: list[tuple[Branch, list[Frame], Rule | None]],
        ends: list[End],
    ) -> End:
        """Follow one branch until its hook ends; a fork pushes the other alternatives."""
        while True:
            if pending is not None:
                b, end = self._apply(hook, pending, b, frames)
                pending = None
                if end is not None:
                    return end
                continue
            chain, cands, cursor, gotos = frames[-1]
            if cursor >= len(cands):
                if len(frames) == 1:
                    return self._policy(hook, chain, b)
                frames.pop()
                continue
            rule = chain.rules[cands[cursor]]
            frames[-1] = (chain, cands, cursor + 1, gotos)
            run.rules += 1
            if run.rules > MAX_RULES:
                return (b, Disposition.UNKNOWN, f"stopped after {MAX_RULES} rule evaluations")
            alts = self._evaluate(run, hook, rule, b)
            for alt, kind, reason in alts[1:]:
                run.forks += 1
                if run.forks > MAX_BRANCHES:
                    ends.append((alt, Disposition.UNKNOWN, f"over {MAX_BRANCHES} branches"))
                elif kind == _STOP:
                    ends.append((alt, Disposition.UNKNOWN, reason))
                else:
                    work.append((alt, list(frames), rule if kind == _HIT else None))
            b, kind, reason = alts[0]
            if kind == _STOP:
                return (b, Disposition.UNKNOWN, reason)
            pending = rule if kind == _HIT else None

    def _policy(self, hook: Hook, chain: Chain, b: Branch) -> End:
        """End of a built-in chain (or RETURN from it): the policy decides."""
        b = replace(b, path=(*b.path, Step(hook.table, chain.name, 0, None)))
        if chain.policy in (None, Verdict.ACCEPT):
            return (b, None, None)
        if chain.policy is Verdict.DROP:
            return (b, Disposition.DROP, None)
        return (b, Disposition.UNKNOWN, f"policy {chain.policy.value} is not modelled")

    def _evaluate(
        self, run: Run, hook: Hook, rule: Rule, b: Branch
    ) -> list[tuple[Branch, str, str | None]]:
        """The rule's alternatives: (branch, hit|miss|stop, reason); weights sum to 1."""
        core = _core(rule, b.flow, hook)
        if core is False:
            return [(b, _MISS, None)]
        if core is True and not rule.matches:
            return [(b, _HIT, None)]
        unknown = core if isinstance(core, Unknown) else None
        alive: list[tuple[Fraction, Flow]] = [(Fraction(1), b.flow)]
        missed: list[tuple[Fraction, Flow]] = []
        key = (hook.table, rule.chain, rule.number)
        for m in rule.matches:
            nxt = []
            for w, f in alive:
                ans, f2 = answer(m, f, self.node, key, hook)
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
        return out + self._resolve(run, hook, rule, b, alive, unknown)

    def _resolve(
        self,
        run: Run,
        hook: Hook,
        rule: Rule,
        b: Branch,
        alive: list[tuple[Fraction, Flow]],
        unknown: Unknown | None,
    ) -> list[tuple[Branch, str, str | None]]:
        """Alternatives that matched everything decidable: an Unknown among their matches
        stops them or is assumed, as the run says."""
        if unknown is None:
            return [(b.derive(w, f), _HIT, None) for w, f in alive]
        where = _where(hook.table, rule)
        if run.unknown == "stop":
            return [(b.derive(w, f), _STOP, f"{where}: {unknown.reason}") for w, f in alive]
        hit = run.unknown == "assume-match"
        text = f"assumed {where} {'matches' if hit else 'does not match'} ({unknown.reason})"
        kind = _HIT if hit else _MISS
        return [(b.derive(w, f).assume(text), kind, None) for w, f in alive]

    # -------------------------------------------------------------- targets

    def _apply(
        self, hook: Hook, rule: Rule, b: Branch, frames: list[Frame]
    ) -> tuple[Branch, End | None]:
        """Act on a matched rule's target; returns the branch and, if the hook ended, how."""
        t = rule.target
        if t is None:  # a counting rule
            return b, None
        b = replace(b, path=(*b.path, Step(hook.table, rule.chain, rule.number, rule)))
        f = b.flow
        if isinstance(t, MarkTarget):
            return replace(b, flow=replace(f, mark=t.apply(f.mark))), None
        if isinstance(t, ConnmarkTarget):
            return replace(b, flow=_connmark(t, f)), None
        if isinstance(t, Ct):
            return (replace(b, flow=replace(f, untracked=True)) if t.notrack else b), None
        if isinstance(t, Log) or (isinstance(t, OpaqueTarget) and t.name in PASSIVE_TARGETS):
            return b, None
        if isinstance(t, Standard):
            return b, self._standard(hook, t.verdict, b, frames)
        if isinstance(t, Jump):
            return b, self._jump(hook, rule, t, b, frames)
        if isinstance(t, Reject):
            return b, (b, Disposition.REJECT, None)
        return self._nat(hook, rule, b)

    def _standard(self, hook: Hook, v: Verdict, b: Branch, frames: list[Frame]) -> End | None:
        if v is Verdict.ACCEPT:
            return (b, None, None)
        if v is Verdict.DROP:
            return (b, Disposition.DROP, None)
        if v is Verdict.RETURN:
            if len(frames) == 1:
                return self._policy(hook, frames[0][0], b)
            frames.pop()
            return None
        return (b, Disposition.UNKNOWN, f"{v.value} hands the packet to user space")

    def _jump(self, hook: Hook, rule: Rule, t: Jump, b: Branch, frames: list[Frame]) -> End | None:
        """-j pushes a frame, -g replaces the top one; loops and missing chains are UNKNOWN."""
        where = _where(hook.table, rule)
        target = self.tables[hook.table].get(t.chain)
        if target is None:
            return (b, Disposition.UNKNOWN, f"{where} jumps to missing chain {t.chain}")
        if any(t.chain in fr[3] for fr in frames):
            return (b, Disposition.UNKNOWN, f"{where}: loop, {t.chain} is already being evaluated")
        if len(frames) >= MAX_DEPTH:
            return (b, Disposition.UNKNOWN, f"{where}: jump depth over {MAX_DEPTH}")
        if t.goto:
            frames[-1] = self._frame(hook.table, target, b.flow, frames[-1][3])
        else:
            frames.append(self._frame(hook.table, target, b.flow, frozenset()))
        return None

    def _nat(self, hook: Hook, rule: Rule, b: Branch) -> tuple[Branch, End | None]:
        """DNAT/REDIRECT rewrite the destination, SNAT/MASQUERADE record the source;
        each ends the nat hook and the packet goes on to the next table."""
        t, f, where = rule.target, b.flow, _where(hook.table, rule)
        if isinstance(t, Dnat) and t.to:
            return self._dnat(where, t, b)
        if isinstance(t, Snat):
            to = str(t.to[0]) if t.to else None
            b = replace(b, snat_to=to, flow=replace(f, snat=True))
            return b, (b, None, None)
        if isinstance(t, Masquerade):
            b = replace(b, masquerade=True, flow=replace(f, snat=True))
            return b, (b, None, None)
        if isinstance(t, Redirect):
            b = self._redirect(hook, where, t, b)
            return b, (b, None, None)
        name = t.name if isinstance(t, OpaqueTarget) else type(t).__name__
        return b, (b, Disposition.UNKNOWN, f"{where}: target {name} is not modelled")

    def _dnat(self, where: str, t: Dnat, b: Branch) -> tuple[Branch, End | None]:
        """Rewrite the destination to the first range's first address and port."""
        f, r = b.flow, t.to[0]
        if (
            len(t.to) > 1
            or (r.addr_hi or r.addr_lo) != r.addr_lo
            or (r.port_hi not in (None, r.port_lo))
        ):
            b = b.assume(f"{where}: DNAT to a range {r}; kpsim took the first address/port")
        try:
            dst = ip(r.addr_lo) if r.addr_lo else f.dst
        except ValueError:
            return b, (b, Disposition.UNKNOWN, f"{where}: DNAT address {r} not understood")
        port = f.dport if r.port_lo is None else r.port_lo
        moved = f.dnat or (dst, port) != (f.dst, f.dport)
        b = replace(b, flow=replace(f, dst=dst, dport=port, dnat=moved))
        return b, (b, None, None)

    def _redirect(self, hook: Hook, where: str, t: Redirect, b: Branch) -> Branch:
        """REDIRECT goes to the in interface's primary address (loopback when local)."""
        f = b.flow
        if hook.chain == "OUTPUT":
            dst = ip("127.0.0.1" if f.dst.version == 4 else "::1")
        elif self.node.is_local(f.dst):
            dst = f.dst
        else:
            own = [
                n.network_address
                for n in self.node.local
                if n.version == f.dst.version and not n.network_address.is_loopback
            ]
            dst = own[0] if own else f.dst
            b = b.assume(f"{where}: REDIRECT address taken as {dst} (first node address)")
        port = t.to_ports.lo if t.to_ports is not None and t.to_ports.lo >= 0 else f.dport
        return replace(b, redirected=True, flow=replace(f, dst=dst, dport=port, dnat=True))


def _connmark(t: ConnmarkTarget, f: Flow) -> Flow:
    """xt_CONNMARK: set-xmark on ctmark, save mark → ctmark, restore ctmark → mark."""
    if t.mode is ConnmarkMode.SET:
        return replace(f, ctmark=((f.ctmark & ~t.mask) ^ t.value) & 0xFFFFFFFF)
    if t.mode is ConnmarkMode.SAVE:
        return replace(f, ctmark=((f.ctmark & ~t.ctmask) ^ (f.mark & t.nfmask)) & 0xFFFFFFFF)
    return replace(f, mark=((f.mark & ~t.nfmask) ^ (f.ctmark & t.ctmask)) & 0xFFFFFFFF)
