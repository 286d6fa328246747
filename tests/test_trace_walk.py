"""A trace of a big capture read on demand looks up only the chains it needs, and gives the
whole reader's answers; a sketched chain's candidates (``engine.prepare.SketchIndex``) are
``ChainIndex``'s for every flow.

The trace side must not touch the chain objects it does not need (a capture read on demand
may make each chain when it is looked up): here every table's chains are wrapped in a
mapping that records each chain looked up, and a trace of a 2,000-service node may look up
a few dozen of its ~8,300 chains — iterating ``values()`` or ``items()``, or copying the
mapping, looks up every one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpsim.engine.base_chains import WithBase
from kpsim.engine.flow import Flow
from kpsim.engine.packet import Packet, State
from kpsim.engine.prepare import SKETCH_SCANS, ChainIndex, SketchIndex
from kpsim.formats import parse_captures
from kpsim.formats.iptables.lazy import LazyChain, lazy_save
from kpsim.formats.iptables.write import render_save
from kpsim.inputs import synth
from kpsim.kube.names import PER_SERVICE_PREFIXES, other_chains
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import Chain, Ruleset
from kpsim.render.json import trace_json
from kpsim.render.trace_text import trace_text


class _Counted(Mapping[str, Chain]):
    """A table's chains, recording every name whose chain is looked up."""

    def __init__(self, chains: Mapping[str, Chain], looked: set[tuple[str, str]], table: str):
        self._chains, self._looked, self._table = chains, looked, table

    def __getitem__(self, name: str) -> Chain:
        found = self._chains[name]
        self._looked.add((self._table, name))
        return found

    def __contains__(self, name: object) -> bool:  # membership makes no chain
        return name in self._chains

    def __iter__(self) -> Iterator[str]:  # nor do the names
        return iter(self._chains)

    def __len__(self) -> int:
        return len(self._chains)


def _counted(rs: Ruleset) -> tuple[Ruleset, set[tuple[str, str]]]:
    looked: set[tuple[str, str]] = set()
    tables = {n: replace(t, chains=_Counted(t.chains, looked, n)) for n, t in rs.tables.items()}
    return replace(rs, tables=MappingProxyType(tables)), looked


@pytest.fixture(scope="module")
def big() -> dict[str, str]:
    """A 2,000-service node in kube-proxy's order and as iptables-save prints it."""
    cluster = synth.synth_large(2000, 3, seed=5)
    node = cluster.nodes[0]
    text = synth.render_restore(cluster, node)
    return {"restore": text, "save": render_save(parse_captures(text, "g")[0])}


def _requests(rs: Ruleset) -> list[TraceRequest]:
    services = rs.tables["nat"].chains["KUBE-SERVICES"].sketch()
    assert services is not None
    at = next(i for i, d in enumerate(services.dsts) if d and services.dports[i])
    dest, port = services.dsts[at].removesuffix("/32"), int(services.dports[at])
    return [
        TraceRequest(port=30000),
        TraceRequest(port=30001, node_ips=("10.9.8.7",)),
        TraceRequest(port=31999, dest="198.51.100.10"),  # a port nobody has
        TraceRequest(port=port, dest=dest),
        TraceRequest(port=53, dest=dest, protocol="udp"),
    ]


@pytest.mark.parametrize("order", ["restore", "save"])
def test_a_trace_looks_up_a_few_chains_and_answers_as_the_whole_reader(
    big: dict[str, str], order: str
) -> None:
    text = big[order]
    whole = parse_captures(text, order)[0]
    probe = lazy_save(text, order)
    assert probe is not None
    for request in _requests(probe):
        lazy = lazy_save(text, order)
        assert lazy is not None
        counted, looked = _counted(lazy)
        report = trace_nodes([NodeInput("n", counted)], request)
        chains = sum(len(t.chains) for t in lazy.tables.values())
        assert chains > 8_000
        assert len(looked) < 60, sorted(looked)  # ~25 on this node (measured)
        per_service = [c for _, c in looked if c.startswith(PER_SERVICE_PREFIXES)]
        assert len(per_service) < 20, per_service
        still_lazy = sum(
            type(c) is LazyChain for t in lazy.tables.values() for c in t.chains.values()
        )
        assert still_lazy > chains - 60
        expected = trace_nodes([NodeInput("n", whole)], request)
        assert trace_json(report, "x") == trace_json(expected, "x")
        assert trace_text(report, "x", details=True) == trace_text(expected, "x", details=True)


def test_with_base_iterates_as_the_copy_did() -> None:
    chains = {"A": Chain("A"), "B": Chain("B")}
    added = {"PREROUTING": Chain("PREROUTING"), "OUTPUT": Chain("OUTPUT")}
    view = WithBase(MappingProxyType(chains), added)
    assert list(view) == ["A", "B", "PREROUTING", "OUTPUT"]
    assert dict(view) == {**chains, **added}
    assert len(view) == 4 and "OUTPUT" in view and "C" not in view
    assert (
        view.get("C") is None and view["A"] is chains["A"] and view.get("OUTPUT") is added["OUTPUT"]
    )
    with pytest.raises(KeyError):
        view["C"]


# ---------------------------------------------------------------- names


@given(
    st.lists(
        st.one_of(
            st.sampled_from([*PER_SERVICE_PREFIXES, "KUBE-SEP", "KUBE-FW", "KUBE-SERVICES", ""]),
            st.tuples(st.sampled_from(PER_SERVICE_PREFIXES), st.text("AB-\n", max_size=3)).map(
                "".join
            ),
            st.text("KUBE-SVCEPFWXLBTNOD\n", max_size=12),
        ),
        unique=True,
    )
)
def test_other_chains_are_the_names_without_a_per_service_prefix(names: list[str]) -> None:
    expected = [n for n in names if not n.startswith(PER_SERVICE_PREFIXES)]
    assert other_chains(names) == expected
    assert other_chains(dict.fromkeys(names)) == expected


# ---------------------------------------------------------------- sketched chains

_HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.0.1"]
_DSTS = [
    *_HOSTS,
    *(h + "/32" for h in _HOSTS),
    "10.0.0.0/24",
    "10.0.0.0/8",
    "0.0.0.0/0",
]
_LINE = st.tuples(
    st.sampled_from(["", "", "! "]),  # negated -d
    st.one_of(st.none(), st.sampled_from(_DSTS)),
    st.sampled_from([None, "tcp", "udp", "sctp"]),
    st.sampled_from([None, "80", "443", "53"]),
    st.booleans(),  # iptables-save's order: the port match's module is another protocol's
)
_Line = tuple[str, str | None, str | None, str | None, bool]


def _line(n: int, order: str, spec: _Line) -> str:
    """A line the lazy reader defers (else the chain has no sketch), in kube-proxy's order
    (``-m tcp -p tcp -d … --dport …``, its module its protocol) or iptables-save's (``-d …
    -p tcp -m udp --dport …``, always with ``-p``: a line both orders read would make the
    lazy reader pick kube-proxy's, and read this order's lines at once)."""
    neg, dst, proto, port, other = spec
    if order == "save":
        proto = proto or "tcp"
    else:
        other = False
    where = f" {neg}-d {dst}" if dst is not None else ""
    module = {"tcp": "udp", "udp": "sctp", "sctp": "tcp"}[proto] if proto and other else proto
    dport = f" --dport {port}" if proto is not None and port is not None else ""
    if order == "save":
        return f"-A TEST{where} -p {proto} -m {module}{dport} -j T{n % 3}"
    proto_part = f" -m {module} -p {proto}" if proto is not None else ""
    return f"-A TEST{proto_part}{where}{dport} -j T{n % 3}"


def _chain_text(order: str, lines: list[_Line]) -> str:
    body = [_line(n, order, spec) for n, spec in enumerate(lines)]
    return "\n".join(
        ["# Generated by iptables-save", "*nat", ":PREROUTING ACCEPT [0:0]", ":TEST - [0:0]",
         ":T0 - [0:0]", ":T1 - [0:0]", ":T2 - [0:0]", *body, "COMMIT", ""]
    )  # fmt: skip


_FLOWS = st.tuples(
    st.sampled_from([*_HOSTS, "10.0.0.9", "192.0.2.1"]),
    st.sampled_from([80, 443, 53, 8080]),
    st.sampled_from(["tcp", "udp", "sctp"]),
)


def _flow(dst: str, port: int, proto: str) -> Flow:
    return Flow.start(Packet.of("203.0.113.10", dst, port, protocol=proto), State())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["restore", "save"]),
    st.lists(_LINE, min_size=32, max_size=60),
    st.lists(_FLOWS, min_size=3, max_size=12),
)
def test_a_sketch_index_gives_the_chain_index_candidates(
    order: str, lines: list[_Line], flows: list[tuple[str, int, str]]
) -> None:
    """Random ``-d`` (hosts with and without /32, negated, networks, none), protocols and
    ports (some read by another protocol's module), asked about random flows, each twice:
    past ``SKETCH_SCANS`` flows both ways of finding a host's rules answer."""
    text = _chain_text(order, lines)
    lazy = lazy_save(text, "t")
    assert lazy is not None
    sketch = lazy.tables["nat"].chains["TEST"].sketch()
    assert sketch is not None
    rules = parse_captures(text, "t")[0].tables["nat"].chains["TEST"]
    built, new = ChainIndex.build(rules), SketchIndex(sketch)
    asked = [_flow(*f) for f in flows] * 2
    assert len(asked) > SKETCH_SCANS
    for flow in asked:
        expected = built.candidates(flow)
        got = new.candidates(flow)
        assert list(got) == list(expected)
        assert type(got) is type(expected)


@pytest.mark.parametrize("order", ["restore", "save"])
def test_kube_services_candidates_for_each_of_its_hosts(big: dict[str, str], order: str) -> None:
    """Every destination KUBE-SERVICES names, on its port and others, and the node."""
    lazy = lazy_save(big[order], order)
    assert lazy is not None
    sketch = lazy.tables["nat"].chains["KUBE-SERVICES"].sketch()
    assert sketch is not None
    rules = parse_captures(big[order], order)[0].tables["nat"].chains["KUBE-SERVICES"]
    old, new = ChainIndex.build(rules), SketchIndex(sketch)
    hosts = sorted({d.removesuffix("/32") for d in sketch.dsts if d and "!" not in d})[:300]
    for host in [*hosts, "10.11.28.53"]:
        for port, proto in ((80, "tcp"), (443, "tcp"), (53, "udp"), (30000, "tcp")):
            flow = _flow(host, port, proto)
            assert list(new.candidates(flow)) == list(old.candidates(flow))
