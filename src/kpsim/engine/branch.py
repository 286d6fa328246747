"""One branch of a trace: the packet's flow so far, its exact probability, its path.

    Branch(prob, flow, path=(Step…), assumptions, masquerade, snat_to, redirected)
    End = (Branch, Disposition | None, reason)     verdict None: on to the next table

Plus the per-trace settings and budgets a walk charges (``Run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from typing import Literal

from kpsim.engine.flow import Flow
from kpsim.model import Rule
from kpsim.model.node import AddressFacts, IPAddress

UnknownMode = Literal["stop", "assume-no-match", "assume-match"]


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


#: Weight of an alternative that did not fork; checked by identity before ``== 1``.
_ONE = Fraction(1)


@dataclass(frozen=True, slots=True)
class Branch:
    """One possible history of the packet so far, with its exact probability.

    Copies go through the constructor, not ``dataclasses.replace``: a branch is copied
    for every matched rule, and replace (~4 µs) was the top cost of tracing all 10,000
    services of the bench dump; the constructor takes ~1 µs."""

    prob: Fraction
    flow: Flow
    path: tuple[Step, ...] = ()
    assumptions: tuple[str, ...] = ()
    masquerade: bool = False
    snat_to: str | None = None
    redirected: bool = False

    def derive(self, weight: Fraction, flow: Flow) -> Branch:
        if weight is _ONE or weight == 1:
            return self if flow is self.flow else self.with_flow(flow)
        return Branch(
            self.prob * weight,
            flow,
            self.path,
            self.assumptions,
            self.masquerade,
            self.snat_to,
            self.redirected,
        )

    def with_flow(self, flow: Flow) -> Branch:
        return Branch(
            self.prob,
            flow,
            self.path,
            self.assumptions,
            self.masquerade,
            self.snat_to,
            self.redirected,
        )

    def extend(self, step: Step) -> Branch:
        """The branch with ``step`` appended to its path."""
        return Branch(
            self.prob,
            self.flow,
            (*self.path, step),
            self.assumptions,
            self.masquerade,
            self.snat_to,
            self.redirected,
        )

    def assume(self, text: str) -> Branch:
        if text in self.assumptions:
            return self
        return Branch(
            self.prob,
            self.flow,
            self.path,
            (*self.assumptions, text),
            self.masquerade,
            self.snat_to,
            self.redirected,
        )

    def nat(self, flow: Flow, *, masquerade: bool = False, redirected: bool = False) -> Branch:
        """After MASQUERADE or REDIRECT: the new flow and the flag set."""
        return Branch(
            self.prob,
            flow,
            self.path,
            self.assumptions,
            self.masquerade or masquerade,
            self.snat_to,
            self.redirected or redirected,
        )

    def snat(self, to: str | None, flow: Flow) -> Branch:
        return Branch(
            self.prob,
            flow,
            self.path,
            self.assumptions,
            self.masquerade,
            to,
            self.redirected,
        )


End = tuple[Branch, Disposition | None, str | None]  # verdict None: on to the next table


@dataclass
class Run:
    """Per-trace settings and budgets."""

    unknown: UnknownMode
    forks: int = 0
    rules: int = 0
    facts: dict[IPAddress, AddressFacts] = field(default_factory=dict)
