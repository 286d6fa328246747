"""Properties of damaged captures: losing part of a capture never makes kpsim more sure.

On each shipped node's iptables-save, for NodePort 30080 (asked as the CLI asks it, port
only, and at the node's address) and for node-test-01-svc's ClusterIP, every outcome of
the damaged capture's trace is an outcome of the clean trace (same verdict and
destination) with at most its probability — or UNKNOWN. A damaged capture never turns a
DNAT into a DROP or REJECT, never sends a share to another endpoint, never states a
masquerade the clean trace does not (None: unknown), and DROP/REJECT/UNKNOWN never state
one at all. Refusing to answer is fine when the capture is unreadable (no rules at all)
or when the refusal names what the capture lacks.

(a) one chain removed (declaration and rules; the jumps to it kept): every chain of every
node, parametrised, and pairs of chains by hypothesis. (b) the dump cut at any offset.

The minimal cases that once broke these properties are kept as tests below (``MINIMAL``):
a cut in an earlier table must not make the nat table "empty" (R1), a cut after a banner
(R2), and a NodePort the cut hid must be traced to UNKNOWN, not refused (R3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import damage
from kpsim.errors import ParseError, TraceError
from kpsim.formats import parse_text
from kpsim.kube.routing import node_addresses
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import Ruleset

NODES = sorted(p.name for p in damage.SHIPPED_SET.iterdir() if (p / "iptables-save.txt").is_file())
QUESTIONS = ("nodeport", "nodeport-at-node", "clusterip")
CLUSTER_IP = ("172.20.177.168", 8080)  # node-test-01-svc, the service of NodePort 30080
NOT_DELIVERED = frozenset({"DROP", "REJECT", "UNKNOWN"})
#: The refusal of a NodePort the capture does not list (kube.scenario.check_port).
NO_SUCH_NODEPORT = "no NodePort 30080 in these rules"
#: What a refusal must say to be honest about a damaged capture.
GAP_WORDS = re.compile(r"\bcut\b|not captured|not in the capture|truncated")

Key = tuple[str, str]  # (verdict, destination)


@dataclass(frozen=True)
class Answer:
    """A trace reduced to what the property compares (or the refusal's text)."""

    shares: Mapping[Key, Fraction]
    masquerade: Mapping[Key, frozenset[bool | None]]
    refused: str | None = None


@cache
def text_of(node: str) -> str:
    return (damage.SHIPPED_SET / node / "iptables-save.txt").read_text()


@cache
def node_ip(node: str) -> str:
    return node_addresses(parse_text(text_of(node), node).metadata, ())[0]


def request(node: str, question: str) -> TraceRequest:
    if question == "nodeport":
        return TraceRequest(port=30080)  # as `kpsim trace FILE --port 30080` asks it
    if question == "nodeport-at-node":
        return TraceRequest(port=30080, dest=node_ip(node))
    return TraceRequest(port=CLUSTER_IP[1], dest=CLUSTER_IP[0])


def answer(rs: Ruleset, node: str, question: str) -> Answer:
    try:
        report = trace_nodes([NodeInput(node, rs)], request(node, question))
    except TraceError as exc:
        return Answer({}, {}, str(exc))
    shares: dict[Key, Fraction] = {}
    masq: dict[Key, set[bool | None]] = {}
    for o in report.nodes[0].outcomes:
        key = (o.outcome.verdict.value, o.destination)
        shares[key] = shares.get(key, Fraction(0)) + o.outcome.probability
        masq.setdefault(key, set()).add(o.outcome.masquerade)
    return Answer(shares, {k: frozenset(v) for k, v in masq.items()})


@cache
def clean(node: str, question: str) -> Answer:
    found = answer(parse_text(text_of(node), node), node, question)
    assert found.refused is None and found.shares, (node, question, found)
    return found


def parsed(text: str, node: str) -> Ruleset | None:
    """The damaged capture, or None when kpsim says it holds no rules at all."""
    try:
        return parse_text(text, f"{node}/damaged.txt")
    except ParseError as exc:
        assert "no iptables rules found" in exc.message, exc
        return None


def problems(rs: Ruleset, node: str, question: str) -> list[str]:
    """How the damaged trace breaks the property (empty: it holds)."""
    got, before = answer(rs, node, question), clean(node, question)
    if got.refused is not None:
        gap_named = GAP_WORDS.search(got.refused) is not None
        return [] if gap_named else [f"refused without naming the gap: {got.refused}"]
    out = []
    for key, p in got.shares.items():
        verdict, dest = key
        stated = got.masquerade[key]
        if verdict in NOT_DELIVERED and stated != {None}:
            out.append(f"{verdict} {dest} states masquerade {sorted(stated, key=str)}")
        if verdict == "UNKNOWN":
            continue
        if key not in before.shares:
            out.append(f"{verdict} {dest} ({p}) is not a clean outcome {dict(before.shares)}")
        elif p > before.shares[key]:
            out.append(f"{verdict} {dest}: {p} > the clean {before.shares[key]}")
        elif not stated <= before.masquerade[key] | {None}:
            out.append(f"{verdict} {dest}: masquerade {stated} vs clean {before.masquerade[key]}")
    assert sum(got.shares.values()) == 1, got
    return out


# ---------------------------------------------------------------- what fails today


# ---------------------------------------------------------------- (a) one chain removed

CHAINS = [
    (node, table, chain) for node in NODES for table, chain in damage.chains_of(text_of(node))
]


@cache
def without(node: str, table: str, chain: str) -> Ruleset:
    rs = parsed(damage.remove_chain(text_of(node), table, chain), node)
    assert rs is not None
    return rs


def _chain_case(node: str, table: str, chain: str, question: str) -> object:
    return pytest.param(node, table, chain, question, id=f"{node}-{table}-{chain}-{question}")


@pytest.mark.parametrize(
    ("node", "table", "chain", "question"),
    [_chain_case(*c, q) for c in CHAINS for q in QUESTIONS],
)
def test_removing_a_chain_never_makes_a_surer_answer(
    node: str, table: str, chain: str, question: str
) -> None:
    assert problems(without(node, table, chain), node, question) == []


@settings(max_examples=40, deadline=None, database=None)
@given(st.sampled_from(NODES), st.data())
def test_removing_two_chains_never_makes_a_surer_answer(node: str, data: st.DataObject) -> None:
    chains = damage.chains_of(text_of(node))
    first, second = data.draw(
        st.lists(st.sampled_from(chains), min_size=2, max_size=2, unique=True)
    )
    text = damage.remove_chain(damage.remove_chain(text_of(node), *first), *second)
    rs = parsed(text, node)
    assert rs is not None
    for question in QUESTIONS:
        found = problems(rs, node, question)
        assert found == [], (first, second, question, found)


# ---------------------------------------------------------------- (b) the dump cut anywhere


@settings(max_examples=250, deadline=None, database=None)
@given(st.sampled_from(NODES), st.data())
def test_cutting_the_dump_never_makes_a_surer_answer(node: str, data: st.DataObject) -> None:
    text = text_of(node)
    offset = data.draw(st.integers(0, len(text)), label="offset")
    rs = parsed(damage.cut(text, offset), node)
    if rs is None:
        return
    for question in QUESTIONS:
        found = problems(rs, node, question)
        assert found == [], (offset, question, found)


@pytest.mark.parametrize("node", NODES)
def test_cutting_after_each_line_never_makes_a_surer_answer(node: str) -> None:
    """Every line boundary and every line's middle, for the questions at an address."""
    text, offset = text_of(node), 0
    for line in text.splitlines(keepends=True):
        for cut in (offset, offset + len(line) // 2):
            rs = parsed(damage.cut(text, cut), node)
            if rs is None:
                continue
            for question in ("nodeport-at-node", "clusterip"):
                found = problems(rs, node, question)
                assert found == [], (cut, question, found)
        offset += len(line)


# ---------------------------------------------------------------- the minimal failing cases

NODE = damage.NODE  # ip-10-11-28-53: its filter table ends at line 47, nat starts at line 50


def _cut_problems(text: str, question: str) -> list[str]:
    rs = parsed(text, NODE)
    assert rs is not None
    return problems(rs, NODE, question)


MINIMAL = [
    pytest.param(
        damage.cut_after_line(text_of(NODE), 110),
        "nodeport",
        id="R3-cut-before-the-30080-rule",
    ),
    pytest.param(
        damage.cut_after_line(text_of(NODE), 46),
        "nodeport-at-node",
        id="R1-cut-before-filter-COMMIT",
    ),
    pytest.param(
        damage.cut_after_line(text_of(NODE), 19),
        "clusterip",
        id="R1-cut-in-filter-declarations",
    ),
    pytest.param(
        damage.cut(text_of(NODE), text_of(NODE).index("*nat") + 3),
        "clusterip",
        id="R1-cut-inside-the-nat-header",
    ),
    pytest.param(
        damage.cut_after_line(text_of(NODE), 49),
        "clusterip",
        id="R2-cut-after-the-nat-banner",
    ),
    pytest.param(
        damage.cut_after_line(text_of(NODE), 48),
        "nodeport-at-node",
        id="R2-cut-after-filter",
    ),
]


@pytest.mark.parametrize(("text", "question"), MINIMAL)
def test_known_minimal_case(text: str, question: str) -> None:
    assert _cut_problems(text, question) == []


def test_properties_are_not_vacuous() -> None:
    """The clean traces are what the fixture set promises, and the check does bite: a
    capture that sends the first endpoint's share to another pod breaks it."""
    for node in NODES:
        assert sorted(d for _, d in clean(node, "nodeport").shares) == [
            "10.11.11.70:80",
            "10.11.16.79:80",
            "10.11.41.25:80",
        ]
    moved = text_of(NODE).replace(
        "--to-destination 10.11.11.70:80", "--to-destination 10.11.9.9:80"
    )
    rs = parsed(moved, NODE)
    assert rs is not None and problems(rs, NODE, "nodeport")
