"""``kpsim simulate -o json``: schema ``kpsim/simulate/v1`` (docs/simulate.md).

Sorted keys, one line, floats rounded to 6 decimals: the same seed gives the same bytes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from kpsim.engine.trace import Disposition
from kpsim.render.capture import capture_doc, diagnostics_doc
from kpsim.render.json import dumps
from kpsim.simulate.run import OutcomeStat, ServiceSim, SimReport

#: v2: an outcome's ``masquerade`` is null when unknown or not delivered; services have
#: ``masquerade_unknown_share``; ``inputs`` carry each node's ``capture`` and ``diagnostics``.
SIMULATE_SCHEMA = "kpsim/simulate/v2"


def _f(x: float | Fraction) -> float:
    return round(float(x), 6)


def _exact(f: Fraction) -> str:
    return f"{f.numerator}/{f.denominator}"


def _outcome(o: OutcomeStat) -> dict[str, Any]:
    return {
        "verdict": o.verdict,
        "destination": o.destination,
        "count": o.count,
        "share": _f(o.share),
        "expected": _f(o.expected),
        "expected_exact": _exact(o.expected),
        "ci95": [_f(o.ci95[0]), _f(o.ci95[1])],
        "node": o.pod.node if o.pod else None,
        "pod": f"{o.pod.namespace}/{o.pod.name}" if o.pod else None,
        "masquerade": o.masquerade,
    }


def _share(k: int | None, n: int) -> float | None:
    return None if k is None else _f(k / n if n else 0.0)


def service_doc(s: ServiceSim) -> dict[str, Any]:
    a = s.affinity
    return {
        "service": s.target.service,
        "port": s.target.port,
        "dest": s.target.dest,
        "n": s.n,
        "endpoints": [_outcome(o) for o in s.endpoints],
        "other_outcomes": [_outcome(o) for o in s.outcomes if o.verdict != "DNAT"],
        "by_entry_node": {
            e.node: {
                "connections": e.connections,
                "counts": dict(e.counts),
                "expected": {k: _f(v) for k, v in e.expected},
                "cross_node_share": _share(e.cross_node, e.connections),
            }
            for e in s.by_entry
        },
        "chi2_p": None if s.chi2_p is None else _f(s.chi2_p),
        "chi2_tested": s.tested,
        "masquerade_share": _share(s.masquerade, s.n),
        "masquerade_unknown_share": _share(s.masquerade_unknown, s.n),
        "cross_node_share": _share(s.cross_node, s.n),
        "expected_cross_node_share": (
            None if s.expected_cross_node is None else _f(s.expected_cross_node)
        ),
        "dropped": s.count(Disposition.DROP),
        "rejected": s.count(Disposition.REJECT),
        "no_dnat": sum(o.count for o in s.outcomes if o.verdict != "DNAT"),
        "affinity": None
        if a is None
        else {
            "seconds": a.seconds,
            "clients": a.clients,
            "sticky": a.sticky,
            "repeats": a.repeats,
            "changed": a.changed,
            "evicted": a.evicted,
            "split_clients": a.split_clients,
            "example": None
            if a.example is None
            else {"client": a.example[0], "via": dict(a.example[1])},
        },
        "verdict": {"kind": s.verdict.kind, "text": s.verdict.text},
        "remarks": list(s.remarks),
        "notes": list(s.notes),
    }


def simulate_json(report: SimReport, label: str = "") -> str:
    r = report.request
    return dumps(
        {
            "schema": SIMULATE_SCHEMA,
            "fixture_set": label,
            "n": r.n,
            "seed": r.seed,
            "clients": r.clients,
            "rate": r.rate,
            "entry": {n: _f(w) for n, w in zip(report.nodes, report.weights, strict=True)},
            "services": [service_doc(s) for s in report.services],
            "notes": list(report.notes),
            "inputs": [
                {"node": node, "capture": capture_doc(c), "diagnostics": diagnostics_doc(d)}
                for node, c, d in report.captures
            ],
        }
    )
