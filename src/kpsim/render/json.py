"""JSON renderers: versioned schemas (docs/json.md), sorted keys, stable order."""

from __future__ import annotations

import json
from typing import Any

from kpsim.kube import Service
from kpsim.show import InputSummary, ShowReport

SHOW_SCHEMA = "kpsim/show/v1"


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def service_doc(s: Service) -> dict[str, Any]:
    return {
        "service": s.name,
        "protocol": s.protocol,
        "cluster_ips": list(s.cluster_ips),
        "node_ports": list(s.node_ports),
        "frontends": [
            {"kind": f.kind, "address": f.address, "port": f.port, "protocol": f.protocol}
            for f in s.frontends
        ],
        "endpoints": [
            {
                "chain": e.chain,
                "destination": e.destination,
                "probability": float(e.probability),
                "probability_exact": f"{e.probability.numerator}/{e.probability.denominator}",
            }
            for e in s.endpoints
        ],
        "local_endpoints": len(s.local_endpoints),
        "session_affinity_seconds": s.affinity_seconds,
        "traffic_policy_local": s.traffic_policy_local,
        "no_endpoints": s.no_endpoints,
        "named_by": s.named_by,
        "chain_hash": s.hash,
    }


def input_doc(i: InputSummary) -> dict[str, Any]:
    return {
        "path": i.path,
        "node": i.node,
        "format": i.format.value,
        "family": i.family,
        "tables": {n: {"chains": c, "rules": r} for n, (c, r) in i.tables.items()},
        "chains": [
            {
                "table": c.table,
                "chain": c.name,
                "policy": c.policy,
                "rules": c.rules,
                "references": c.references,
            }
            for c in i.chains
        ],
        "missing_chains": [{"table": t, "chain": c} for t, c in i.missing_chains],
        "services": [service_doc(s) for s in i.services],
        "ipvs": i.ipvs,
        "notes": list(i.notes),
        "diagnostics": [
            {"line": d.line, "col": d.col, "message": d.message, "text": d.text}
            for d in i.diagnostics
        ],
    }


def show_json(report: ShowReport) -> str:
    return dumps(
        {
            "schema": SHOW_SCHEMA,
            "fixture_set": report.fixture_set,
            "fixture_origin": report.origin,
            "inputs": [input_doc(i) for i in report.inputs],
        }
    )
