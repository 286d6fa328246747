"""What a trace does where the capture shows nothing: built-in chains and tables it did
not capture, rules it may not show whole (``kpsim.model.Capture``).

    nat PREROUTING / OUTPUT not captured ─▶ UNKNOWN (they decide the destination)
    any other hook not captured          ─▶ on, under a stated assumption
    nat POSTROUTING not captured         ─▶ on; masquerade unknown (Outcome.masquerade None)
"""

from __future__ import annotations

from kpsim.engine.branch import Branch, Disposition, End, Step
from kpsim.model import Capture

#: Built-in chains where the destination is rewritten: without them a trace cannot say
#: where the packet goes.
DECIDES_DESTINATION = frozenset({("nat", "PREROUTING"), ("nat", "OUTPUT")})
#: The assumption written on a branch that passed nat POSTROUTING unseen: whether its
#: client IP is masqueraded is then unknown (``Outcome.masquerade`` None).
POSTROUTING_UNSEEN = "nat POSTROUTING not captured: masquerade/SNAT unknown"


#: The end of the assumption for a hook not captured (``uncaptured_text``).
PASSED_UNSEEN = " not captured: assumed it lets the packet through"


def uncaptured_text(table: str, chain: str) -> str:
    """The assumption for a hook (a built-in chain or a whole table) not captured."""
    if (table, chain) == ("nat", "POSTROUTING"):
        return POSTROUTING_UNSEEN
    return f"{table} {chain}{PASSED_UNSEEN}"


def unseen_table(table: str, chain: str, branches: list[Branch], ends: list[End]) -> list[Branch]:
    """A hook in a table the capture does not show: where it decides the destination
    the answer is UNKNOWN, elsewhere the packet goes on under a stated assumption."""
    if (table, chain) in DECIDES_DESTINATION:
        ends += ((b, Disposition.UNKNOWN, f"table {table} not captured") for b in branches)
        return []
    return [b.assume(uncaptured_text(table, chain)) for b in branches]


def unseen_hooks(assumptions: tuple[str, ...]) -> tuple[str, ...]:
    """The hooks passed unseen, in one assumption rather than one per hook."""
    unseen = [a for a in assumptions if a.endswith(PASSED_UNSEEN)]
    if len(unseen) < 2:
        return assumptions
    hooks = ", ".join(a.removesuffix(PASSED_UNSEEN) for a in unseen)
    kept = tuple(a for a in assumptions if not a.endswith(PASSED_UNSEEN))
    return (*kept, f"not captured, assumed to let the packet through: {hooks}")


def capture_assumptions(capture: Capture, path: tuple[Step, ...]) -> tuple[str, ...]:
    """What an outcome took on trust from a lossy capture: the rules it took from an
    ``iptables -L`` without ``-v`` (interfaces hidden), a last line that may be cut."""
    out: list[str] = []
    rules = [s.rule for s in path if s.rule is not None]
    if not capture.interfaces_known and rules:
        lines = sorted({r.origin.line for r in rules if r.origin is not None})
        taken = ", ".join(map(str, lines))
        out.append(f"interfaces not captured (-L without -v): assumed the rules taken "
                   f"(lines {taken}) match on any interface")  # fmt: skip
    if capture.unsure is not None:
        for r in rules:
            if (r.table, r.chain, r.number) == capture.unsure:
                line = r.origin.line if r.origin else "?"
                out.append(f"line {line} ends the capture with no newline: assumed it is whole")
    return tuple(out)
