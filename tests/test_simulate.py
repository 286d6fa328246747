"""kpsim simulate: the compiled sampler against the exact engine, kernel state (recent lists,
nth counters), the seed lab's services, the JSON/text/plot renderers and the CLI contract."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from kpsim import api
from kpsim.cli.simulate import parse_entry, simulate_command
from kpsim.engine.packet import Packet
from kpsim.engine.trace import Disposition, Tracer
from kpsim.errors import UsageError
from kpsim.formats import parse_text
from kpsim.kube.routing import node_context
from kpsim.kube.scenario import NodeInput
from kpsim.model import PROBABILITY_SCALE, StatisticMode
from kpsim.model.node import NodeContext
from kpsim.render.sim_json import simulate_json
from kpsim.render.sim_plot import simulate_plot
from kpsim.render.sim_text import simulate_text
from kpsim.simulate.plan import Cascade, Draw, compile_plan, exact_shares
from kpsim.simulate.run import ServiceSim, SimRequest, simulate
from kpsim.simulate.sampler import count_fresh, pick_fresh

REPO = Path(__file__).resolve().parents[1]
SEED_LAB = REPO / "fixtures" / "iptables" / "eks-nodeport-workshop"
NODEJS = ("172.20.91.45", 80)  # ClusterIP with sessionAffinity ClientIP 10800 s


@pytest.fixture(scope="module")
def lab() -> list[NodeInput]:
    loaded = api.load([str(SEED_LAB)], all_files=False)
    return [NodeInput(n.name, n.primary) for n in loaded.nodes]


def sim(inputs: list[NodeInput], seed: int = 7, **kw: object) -> ServiceSim:
    report = simulate(inputs, SimRequest(seed=seed, **kw), np.random.default_rng(seed))  # type: ignore[arg-type]
    assert len(report.services) == 1
    return report.services[0]


# ---------------------------------------------------------------- hand-written rulesets

HEAD = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SVC-T - [0:0]
"""


def cascade_text(rules: list[str], n_seps: int) -> str:
    """PREROUTING → KUBE-SVC-T (the given rules) → KUBE-SEP-i → DNAT 10.1.0.i:80."""
    seps = "".join(f":KUBE-SEP-{i} - [0:0]\n" for i in range(n_seps))
    body = ["-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-T"]
    body += [f"-A KUBE-SVC-T {r}" for r in rules]
    body += [
        f"-A KUBE-SEP-{i} -p tcp -m tcp -j DNAT --to-destination 10.1.0.{i + 1}:80"
        for i in range(n_seps)
    ]
    return HEAD + seps + "\n".join(body) + "\nCOMMIT\n"


def node(text: str, name: str = "n1") -> NodeInput:
    meta = f'# kpsim:meta {{"node": "{name}", "private_ips": ["10.0.9.1"]}}\n'
    return NodeInput(name, parse_text(meta + text, f"{name}.txt"))


def rnd(p: str, sep: int) -> str:
    return f"-m statistic --mode random --probability {p} -j KUBE-SEP-{sep}"


# ---------------------------------------------------------------- the sampler is the engine


def test_compiled_plan_is_the_kube_proxy_cascade(lab: list[NodeInput]) -> None:
    tracer = Tracer(lab[0].ruleset, node_context(lab[0].ruleset.metadata, ())[0])
    plan = compile_plan(tracer, lab[0].name, Packet.of("203.0.113.1", "10.11.28.53", 30080))
    assert plan.cascade.categorical is None
    assert [d.threshold for d in plan.cascade.draws] == [715827883, 1 << 30]
    assert exact_shares(plan.cascade, 3) == tuple(o.probability for o in plan.outcomes)


@settings(max_examples=25, deadline=None)
@given(
    probs=st.lists(st.integers(0, PROBABILITY_SCALE), min_size=1, max_size=4),
    catch_all=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sampler_converges_to_engine_shares(probs: list[int], catch_all: bool, seed: int) -> None:
    rules = [rnd(f"{t / PROBABILITY_SCALE:.11f}", i) for i, t in enumerate(probs)]
    if catch_all:
        rules.append(f"-j KUBE-SEP-{len(probs)}")
    nd = node(cascade_text(rules, len(probs) + 1))
    tracer = Tracer(nd.ruleset, NodeContext.of(["10.0.9.1"]))
    plan = compile_plan(tracer, "n1", Packet.of("203.0.113.1", "10.0.0.1", 80))
    assert plan.cascade.categorical is None, plan.notes
    n = 40_000
    counts = count_fresh(plan.cascade, len(plan.outcomes), n, np.random.default_rng(seed))
    picks = np.bincount(
        pick_fresh(plan.cascade, n, np.random.default_rng(seed)), minlength=len(plan.outcomes)
    )
    assert counts.sum() == n
    for got in (counts, picks):
        for k, o in zip(got, plan.outcomes, strict=True):
            assert binomtest(int(k), n, float(o.probability)).pvalue > 1e-6


def test_negated_statistic_draws_the_complement() -> None:
    t = 1 << 29  # 1/4
    c = Cascade((Draw(("nat", "X", 1), 0, StatisticMode.RANDOM, threshold=t, negated=True),), 1)
    assert exact_shares(c, 2) == (Fraction(3, 4), Fraction(1, 4))
    counts = count_fresh(c, 2, 100_000, np.random.default_rng(1))
    assert abs(counts[0] / 100_000 - 0.75) < 0.01


def test_nth_round_robin_is_exact() -> None:
    rules = [
        "-m statistic --mode nth --every 3 --packet 0 -j KUBE-SEP-0",
        "-m statistic --mode nth --every 2 --packet 0 -j KUBE-SEP-1",
        "-j KUBE-SEP-2",
    ]
    s = sim([node(cascade_text(rules, 3))], n=3000, dest="10.0.0.1", port=80)
    assert [o.count for o in s.endpoints] == [1000, 1000, 1000]
    assert [o.expected for o in s.endpoints] == [Fraction(1, 3)] * 3


# ---------------------------------------------------------------- the seed lab


def test_same_seed_same_bytes(lab: list[NodeInput]) -> None:
    def run(seed: int) -> str:
        rep = simulate(lab, SimRequest(5000, seed=seed), np.random.default_rng(seed))
        return simulate_json(rep, "lab")

    assert run(3) == run(3)
    assert run(3) != run(4)
    doc = json.loads(run(3))
    assert doc["schema"] == "kpsim/simulate/v2"
    assert [s["port"] for s in doc["services"]] == [30080, 30081, 30082, 30083]


def test_converges_to_exact_shares(lab: list[NodeInput]) -> None:
    s = sim(lab, n=200_000, port=30080)
    assert len(s.endpoints) == 3
    for o in s.endpoints:
        assert o.ci95[0] <= float(o.expected) <= o.ci95[1]
    assert s.chi2_p is not None and s.chi2_p > 1e-3
    assert s.verdict.kind == "chance"
    assert s.masquerade == s.n  # NodePort traffic is marked for masquerade
    assert s.expected_cross_node == Fraction(2, 3)
    assert abs((s.cross_node or 0) / s.n - 2 / 3) < 0.01


def test_hand_skewed_rules_are_flagged() -> None:
    rules = [rnd("0.5", 0), rnd("0.5", 1), "-j KUBE-SEP-2"]
    s = sim([node(cascade_text(rules, 3))], n=20_000, dest="10.0.0.1", port=80)
    assert [o.expected for o in s.endpoints] == [Fraction(1, 2), Fraction(1, 4), Fraction(1, 4)]
    assert s.verdict.kind == "skewed"
    assert "10.1.0.1:80 gets 50.00%" in s.verdict.text


def test_fall_through_gets_no_dnat() -> None:
    s = sim(
        [node(cascade_text([rnd("0.5", 0), rnd("0.5", 1)], 2))], n=20_000, dest="10.0.0.1", port=80
    )
    other = [o for o in s.outcomes if o.verdict != "DNAT"]
    assert [o.verdict for o in other] == [Disposition.ACCEPT.value]
    assert other[0].expected == Fraction(1, 4)
    assert abs(other[0].share - 0.25) < 0.015
    assert s.chi2_p is not None and s.chi2_p > 1e-4


def test_etp_local_drops_on_the_node_without_pods(lab: list[NodeInput]) -> None:
    s = sim(lab, n=9000, port=30082)
    via = {e.node.split(".")[0]: e for e in s.by_entry}
    assert s.count(Disposition.DROP) == via["ip-10-11-3-14"].connections
    assert s.cross_node == 0
    assert s.expected_cross_node == 0


def test_entry_weights(lab: list[NodeInput]) -> None:
    s = sim(
        lab,
        n=9000,
        port=30082,
        entry=(
            ("ip-10-11-3-14", Fraction(0)),
            ("ip-10-11-28-53", Fraction(2)),
            ("ip-10-11-40-87", Fraction(1)),
        ),
    )
    assert s.count(Disposition.DROP) == 0
    via = {e.node.split(".")[0]: e.connections for e in s.by_entry}
    assert abs(via["ip-10-11-28-53"] / 9000 - 2 / 3) < 0.03
    with pytest.raises(UsageError):
        sim(lab, n=10, port=30082, entry=(("nope", Fraction(1)),))


def test_affinity_few_clients_stick_per_node(lab: list[NodeInput]) -> None:
    s = sim(lab, n=6000, dest=NODEJS[0], port=NODEJS[1], clients=60)
    a = s.affinity
    assert a is not None and a.seconds == 10800
    assert a.changed == 0 and a.evicted == 0  # everyone sticks on every node
    assert s.tested == a.clients * 3 or s.tested <= 180  # one fresh pick per (node, client)
    assert a.sticky == s.n - s.tested
    assert s.chi2_p is not None and s.chi2_p > 1e-3  # first picks are the fair cascade
    assert a.split_clients > 0 and a.example is not None  # per node: two nodes, two pods
    assert len({dest for _, dest in a.example[1]}) > 1


def test_affinity_breaks_past_the_recent_list_size(lab: list[NodeInput]) -> None:
    s = sim(lab, n=6000, dest=NODEJS[0], port=NODEJS[1], clients=500)
    a = s.affinity
    assert a is not None and a.evicted > 0
    assert a.changed / a.repeats > 0.1  # measurable share of changed picks
    assert any("evicted" in r for r in s.remarks)


def test_affinity_expires_in_simulated_time(lab: list[NodeInput]) -> None:
    # 2 connections/hour: every visit finds the 3-hour-old entry expired → always fresh.
    s = sim(lab, n=300, dest=NODEJS[0], port=NODEJS[1], clients=1, rate=1 / 1800)
    assert s.affinity is not None and s.affinity.sticky < s.n


# ---------------------------------------------------------------- renderers and CLI


def test_text_and_plot(lab: list[NodeInput], tmp_path: Path) -> None:
    rep = simulate(lab, SimRequest(3, port=30080, seed=2), np.random.default_rng(2))
    text = simulate_text(rep, "lab")
    assert "happens only 2 times in 9" in text and "█" in text
    png = simulate_plot(rep, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = simulate_plot(rep, "svg")
    assert ET.fromstring(svg).tag.endswith("svg")


def invoke(*args: str) -> tuple[int, str]:
    group = click.Group()
    group.add_command(simulate_command)
    r = CliRunner().invoke(group, ["simulate", str(SEED_LAB), *args])
    return r.exit_code, r.output


def test_cli_json_plot_and_exit_codes(tmp_path: Path) -> None:
    code, out = invoke(
        "-n",
        "1000",
        "--port",
        "30080",
        "--seed",
        "5",
        "-o",
        "json",
        "--plot",
        str(tmp_path / "c.png"),
    )
    assert code == 0, out
    assert json.loads(out)["services"][0]["endpoints"][0]["count"] > 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert invoke("-n", "1000", "--port", "30080", "--seed", "5", "-o", "json")[1] == out
    code, out = invoke("--entry", "bogus")
    assert code == 2 and "--entry" in out
    code, out = invoke("--entry", "nosuchnode=1")
    assert code == 2 and "no such node" in out
    code, out = invoke("--port", "31999")
    assert code == 2 and "30080, 30081, 30082, 30083" in out
    code, out = invoke("--plot", str(tmp_path / "c.jpg"))
    assert code == 2


def test_parse_entry() -> None:
    assert parse_entry("uniform") == ()
    assert parse_entry("a=2,b=1/2") == (("a", Fraction(2)), ("b", Fraction(1, 2)))
    with pytest.raises(UsageError):
        parse_entry("a=x")


def test_progress_reaches_the_total(lab: list[NodeInput]) -> None:
    seen: list[tuple[int, int]] = []
    simulate(
        lab,
        SimRequest(3_000_000, port=30080),
        np.random.default_rng(0),
        lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (3_000_000, 3_000_000) and len(seen) == 3  # one call per batch
