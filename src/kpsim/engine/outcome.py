"""How a trace ends: ``Outcome`` (verdict, exact probability, one path that gets there)
and ``TraceResult``; outcomes that end the same way are merged.

    ends of every branch ─ merge_outcomes (same verdict, destination, masquerade) ─▶ Outcome…
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction

from kpsim.engine.branch import Disposition, Step
from kpsim.engine.packet import Packet

#: Verdicts for packets that are not delivered: no masquerade is stated for them.
NOT_DELIVERED = frozenset({Disposition.DROP, Disposition.REJECT, Disposition.UNKNOWN})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One way the trace ends, with its exact probability and one path that gets there
    (the most probable of the ``merged`` paths that end the same way)."""

    verdict: Disposition
    probability: Fraction
    destination: tuple[str, int]
    masquerade: bool | None = False  # None: unknown (not captured), or not a delivery
    snat_to: str | None = None
    path: tuple[Step, ...] = ()
    assumptions: tuple[str, ...] = ()
    reason: str | None = None
    merged: int = 1
    #: The interface a delivered packet leaves the node by ("lo": delivered locally;
    #: None: not delivered, or the node's routes do not say).
    egress: str | None = None

    @property
    def key(self) -> tuple[str, tuple[str, int], bool | None, str, str]:
        """Outcomes with equal keys are one outcome."""
        return (
            self.verdict.value,
            self.destination,
            self.masquerade,
            self.snat_to or "",
            self.reason or "",
        )


@dataclass(frozen=True, slots=True)
class TraceResult:
    packet: Packet
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Fraction:
        return sum((o.probability for o in self.outcomes), Fraction(0))


# ---------------------------------------------------------------- merging


def _path_key(o: Outcome) -> tuple[tuple[str, str, int], ...]:
    return tuple((s.table, s.chain, s.number) for s in o.path)


def merge_outcomes(outcomes: Iterable[Outcome]) -> tuple[Outcome, ...]:
    """Add up outcomes that end the same way. The result does not depend on input order:
    ties between equally probable paths go to the smallest path."""
    groups: dict[tuple[str, tuple[str, int], bool | None, str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.key, []).append(o)
    merged = []
    for group in groups.values():
        if len(group) == 1:  # the common case: no Fraction sums (merging was 18% of a trace)
            merged.append(_alone(group[0]))
            continue
        best = min(group, key=lambda o: (-o.probability, _path_key(o), o.assumptions))
        merged.append(
            replace(
                best,
                probability=sum((o.probability for o in group), Fraction(0)),
                assumptions=tuple(sorted({a for o in group for a in o.assumptions})),
                merged=sum(o.merged for o in group),
            )
        )
    # By (-probability, key) in two stable passes: no negated Fraction built per outcome.
    merged.sort(key=lambda o: o.key)
    merged.sort(key=lambda o: o.probability, reverse=True)
    return tuple(merged)


def _alone(o: Outcome) -> Outcome:
    """A group of one, as the general case would build it."""
    if not o.assumptions:
        return o
    assumptions = tuple(sorted(set(o.assumptions)))
    return o if assumptions == o.assumptions else replace(o, assumptions=assumptions)
