"""JSON renderers: versioned schemas (docs/json.md), sorted keys, stable order."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from kpsim.render.capture import capture_doc, diagnostics_doc

if TYPE_CHECKING:  # trace machinery stays unimported for ``kpsim show -o json``, and
    # show's (kube.show and what it reads: ~5 ms) for ``kpsim trace -o json``
    from kpsim.kube.mode import ModeFinding
    from kpsim.kube.scenario import NamedOutcome, Pod, TraceReport
    from kpsim.kube.services import Endpoint, Frontend, Service
    from kpsim.kube.show import ChainSummary, InputSummary, ShowReport

#: v2: each input has ``capture``; a service whose chains the capture lacks has
#: ``captured: false`` and is no longer ``no_endpoints``.
SHOW_SCHEMA = "kpsim/show/v2"
T = TypeVar("T")


def dumps(doc: dict[str, Any]) -> str:
    """One line, sorted keys. (With ``indent`` the json module drops to its pure-Python
    encoder: 1.3 s instead of 0.2 s for a 10,000-service ``show``; pipe into ``jq``.)"""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n"


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
        "captured": s.captured,
    }


def chain_doc(c: ChainSummary) -> dict[str, Any]:
    return {
        "table": c.table,
        "chain": c.name,
        "policy": c.policy,
        "rules": c.rules,
        "references": c.references,
    }


def _input_fields(i: InputSummary) -> dict[str, Any]:
    """An input's document without its two long lists, ``chains`` and ``services``."""
    return {
        "path": i.path,
        "node": i.node,
        "format": i.format.value,
        "family": i.family,
        "tables": {n: {"chains": c, "rules": r} for n, (c, r) in i.tables.items()},
        "missing_chains": [{"table": t, "chain": c} for t, c in i.missing_chains],
        "ipvs": i.ipvs,
        "notes": list(i.notes),
        "diagnostics": diagnostics_doc(i.diagnostics),
        "capture": capture_doc(i.capture),
        "proxy_mode": None if i.mode is None else mode_doc(i.mode),
    }


def mode_doc(m: ModeFinding) -> dict[str, Any]:
    return {
        "mode": m.mode.value,
        "chooses_endpoints": m.chooses_endpoints,
        "message": m.message,
        "evidence": [f"{loc.path}:{loc.line}" for loc in m.evidence],
    }


def input_doc(i: InputSummary) -> dict[str, Any]:
    return {
        **_input_fields(i),
        "chains": [chain_doc(c) for c in i.chains],
        "services": [service_doc(s) for s in i.services],
    }


def show_doc(report: ShowReport) -> dict[str, Any]:
    return {
        "schema": SHOW_SCHEMA,
        "fixture_set": report.fixture_set,
        "fixture_origin": report.origin,
        "inputs": [input_doc(i) for i in report.inputs],
    }


# ``show_json`` writes exactly ``dumps(show_doc(report))``, but its long lists (a chain
# per chain, a service per service, an endpoint per endpoint) are written as text
# straight from the summaries: building ~120,000 dicts for the C encoder, then encoding
# them, took 0.45 s of a 10,000-service dump; this takes 0.09 s (measured). The
# templates list keys in sorted order; tests/test_show_json.py holds the bytes equal.

_text = encode_basestring  # json.dumps's own string escaper for ensure_ascii=False


def _value(v: object) -> str:
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


# The outer levels are kept as lists of pieces, joined once at the end: their members
# hold megabytes of text, and joining each level would copy it all again. The long
# arrays are pieces that encode their rows as they are written (``_array``).
Pieces = list[str | Iterator[str]]


def _object(members: dict[str, str | Pieces]) -> Pieces:
    """A JSON object from members already encoded, in ``sort_keys`` order."""
    parts: Pieces = ["{"]
    sep = ""
    for k, v in sorted(members.items()):
        parts += (sep, _text(k), ": ")
        parts += [v] if isinstance(v, str) else v
        sep = ", "
    parts.append("}")
    return parts


def _array(items: Sequence[T], rows: Callable[[Sequence[T]], list[str]], size: int) -> Pieces:
    """``[a, b, …]``, its rows encoded and joined ``size`` at a time as it is written:
    a few hundred kilobytes each, whose memory the next one reuses. All 18.6 MB of a
    10,000-service dump's rows made first, then written, mapped ~6,700 fresh pages
    (``write_show_json``: 0.102 s, this 0.094 s, best of 4, measured)."""

    def chunks() -> Iterator[str]:
        for start in range(0, len(items), size):
            if start:
                yield ", "
            yield ", ".join(rows(items[start : start + size]))

    return ["[", chunks(), "]"]


def _flat(pieces: Pieces) -> Iterator[str]:
    for piece in pieces:
        if isinstance(piece, str):
            yield piece
        else:
            yield from piece


def _pieces_array(elements: Iterable[Pieces]) -> Pieces:
    parts: Pieces = ["["]
    sep = ""
    for element in elements:
        parts.append(sep)
        parts += element
        sep = ", "
    parts.append("]")
    return parts


_BOOL = {False: "false", True: "true"}


def _opt_text(s: str | None) -> str:
    return "null" if s is None else _text(s)


def _opt_int(n: int | None) -> str:
    return "null" if n is None else str(n)


def _probability(p: Fraction) -> str:
    exact = f"{p.numerator}/{p.denominator}"
    return f'"probability": {p.numerator / p.denominator!r}, "probability_exact": "{exact}"'


def _probabilities() -> Callable[[Fraction], str]:
    """``_probability``, remembered per Fraction object for one call.

    Services with as many endpoints share their Fraction objects (kpsim.kube.chance.fraction): the
    50,000 endpoints of a 10,000-service dump hold 4, and an ``id()`` lookup instead of
    the Fraction properties and an lru_cache per endpoint is 0.011 s → 0.007 s
    (measured). The report holds the Fractions while it is written: no id is reused."""
    memo: dict[int, str] = {}

    def text(p: Fraction) -> str:
        found = memo.get(id(p))
        if found is None:
            found = memo[id(p)] = _probability(p)
        return found

    return text


def _chains_json(chains: Iterable[ChainSummary]) -> list[str]:
    # a list comprehension over the unpacked rows: no call per chain, 0.028 s → 0.024 s
    # for 61,000 chains (measured)
    return [
        f'{{"chain": {_text(name)}, "policy": {"null" if policy is None else _text(policy)}, '
        f'"references": {references}, "rules": {rules}, "table": {_text(table)}}}'
        for table, name, policy, rules, references in chains
    ]


def _endpoints_json(endpoints: Iterable[Endpoint], probability: Callable[[Fraction], str]) -> str:
    # list comprehensions with the optional values tested inline, here and below: no call
    # per endpoint or frontend, 0.052 s → 0.042 s for 10,000 services (measured)
    return ", ".join(
        [
            f'{{"chain": {_text(e.chain)}, '
            f'"destination": {"null" if e.destination is None else _text(e.destination)}, '
            f"{probability(e.probability)}}}"
            for e in endpoints
        ]
    )


def _frontends_json(frontends: Iterable[Frontend]) -> str:
    return ", ".join(
        [
            f'{{"address": {"null" if f.address is None else _text(f.address)}, '
            f'"kind": {_text(f.kind)}, "port": {"null" if f.port is None else str(f.port)}, '
            f'"protocol": {"null" if f.protocol is None else _text(f.protocol)}}}'
            for f in frontends
        ]
    )


def _service_json(s: Service, probability: Callable[[Fraction], str]) -> str:
    return (
        f'{{"captured": {_BOOL[s.captured]}, "chain_hash": {_text(s.hash)}, '
        f'"cluster_ips": [{", ".join(map(_text, s.cluster_ips))}], '
        f'"endpoints": [{_endpoints_json(s.endpoints, probability)}], '
        f'"frontends": [{_frontends_json(s.frontends)}], '
        f'"local_endpoints": {len(s.local_endpoints)}, '
        f'"named_by": {_text(s.named_by)}, '
        f'"no_endpoints": {_BOOL[s.no_endpoints]}, '
        f'"node_ports": [{", ".join(map(str, s.node_ports))}], '
        f'"protocol": {_opt_text(s.protocol)}, '
        f'"service": {_text(s.name)}, '
        f'"session_affinity_seconds": {_opt_int(s.affinity_seconds)}, '
        f'"traffic_policy_local": {_BOOL[s.traffic_policy_local]}}}'
    )


def _input_json(i: InputSummary) -> Pieces:
    members: dict[str, str | Pieces] = {k: _value(v) for k, v in _input_fields(i).items()}
    members["chains"] = _array(i.chains, _chains_json, 2048)
    probability = _probabilities()

    def services(chunk: Sequence[Service]) -> list[str]:
        return [_service_json(s, probability) for s in chunk]

    members["services"] = _array(i.services, services, 128)
    return _object(members)


def show_json(report: ShowReport) -> str:
    """``dumps(show_doc(report))``, written directly (see above)."""
    return "".join(_flat(_show_pieces(report)))


def write_show_json(report: ShowReport, out: TextIO) -> None:
    """``out.write(show_json(report))`` in pieces of at most a few hundred kilobytes.

    The whole text of a 10,000-service dump is 18.6 MB, and its encoded copy as much
    again: fresh memory, and on this VM each fresh 4 KiB page costs ~3.4 µs to map
    (measured). Pieces reuse the same few buffers."""
    for text in _flat(_show_pieces(report)):
        if text:
            out.write(text)


def _show_pieces(report: ShowReport) -> Pieces:
    members: dict[str, str | Pieces] = {
        "schema": _value(SHOW_SCHEMA),
        "fixture_set": _value(report.fixture_set),
        "fixture_origin": _value(report.origin),
        "inputs": _pieces_array(map(_input_json, report.inputs)),
    }
    return [*_object(members), "\n"]


# ---------------------------------------------------------------- trace

#: v2: ``masquerade`` is null when unknown (nat POSTROUTING not captured) and for packets
#: not delivered (DROP, REJECT, UNKNOWN); nodes carry ``capture``, ``diagnostics``, ``remarks``.
TRACE_SCHEMA = "kpsim/trace/v2"


def _maybe(f: Fraction | None) -> float | None:
    return None if f is None else float(f)


def exact(f: Fraction) -> str:
    return f"{f.numerator}/{f.denominator}"


def _pod(p: Pod | None) -> dict[str, str] | None:
    return None if p is None else {"name": p.name, "namespace": p.namespace, "node": p.node}


def outcome_doc(n: NamedOutcome) -> dict[str, Any]:
    o = n.outcome
    return {
        "verdict": o.verdict.value,
        "destination": n.destination,
        "probability": float(o.probability),
        "probability_exact": exact(o.probability),
        "masquerade": o.masquerade,
        "snat_to": o.snat_to,
        "egress": o.egress,
        "service": n.service,
        "pod": _pod(n.pod),
        "path": [
            {
                "table": s.table,
                "chain": s.chain,
                "rule": s.number or None,
                "line": s.rule.origin.line if s.rule and s.rule.origin else None,
            }
            for s in o.path
        ],
        "assumptions": list(o.assumptions),
        "reason": o.reason,
        "paths_merged": o.merged,
    }


def trace_json(report: TraceReport, fixture_set: str) -> str:
    req = report.request
    nodes = []
    for t in report.nodes:
        p = t.result.packet
        nodes.append(
            {
                "node": t.node,
                "source": f"{req.source}:{req.source_port}",
                "packet": {
                    "src": str(p.src),
                    "sport": p.sport,
                    "dst": str(p.dst),
                    "dport": p.dport,
                    "protocol": p.protocol,
                    "in_interface": p.in_interface,
                },
                "outcomes": [outcome_doc(o) for o in t.outcomes],
                "notes": list(t.context_notes) + list(t.result.notes),
                "remarks": list(t.remarks),
                "capture": capture_doc(t.capture),
                "diagnostics": diagnostics_doc(t.diagnostics),
            }
        )
    summary = report.summary
    return dumps(
        {
            "schema": TRACE_SCHEMA,
            "fixture_set": fixture_set,
            "nodes": nodes,
            "summary": {
                "endpoints": [
                    {
                        "destination": r.destination,
                        "verdict": r.verdict,
                        "service": r.service,
                        "pod": _pod(r.pod),
                        "by_entry_node": {k: float(v) for k, v in sorted(r.by_node.items())},
                        "by_entry_node_exact": {k: exact(v) for k, v in sorted(r.by_node.items())},
                        "overall": float(r.overall),
                        "overall_exact": exact(r.overall),
                        "masquerade": r.masquerade,
                    }
                    for r in summary.rows
                ],
                "cross_node_share": _maybe(summary.cross_node),
                "masquerade_share": float(summary.masquerade),
                "masquerade_unknown_share": float(summary.masquerade_unknown),
            },
        }
    )
