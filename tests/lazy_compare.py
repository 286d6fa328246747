"""What the lazy readers' tests compare (tests/test_lazy_load.py for iptables,
tests/test_nft_lazy.py for nftables): a ruleset as every command can read it, and the
trace answers asked of it."""

from __future__ import annotations

from kpsim.errors import KpsimError
from kpsim.kube import services as kube
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import Ruleset
from kpsim.render.json import trace_json


def model(rs: Ruleset) -> object:
    """Everything a command can read of a ruleset, lines included (reads every lazy chain)."""
    tables = [
        (tname, [(c, c.origin, [r.origin for r in c.rules]) for c in table.chains.values()])
        for tname, table in rs.tables.items()
    ]
    return (rs.path, rs.format, rs.family, tables, dict(rs.metadata), rs.diagnostics,
            rs.notes, rs.capture)  # fmt: skip


def requests(rs: Ruleset) -> list[TraceRequest]:
    """Two NodePorts, a port nobody has and two ClusterIPs of the ruleset."""
    try:
        found = kube.services(rs)
    except KpsimError:
        return [TraceRequest(port=30080)]
    ports = [p for s in found for p in s.node_ports][:2]
    dests = [(f.address, f.port) for s in found for f in s.frontends if f.kind == "cluster-ip"]
    out = [TraceRequest(port=p) for p in ports] + [TraceRequest(port=39999)]
    out += [TraceRequest(port=port, dest=ip) for ip, port in dests[:2] if ip and port]
    return out


def answer(rs: Ruleset, request: TraceRequest) -> str:
    """The trace JSON, or the refusal: the same refusal both ways is the same answer."""
    try:
        return trace_json(trace_nodes([NodeInput("node", rs)], request), "x")
    except KpsimError as exc:  # a crash is not caught: it fails the test
        return f"{type(exc).__name__}: {exc}"
