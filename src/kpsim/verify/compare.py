"""Compare kpsim's prediction with what the kernel did, node by node: the rows a report
shows (destinations, REJECT / DROP, rule counters), the reasons for every failed check,
and the one-line summary when all hold.

    compare(Prediction, KernelResult[, AffinityPrediction]) ─▶ NodeVerdict
        agree = reached ⊆ predicted (= once every p·N ≥ 5), masquerade as predicted,
                refused / timed out as REJECT / DROP predict, χ² p ≥ P_MIN
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from kpsim.model import Capture, Diagnostic
from kpsim.verify.affinity import (
    AffinityCheck,
    AffinityPrediction,
    affinity_reasons,
    affinity_text,
    check_affinity,
)
from kpsim.verify.predict import Prediction, VerifyRequest
from kpsim.verify.replay import KernelResult
from kpsim.verify.stats import MIN_EXPECTED, P_MIN, chi_square


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """One destination: what the kernel counted next to kpsim's exact share."""

    destination: str
    kernel_count: int
    expected_share: Fraction
    expected_count: float
    kernel_share: Fraction
    masquerade_seen: bool | None  # None: mixed, or never reached
    masquerade_predicted: bool | None  # None: mixed, or not predicted at all
    name: str = ""


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """REJECT (refused) or DROP (timed out): connections that reached no endpoint."""

    verdict: str
    kernel_count: int
    expected_share: Fraction
    expected_count: float


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A rule's kernel packet counter next to the matches kpsim expects (N·p). nat rules
    see a connection's first packet only, so there both count connections; other tables
    see every packet of it, so their counter is larger by design."""

    table: str
    chain: str
    number: int
    kernel_packets: int
    expected: float
    per_connection: bool
    exact: bool  # False: the rule is on a merged path, kpsim's number is a lower bound


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """One node's comparison; ``reasons`` lists every failed check (empty: agree)."""

    node: str
    address: str
    n: int
    agree: bool
    reason: str
    reasons: tuple[str, ...]
    p_value: float
    endpoints: tuple[EndpointRow, ...]
    refused: VerdictRow
    timed_out: VerdictRow
    unreachable: int
    errors: int
    counters: tuple[CounterRow, ...]
    address_map: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()
    affinity: AffinityCheck | None = None
    capture: Capture = field(default_factory=Capture)  # what the node's capture lacks
    diagnostics: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    request: VerifyRequest
    fixture_set: str
    nodes: tuple[NodeVerdict, ...]
    kept: tuple[tuple[str, str, str], ...] = ()  # (namespace, node, role) left on purpose

    @property
    def agree(self) -> bool:
        return all(n.agree for n in self.nodes)

    @property
    def p_value(self) -> float:
        return min((n.p_value for n in self.nodes), default=1.0)


def _endpoint_rows(pred: Prediction, k: KernelResult, n: int) -> list[EndpointRow]:
    rows = []
    for d in [*pred.shares, *sorted(set(k.reached) - set(pred.shares))]:
        p = pred.shares.get(d, Fraction(0))
        count = k.reached.get(d, 0)
        rows.append(
            EndpointRow(
                d,
                count,
                p,
                float(p * n),
                Fraction(count, n) if n else Fraction(0),
                k.masquerade_seen(d),
                pred.masquerade.get(d),
                pred.names.get(d, ""),
            )
        )
    return rows


def _counter_rows(pred: Prediction, k: KernelResult, n: int) -> list[CounterRow]:
    if not k.counted:
        return []
    keys = list(pred.rules)
    keys += sorted(key for key in k.counters if key[0] == "nat" and key not in pred.rules)
    return [
        CounterRow(
            t,
            c,
            num,
            k.counters.get((t, c, num), 0),
            float(pred.rules.get((t, c, num), Fraction(0)) * n),
            t == "nat",
            (t, c, num) not in pred.approximate,
        )
        for t, c, num in keys
    ]


def _fmt_p(p: Fraction) -> str:
    return f"{float(p) * 100:.4g}%"


def _set_reasons(rows: Sequence[EndpointRow], n: int, full: bool) -> list[str]:
    out = []
    for r in rows:
        if r.kernel_count and r.expected_share == 0:
            out.append(f"the kernel reached {r.destination} ({r.kernel_count}×); kpsim: never")
        elif full and r.expected_share > 0 and r.kernel_count == 0:
            out.append(
                f"kpsim sends {_fmt_p(r.expected_share)} to {r.destination} "
                f"(expected {r.expected_count:.1f} of {n}); the kernel never reached it"
            )
    return out


def _masq_reasons(rows: Sequence[EndpointRow], k: KernelResult) -> list[str]:
    out = []
    for r in rows:
        if r.kernel_count == 0 or r.masquerade_predicted is None:
            continue
        want = "masqueraded" if r.masquerade_predicted else "client IP kept"
        if r.masquerade_seen is None:
            m = k.masqueraded.get(r.destination, 0)
            out.append(
                f"{r.destination}: {m} of {r.kernel_count} connections masqueraded; kpsim: {want}"
            )
        elif r.masquerade_seen is not r.masquerade_predicted:
            seen = "masqueraded" if r.masquerade_seen else "client IP kept"
            out.append(f"{r.destination}: kernel {seen}; kpsim: {want}")
    return out


def _verdict_reasons(row: VerdictRow, what: str) -> list[str]:
    if row.kernel_count and row.expected_share == 0:
        return [f"{row.kernel_count} connections {what}; kpsim predicts no {row.verdict}"]
    if row.expected_count >= MIN_EXPECTED and row.kernel_count == 0:
        return [
            f"kpsim predicts {row.verdict} for {_fmt_p(row.expected_share)} "
            f"(expected {row.expected_count:.1f}); none {what}"
        ]
    return []


def _other_reasons(pred: Prediction, k: KernelResult) -> list[str]:
    out = []
    if pred.unknown:
        why = pred.reasons.get("unknown", "")
        out.append(f"kpsim cannot decide {_fmt_p(pred.unknown)} of connections (UNKNOWN: {why})")
    if k.errors:
        detail = next((c.detail for c in k.connections if c.status in ("error", "skipped")), "")
        out.append(f"{k.errors} connections failed in the harness (error/skipped: {detail})")
    return out


def _agreement_text(
    rows: Sequence[EndpointRow],
    refused: VerdictRow,
    dropped: VerdictRow,
    p: float,
    full: bool,
    last: str = "",
) -> str:
    """What was checked and held, in one line."""
    parts = []
    predicted = sum(1 for r in rows if r.expected_share)
    reached = sum(1 for r in rows if r.kernel_count)
    if predicted:
        parts.append(
            (
                "reached the predicted destination"
                if predicted == 1
                else f"reached all {predicted} predicted destinations"
            )
            if reached == predicted
            else f"reached {reached} of {predicted} predicted destinations"
            + ("" if full else " (too few connections to require all)")
        )
        parts.append("masquerade as predicted")
    for row, what in ((refused, "refused"), (dropped, "timed out")):
        if row.expected_share or row.kernel_count:
            parts.append(
                f"{row.kernel_count} {what} as {row.verdict} predicts "
                f"({_fmt_p(row.expected_share)})"
            )
    parts.append(last or f"χ² p = {p:.3g} ≥ {P_MIN}")
    return "; ".join(parts)


def compare(
    node: str, pred: Prediction, k: KernelResult, affinity: AffinityPrediction | None = None
) -> NodeVerdict:
    """Agree = reached ⊆ predicted (= once every p·N ≥ 5), masquerade as predicted,
    refused / timed out as REJECT / DROP predict, no harness errors, χ² p ≥ P_MIN.
    With ``affinity`` the χ² is over each client's first pick (= needs K·p ≥ 5), and the
    share of repeat connections that changed endpoint must fit kpsim's runs."""
    n = len(k.connections)
    rows = _endpoint_rows(pred, k, n)
    refused = VerdictRow("REJECT", k.refused + k.unreachable, pred.reject, float(pred.reject * n))
    dropped = VerdictRow("DROP", k.timed_out, pred.drop, float(pred.drop * n))
    observed = [r.kernel_count for r in rows] + [refused.kernel_count, dropped.kernel_count]
    expected = [r.expected_count for r in rows] + [refused.expected_count, dropped.expected_count]
    observed.append(k.errors)
    expected.append(float(pred.unknown * n))
    aff = check_affinity(pred, k, affinity) if affinity is not None else None
    if aff is None:
        p_value = chi_square(observed, expected) if n else 1.0
        full = all(p * n >= MIN_EXPECTED for p in pred.shares.values())
    else:
        p_value = aff.first_pick_p
        full = all(e >= MIN_EXPECTED for d, _, e in aff.first_picks if d in pred.shares)
    reasons = _set_reasons(rows, n, full) + _masq_reasons(rows, k)
    reasons += _verdict_reasons(refused, "refused") + _verdict_reasons(dropped, "timed out")
    reasons += _other_reasons(pred, k)
    if aff is not None:
        reasons += affinity_reasons(aff)
    elif p_value < P_MIN:
        worst = max(
            zip(observed[: len(rows)], rows, strict=True),
            key=lambda x: abs(x[0] - x[1].expected_count),
            default=None,
        )
        hint = (
            f" (largest gap: {worst[1].destination} {worst[0]} vs {worst[1].expected_count:.1f})"
            if worst is not None
            else ""
        )
        reasons.append(f"χ² p = {p_value:.3g} < {P_MIN}: the split is not kpsim's{hint}")
    agree = not reasons
    last = affinity_text(aff) if aff is not None else ""
    summary = _agreement_text(rows, refused, dropped, p_value, full, last) if agree else ""
    notes = k.notes + (affinity.notes if affinity is not None else ())
    return NodeVerdict(
        node=node,
        address=pred.address,
        n=n,
        agree=agree,
        reason=summary or "; ".join(reasons),
        reasons=tuple(reasons),
        p_value=p_value,
        endpoints=tuple(rows),
        refused=refused,
        timed_out=dropped,
        unreachable=k.unreachable,
        errors=k.errors,
        counters=tuple(_counter_rows(pred, k, n)),
        address_map=k.address_map.rows(),
        notes=notes,
        affinity=aff,
    )
