"""kpsim graph: the flow graph, one service's subgraph, the traced highlight, four renderers
and the CLI — on the seed lab and an old-layout (KUBE-FW) corpus dump."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType

import networkx as nx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from _paths import CORPUS
from kpsim import api
from kpsim.cli.main import main
from kpsim.errors import UsageError
from kpsim.formats import load_file
from kpsim.graph import build as graph
from kpsim.graph.model import GraphEdge, GraphNode, GraphView, Highlight, NodeKind
from kpsim.model import PROBABILITY_SCALE, Jump, Rule, Ruleset, StatisticMatch, StatisticMode, Table
from kpsim.render.dot import graph_dot
from kpsim.render.graphjson import GRAPH_SCHEMA, graph_json
from kpsim.render.mermaid import graph_mermaid

REPO = Path(__file__).resolve().parents[1]
SEED = "fixtures/iptables/eks-nodeport-workshop"
NODE = REPO / SEED / "ip-10-11-28-53" / "iptables-save.txt"
OLD = CORPUS / "007-kube-fw-loadbalancer-save-fragment-annotated.txt"
H = "6FADE4ADMXCZ7ACT"  # node-test-01/node-test-01-svc, NodePort 30080
THIRD = Fraction(715827883, 2**31)  # round(2^31 · 0.33333333349) / 2^31
HALF_REST = Fraction(2**31 - 715827883, 2**32)

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
needs_old = pytest.mark.skipif(not OLD.exists(), reason="corpus not present")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)


@pytest.fixture(scope="module")
def seed() -> Ruleset:
    return load_file(NODE)


@pytest.fixture(scope="module")
def view_30080() -> GraphView:
    loaded = api.load([SEED], all_files=False)
    return api.graph(loaded, api.node(loaded, None), 30080, None)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def svg(dot_text: str) -> str:
    done = subprocess.run(
        ["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return html.unescape(done.stdout)  # graphviz writes "-" as &#45;


def chains(view: GraphView) -> set[str]:
    return {n.chain for n in view.nodes if n.chain}


def edge(view: GraphView, chain: str, number: int) -> GraphEdge:
    return next(e for e in view.edges if e.chain == chain and e.number == number)


# ---------------------------------------------------------------- the graph


def test_port_30080_subgraph_is_exactly_the_service(seed: Ruleset) -> None:
    view = graph.graph_view(graph.service_subgraph(seed, 30080))
    seps = {"KUBE-SEP-GT3XY65SJT4AIPQ2", "KUBE-SEP-UW7U42NGK7WZATEY", "KUBE-SEP-VRAYARBIVYGEAZH5"}
    assert chains(view) == {
        "KUBE-NODEPORTS",
        f"KUBE-EXT-{H}",
        f"KUBE-SVC-{H}",
        "KUBE-MARK-MASQ",
        *seps,
    }
    leaves = {n.label: n for n in view.nodes if n.kind.is_leaf}
    assert set(leaves) == {"DNAT 10.11.11.70:80", "DNAT 10.11.16.79:80", "DNAT 10.11.41.25:80"}
    assert [leaves[f"DNAT {d}"].share for d in ("10.11.11.70:80", "10.11.16.79:80")] == [
        THIRD,
        HALF_REST,
    ]
    links = {(e.source, e.target) for e in view.edges}
    cid = graph.chain_id
    assert (cid("nat", "KUBE-NODEPORTS"), cid("nat", f"KUBE-EXT-{H}")) in links
    assert (cid("nat", f"KUBE-EXT-{H}"), cid("nat", f"KUBE-SVC-{H}")) in links
    for sep in seps:
        assert (cid("nat", f"KUBE-SVC-{H}"), cid("nat", sep)) in links
        assert any(e.source == cid("nat", sep) and e.kind == "verdict" for e in view.edges)
    shares = [edge(view, f"KUBE-SVC-{H}", n).probability for n in (1, 2, 3)]
    assert shares == [THIRD, HALF_REST, HALF_REST]
    assert sum(shares, Fraction(0)) == 1
    assert edge(view, "KUBE-NODEPORTS", 1).conditions == "-p tcp --dport 30080"
    assert edge(view, "KUBE-NODEPORTS", 1).probability is None  # no statistic: no share


def test_edge_shares_match_kube_endpoint_shares(seed: Ruleset) -> None:
    from kpsim.kube import services as kube

    view = graph.graph_view(graph.flow_graph(seed))
    for svc in kube.services(seed):
        got = {
            e.target.rsplit(":", 1)[1]: e.probability
            for e in view.edges
            if e.chain == f"KUBE-SVC-{svc.hash}" and e.probability is not None
        }
        assert got == {ep.chain: ep.probability for ep in svc.endpoints}, svc.name


def test_whole_nat_table_has_nat_leaves_and_no_other_table(seed: Ruleset) -> None:
    view = graph.graph_view(graph.flow_graph(seed))
    kinds = {n.kind for n in view.nodes}
    assert {NodeKind.BUILTIN, NodeKind.CHAIN, NodeKind.DNAT, NodeKind.MASQUERADE} <= kinds
    assert NodeKind.SNAT in kinds  # AWS-SNAT-CHAIN-0
    assert {n.table for n in view.nodes} == {"nat"}
    assert any(e.source == graph.chain_id("nat", "PREROUTING") for e in view.edges)


def test_missing_chain_is_marked() -> None:
    rule = Rule("nat", "KUBE-SERVICES", 1, Jump("KUBE-SVC-GONE"))
    rs = _ruleset({"KUBE-SERVICES": (rule,)})
    view = graph.graph_view(graph.flow_graph(rs))
    assert {n.chain: n.kind for n in view.nodes}["KUBE-SVC-GONE"] is NodeKind.MISSING
    assert graph.chain_graph(rs).nodes[("nat", "KUBE-SVC-GONE")]["missing"] is True


def test_service_selection_by_name_forms_and_unknown(seed: Ruleset) -> None:
    full = "node-test-01/node-test-01-svc"
    for wanted in (full, "node-test-01-svc", H, f"KUBE-SVC-{H}"):
        got = chains(graph.graph_view(graph.service_subgraph(seed, wanted)))
        assert {"KUBE-SERVICES", "KUBE-NODEPORTS", f"KUBE-SVC-{H}"} <= got, wanted
        assert "KUBE-SVC-PLYUPCAEBWXA2MVU" not in got
    with pytest.raises(UsageError, match="no such service"):
        graph.service_subgraph(seed, "nope/nope")
    with pytest.raises(UsageError, match=r"ports here: .*30080"):
        graph.service_subgraph(seed, 31999)


def test_mark_masq_jumps_take_no_share_of_the_cascade() -> None:
    def stat(t: int) -> tuple[StatisticMatch]:
        return (StatisticMatch(StatisticMode.RANDOM, threshold=t),)

    rules = (
        Rule("nat", "KUBE-SVC-X", 1, Jump("KUBE-MARK-MASQ")),
        Rule("nat", "KUBE-SVC-X", 2, Jump("KUBE-SEP-A"), matches=stat(1 << 30)),
        Rule("nat", "KUBE-SVC-X", 3, Jump("KUBE-MARK-MASQ")),
        Rule("nat", "KUBE-SVC-X", 4, Jump("KUBE-SEP-B")),
    )
    shares = graph.cascade_shares(rules, {"KUBE-SEP-A", "KUBE-SEP-B"})
    assert shares == {2: Fraction(1, 2), 4: Fraction(1, 2)}


@given(st.lists(st.integers(0, PROBABILITY_SCALE), min_size=0, max_size=8))
def test_cascade_is_p_i_times_product_of_misses(thresholds: list[int]) -> None:
    def rule(i: int, t: int | None) -> Rule:
        m = () if t is None else (StatisticMatch(StatisticMode.RANDOM, threshold=t),)
        return Rule("nat", "KUBE-SVC-X", i, Jump(f"KUBE-SEP-{i}"), matches=m)

    rules = [rule(i + 1, t) for i, t in enumerate(thresholds)]
    rules.append(rule(len(rules) + 1, None))
    shares = graph.cascade_shares(
        rules, {r.target.chain for r in rules if isinstance(r.target, Jump)}
    )
    if not thresholds:
        assert shares == {}  # no statistic: no cascade to share
        return
    assert sum(shares.values(), Fraction(0)) == 1
    miss = Fraction(1)
    for i, t in enumerate(thresholds):
        p = Fraction(t, PROBABILITY_SCALE)
        assert shares[i + 1] == p * miss
        miss *= 1 - p


def test_view_is_independent_of_chain_order(seed: Ruleset) -> None:
    nat = seed.tables["nat"]
    shuffled = Table("nat", MappingProxyType(dict(reversed(list(nat.chains.items())))))
    other = Ruleset(seed.path, seed.format, seed.family, {"nat": shuffled}, seed.metadata)
    a = graph_dot(graph.graph_view(graph.flow_graph(seed)))
    assert a == graph_dot(graph.graph_view(graph.flow_graph(other)))


# ---------------------------------------------------------------- the highlight


def test_traced_paths_are_highlighted_ties_alike(view_30080: GraphView) -> None:
    """Three endpoints at 1/3 up to the kernel's 2^-31 steps: a tie, so none is singled
    out as "most probable" — all three carry the top mark (issue #15)."""
    marks = {n.label: n.highlight for n in view_30080.nodes}
    dnat = ("DNAT 10.11.11.70:80", "DNAT 10.11.16.79:80", "DNAT 10.11.41.25:80")
    assert {marks[d] for d in dnat} == {Highlight.BEST}
    assert marks["KUBE-NODEPORTS"] is marks[f"KUBE-SVC-{H}"] is Highlight.BEST
    assert edge(view_30080, f"KUBE-SVC-{H}", 1).highlight is Highlight.BEST
    assert edge(view_30080, f"KUBE-SVC-{H}", 2).highlight is Highlight.BEST
    assert edge(view_30080, "KUBE-SEP-GT3XY65SJT4AIPQ2", 1).highlight is None  # hairpin only
    assert not any("most probable:" in n for n in view_30080.notes)
    assert any("3 outcomes tie" in n for n in view_30080.notes)


def test_no_endpoint_service_draws_its_reject_highlighted() -> None:
    loaded = api.load([SEED], all_files=False)
    view = api.graph(loaded, api.node(loaded, "ip-10-11-40-87"), 30083, None)
    (leaf,) = [n for n in view.nodes if n.kind.is_leaf]
    assert (leaf.kind, leaf.table, leaf.highlight) == (NodeKind.REJECT, "filter", Highlight.BEST)


# ---------------------------------------------------------------- renderers


@needs_dot
def test_dot_renders_with_graphviz(view_30080: GraphView, seed: Ruleset) -> None:
    out = svg(graph_dot(view_30080))
    for name in chains(view_30080):
        assert name in out
    assert "penwidth" in graph_dot(view_30080)
    assert "<svg" in svg(graph_dot(graph.graph_view(graph.flow_graph(seed))))


@needs_dot
def test_dot_and_mermaid_quote_awkward_text() -> None:
    nasty = 'say "hi" \\N back\\slash\n<b>#1;</b> {x}'
    nodes = (
        GraphNode("chain:nat:A-B", NodeKind.CHAIN, "nat", "A-B", chain="A-B"),
        GraphNode("chain:nat:A_B", NodeKind.CHAIN, "nat", "A_B", chain="A_B"),
    )
    edges = (GraphEdge(nodes[0].id, nodes[1].id, "nat", "A-B", 1, "jump", nasty, nasty),)
    view = GraphView(nasty, "test", nodes, edges, (nasty,))
    assert "A-B" in svg(graph_dot(view))
    text = graph_mermaid(view)
    ids = re.findall(r"^  (\w+)\[", text, re.M)
    assert len(set(ids)) == 2  # "A-B" and "A_B" do not collide
    edge_line = next(line for line in text.splitlines() if "-->" in line)
    label = edge_line.split("|")[1]
    assert label.startswith('"') and label.endswith('"') and '"' not in label[1:-1]
    assert "<b>" not in edge_line


def test_mermaid_has_one_edge_line_per_edge(view_30080: GraphView) -> None:
    text = graph_mermaid(view_30080)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum("-->" in line for line in lines) == len(view_30080.edges)
    assert any(line.startswith("  linkStyle ") and "#d62728" in line for line in lines)


def test_graphml_parses_back(view_30080: GraphView) -> None:
    import io

    text = graph.to_graphml(view_30080)
    back = nx.read_graphml(io.StringIO(text), force_multigraph=True)
    assert back.number_of_nodes() == len(view_30080.nodes)
    assert back.number_of_edges() == len(view_30080.edges)
    svc_edges = [d for _, _, d in back.edges(data=True) if d["chain"] == f"KUBE-SVC-{H}"]
    assert sorted(d["probability_exact"] for d in svc_edges)[0] == "1431655765/4294967296"
    assert {d.get("highlight") for d in svc_edges} == {"best"}  # a three-way tie


def test_json_schema(view_30080: GraphView) -> None:
    doc = json.loads(graph_json(view_30080))
    assert doc["schema"] == GRAPH_SCHEMA == "kpsim/graph/v1"
    assert len(doc["nodes"]) == len(view_30080.nodes)
    first = next(e for e in doc["edges"] if e["chain"] == f"KUBE-SVC-{H}" and e["rule"] == 1)
    assert first["probability_exact"] == "715827883/2147483648"
    assert first["highlight"] == "best"
    assert {"id", "kind", "leaf", "table", "label", "share_exact"} <= set(doc["nodes"][0])


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "graphml", "json"])
def test_cli_each_format(fmt: str) -> None:
    code, out, err = run("graph", "--port", "30080", "-o", fmt)
    assert code == 0, err
    assert f"KUBE-SVC-{H}" in out
    assert out == run("graph", "--port", "30080", "-o", fmt)[1]  # byte-identical


def test_cli_whole_table_and_node() -> None:
    code, out, err = run("graph", SEED, "--node", "ip-10-11-3-14", "-o", "json")
    assert code == 0, err
    assert "ip-10-11-3-14" in json.loads(out)["title"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "default/nope"], "--service default/nope: no such service"),
        (["--port", "31999"], "--port 31999: no service rule"),
        (["--port", "30080", "--service", "x"], "one or the other"),
        (["--node", "nowhere"], "--node nowhere: no such node"),
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], message: str) -> None:
    code, out, err = run("graph", *args)
    assert code == 2
    assert message in err
    assert out == ""


@needs_old
@needs_dot
def test_old_kube_fw_layout_graphs() -> None:
    code, out, err = run("graph", str(OLD), "--service", "default/nginx")
    assert code == 0, err
    assert "KUBE-FW-4N57TFCL4MD7ZTDA" in svg(out)
    rs = load_file(OLD)
    view = graph.graph_view(graph.service_subgraph(rs, "default/nginx"))
    assert "KUBE-FW-4N57TFCL4MD7ZTDA" in chains(view)
    shares = [edge(view, "KUBE-SVC-4N57TFCL4MD7ZTDA", n).probability for n in (1, 2, 3)]
    p1 = Fraction(round(0.33332999982 * 2**31), 2**31)
    assert shares == [p1, (1 - p1) / 2, (1 - p1) / 2]
    code, out, err = run("graph", str(OLD), "--port", "30938", "-o", "mermaid")
    assert code == 0
    # no node address in a fragment: traced to the documented stand-in local address
    assert "highlighted: trace of tcp 203.0.113.10:40000 → 198.51.100.10:30938" in out


def _ruleset(chains_: dict[str, tuple[Rule, ...]]) -> Ruleset:
    from kpsim.model import Chain, Family, Format

    table = Table("nat", MappingProxyType({n: Chain(n, r) for n, r in chains_.items()}))
    return Ruleset("test", Format.SAVE, Family.IPV4, MappingProxyType({"nat": table}))


def test_graph_json_carries_the_capture_gaps() -> None:
    """graph -o json says what the drawn capture lacks, as data, and as a note."""
    damaged = REPO / "fixtures/damaged/postrouting-removed.txt"
    code, out, err = run("graph", str(damaged), "--port", "30080", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    kinds = {(g["kind"], g["table"], g["chain"]) for g in doc["capture"]["gaps"]}
    assert ("builtin-not-captured", "nat", "POSTROUTING") in kinds
    assert doc["capture"]["complete"] is False
    assert any(n.startswith("capture: nat POSTROUTING not captured") for n in doc["notes"])
    code, out, _ = run("graph", str(NODE), "-o", "json")
    assert code == 0 and json.loads(out)["capture"]["complete"] is True
