"""``kpsim verify -o json``: schema kpsim/verify/v1 (docs/json.md), sorted keys."""

from __future__ import annotations

from typing import Any

from kpsim.render.capture import capture_doc, diagnostics_doc
from kpsim.render.json import dumps, exact
from kpsim.verify.run import (
    AffinityCheck,
    CounterRow,
    EndpointRow,
    NodeVerdict,
    VerdictRow,
    VerifyReport,
)

VERIFY_SCHEMA = "kpsim/verify/v1"


def _endpoint(e: EndpointRow) -> dict[str, Any]:
    return {
        "destination": e.destination,
        "name": e.name or None,
        "kernel_count": e.kernel_count,
        "kernel_share": float(e.kernel_share),
        "expected_share": float(e.expected_share),
        "expected_share_exact": exact(e.expected_share),
        "kpsim_expected_count": e.expected_count,
        "masquerade_seen": e.masquerade_seen,
        "masquerade_predicted": e.masquerade_predicted,
    }


def _verdict(v: VerdictRow) -> dict[str, Any]:
    return {
        "kernel_count": v.kernel_count,
        "expected_share": float(v.expected_share),
        "expected_share_exact": exact(v.expected_share),
        "kpsim_expected_count": v.expected_count,
    }


def _counter(c: CounterRow) -> dict[str, Any]:
    return {
        "table": c.table,
        "chain": c.chain,
        "rule": c.number,
        "kernel_packets": c.kernel_packets,
        "kpsim_expected": c.expected,
        "counts": "connections" if c.per_connection else "packets",
        "exact": c.exact,
    }


def _affinity(a: AffinityCheck | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "seconds": a.seconds,
        "clients": a.clients,
        "first_picks": [
            {"category": c, "kernel_count": k, "kpsim_expected_count": e}
            for c, k, e in a.first_picks
        ],
        "first_pick_p": a.first_pick_p,
        "repeats": a.repeats,
        "changed_kernel": a.changed_kernel,
        "changed_kpsim": a.changed_kpsim,
        "runs": a.runs,
        "recent_capacity": a.recent_capacity,
        "p_value": a.p_value,
    }


def node_doc(v: NodeVerdict) -> dict[str, Any]:
    return {
        "node": v.node,
        "address": v.address,
        "agree": v.agree,
        "reason": v.reason,
        "reasons": list(v.reasons),
        "p_value": v.p_value,
        "n": v.n,
        "endpoints": [_endpoint(e) for e in v.endpoints],
        "refused": _verdict(v.refused),
        "timed_out": _verdict(v.timed_out),
        "unreachable": v.unreachable,
        "errors": v.errors,
        "counters": [_counter(c) for c in v.counters],
        "address_map": [{"fixture": o, "replayed": m} for o, m in v.address_map],
        "notes": list(v.notes),
        "capture": capture_doc(v.capture),
        "diagnostics": diagnostics_doc(v.diagnostics),
        "affinity": _affinity(v.affinity),
    }


def verify_json(report: VerifyReport, fixture_set: str = "") -> str:
    r = report.request
    return dumps(
        {
            "schema": VERIFY_SCHEMA,
            "fixture_set": fixture_set,
            "request": {
                "port": r.port,
                "dest": r.dest,
                "n": r.n,
                "clients": r.clients,
                "source": r.source,
                "connect_timeout_s": r.connect_timeout_s,
                "seed": r.seed,
            },
            "agree": report.agree,
            "p_value": report.p_value,
            "nodes": [node_doc(v) for v in report.nodes],
            "kept_namespaces": [
                {"namespace": ns, "node": node, "role": role} for ns, node, role in report.kept
            ],
        }
    )
