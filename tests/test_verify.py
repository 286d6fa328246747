"""``kpsim verify``: the comparison on crafted kernel answers (anywhere), and the command
against the real kernel on the shipped fixtures and on generated scenarios — uniform,
hand-skewed chain, session affinity (few clients; more than a recent list holds),
externalTrafficPolicy Local without a local pod (DROP), no endpoints (REJECT) — root
only; CI runs these and fails when kpsim and the kernel disagree.

The kernel tests leave nothing behind: each checks that no namespace of this process
(``kpsim-<pid>-…``) remains; the ``--keep`` one removes what it kept and checks that too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scipy.stats import chisquare

import kpsim.verify.run as verification
from kpsim.cli.main import main
from kpsim.formats import load_file
from kpsim.inputs import synth
from kpsim.inputs.synth import EndpointSpec
from kpsim.kube.scenario import NodeInput
from kpsim.model import Ruleset
from kpsim.render.verify_json import verify_json as render_json
from kpsim.render.verify_text import verify_text
from kpsim.verify import netns
from kpsim.verify.replay import AddressMap, KernelResult
from kpsim.verify.replay.result import Connection
from kpsim.verify.run import (
    P_MIN,
    AffinityPrediction,
    KernelUnavailable,
    Prediction,
    VerifyRequest,
    changes,
    chi_square,
    compare,
    predict,
    two_proportion_p,
)
from test_trace_kernel import NODE, OTHER, cluster_of, node_ruleset, service

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "fixtures/iptables/eks-nodeport-workshop"
DROP_NODE = "ip-10-11-3-14"  # no crystal pod here: 30082 (externalTrafficPolicy Local) drops

#: A kernel run judged by χ² (p ≥ 0.001): a correct kpsim fails it ~1 run in 1,000 per
#: node, so it gets one rerun (pytest-rerunfailures) — 1 in 10^6; a real disagreement is
#: systematic and fails both.
STATISTICAL = pytest.mark.flaky(reruns=1)
kernel = pytest.mark.skipif(
    not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)


def namespaces_of(pid: int) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(f"{netns.PREFIX}{pid}-")]


@pytest.fixture
def no_namespace_left_behind() -> Iterator[None]:
    yield
    assert namespaces_of(os.getpid()) == []


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["verify", *args])
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------- crafted kernel answers

A, B, C = "10.11.1.1:80", "10.11.2.2:80", "10.11.3.3:80"
CLIENT = "203.0.113.10"
NET = ipaddress.IPv4Network
NO_MAP = AddressMap((), {}, NET("198.19.0.0/24"), NET("198.19.1.0/24"))


def crafted(
    reached: Mapping[str, int],
    *,
    masqueraded: Mapping[str, int] | None = None,
    refused: int = 0,
    timed_out: int = 0,
    errors: int = 0,
) -> KernelResult:
    """A KernelResult as the harness would return it, without a kernel."""
    masq = dict(reached) if masqueraded is None else dict(masqueraded)
    conns: list[Connection] = []
    for dest, count in reached.items():
        for i in range(count):
            hidden = i < masq.get(dest, 0)
            conns.append(Connection(CLIENT, 10_000 + len(conns), "ok", dest, masquerade=hidden))
    for status, count in (("refused", refused), ("timeout", timed_out), ("error", errors)):
        conns += [Connection(CLIENT, 20_000 + i, status, detail="x") for i in range(count)]
    counters = {("nat", "KUBE-SVC-X", 1): reached.get(A, 0)}
    return KernelResult(30080, "10.11.0.5", (CLIENT,), False, tuple(conns), NO_MAP, counters)


def prediction(
    shares: Mapping[str, Fraction],
    *,
    masquerade: bool = True,
    reject: Fraction = Fraction(0),
    drop: Fraction = Fraction(0),
    unknown: Fraction = Fraction(0),
) -> Prediction:
    return Prediction(
        dict(shares),
        {d: masquerade for d in shares},
        reject,
        drop,
        unknown,
        {("nat", "KUBE-SVC-X", 1): shares.get(A, Fraction(0))},
        frozenset(),
        address="10.11.0.5",
    )


THIRDS = {A: Fraction(1, 3), B: Fraction(1, 3), C: Fraction(1, 3)}


def test_compare_agrees_on_a_fair_split() -> None:
    v = compare("n1", prediction(THIRDS), crafted({A: 98, B: 104, C: 98}))
    assert v.agree, v.reasons
    assert v.p_value > 0.5
    assert "reached all 3 predicted destinations" in v.reason
    assert [e.kernel_count for e in v.endpoints] == [98, 104, 98]
    assert v.endpoints[0].expected_count == pytest.approx(100.0)
    (counter,) = v.counters
    assert (counter.kernel_packets, counter.expected, counter.per_connection) == (98, 100.0, True)


def test_compare_wrong_endpoint_set() -> None:
    v = compare("n1", prediction({A: Fraction(1, 2), B: Fraction(1, 2)}), crafted({A: 50, C: 50}))
    assert not v.agree
    assert any(f"reached {C}" in r and "never" in r for r in v.reasons), v.reasons
    assert any(f"to {B}" in r and "never reached" in r for r in v.reasons), v.reasons
    assert v.p_value == 0.0  # C is impossible under kpsim's answer
    assert {e.destination for e in v.endpoints} == {A, B, C}


def test_compare_masquerade_mismatch() -> None:
    pred = prediction({A: Fraction(1)}, masquerade=False)
    v = compare("n1", pred, crafted({A: 40}))
    assert not v.agree
    assert v.reasons == (f"{A}: kernel masqueraded; kpsim: client IP kept",)
    mixed = compare("n1", pred, crafted({A: 40}, masqueraded={A: 10}))
    assert mixed.reasons == (f"{A}: 10 of 40 connections masqueraded; kpsim: client IP kept",)
    assert mixed.endpoints[0].masquerade_seen is None


def test_compare_skewed_counts() -> None:
    v = compare("n1", prediction(THIRDS), crafted({A: 200, B: 50, C: 50}))
    assert not v.agree
    assert v.p_value < P_MIN
    assert len(v.reasons) == 1 and v.reasons[0].startswith("χ² p = "), v.reasons
    assert f"largest gap: {A} 200 vs 100.0" in v.reasons[0]


def test_compare_verdicts() -> None:
    """DROP predicted, refused seen: both directions are named."""
    v = compare("n1", prediction({}, drop=Fraction(1)), crafted({}, refused=20))
    assert not v.agree
    assert "20 connections refused; kpsim predicts no REJECT" in v.reasons
    assert any("kpsim predicts DROP for 100%" in r and "none timed out" in r for r in v.reasons)
    ok = compare("n1", prediction({}, reject=Fraction(1)), crafted({}, refused=20))
    assert ok.agree and ok.p_value == 1.0
    assert ok.refused.kernel_count == 20 and ok.refused.expected_count == 20.0


def test_compare_small_n_only_needs_a_subset() -> None:
    """N·p < 5: an endpoint kpsim allows may go unseen; one it forbids may not."""
    v = compare("n1", prediction(THIRDS), crafted({A: 4, B: 2}))
    assert v.agree, v.reasons
    assert "reached 2 of 3 predicted destinations (too few connections" in v.reason
    big = compare("n1", prediction(THIRDS), crafted({A: 40, B: 20}))
    assert not big.agree and any(f"to {C}" in r for r in big.reasons)


def test_compare_harness_errors_and_undecided() -> None:
    v = compare("n1", prediction({A: Fraction(1)}), crafted({A: 9}, errors=1))
    assert not v.agree and any("failed in the harness" in r for r in v.reasons)
    pred = prediction({A: Fraction(1, 2)}, unknown=Fraction(1, 2))
    u = compare("n1", pred, crafted({A: 10}))
    assert not u.agree and any("cannot decide 50%" in r for r in u.reasons)


def test_chi_square() -> None:
    assert chi_square([10, 0], [10.0, 0.0]) == 1.0  # one live cell: nothing to test
    assert chi_square([9, 1], [10.0, 0.0]) == 0.0  # kpsim says impossible
    obs, exp = [98, 104, 98], [100.0, 100.0, 100.0]
    assert chi_square(obs, exp) == pytest.approx(chisquare(obs, exp).pvalue)
    # cells expecting < 5 are pooled: 3 + 7 observed against 1 + 2 expected, then
    # (still < 5) joined with the smallest other cell
    assert chi_square([97, 93, 3, 7], [97.0, 100.0, 1.0, 2.0]) == pytest.approx(
        chisquare([107, 93], [100.0, 100.0]).pvalue
    )
    obs, exp = [95, 95, 3, 7], [95.0, 95.0, 5.0, 5.0]  # 5 is enough: nothing pooled
    assert chi_square(obs, exp) == pytest.approx(chisquare(obs, exp).pvalue)


def test_predict_weighs_clients() -> None:
    """7 connections from 3 clients: 3/7, 2/7, 2/7 of them; shares still sum to 1."""
    rs = load_file(SEED / "ip-10-11-28-53" / "iptables-save.txt")
    node = NodeInput("ip-10-11-28-53", rs)
    pred = predict(node, VerifyRequest(port=30080, n=7, clients=3))
    assert sum(pred.shares.values()) == 1
    assert len(pred.shares) == 3 and all(pred.masquerade.values())
    assert pred.rules[("nat", "KUBE-SERVICES", 9)] == 1
    assert verification.client_weights(VerifyRequest(port=1, n=7, clients=3)) == [
        ("203.0.113.10", Fraction(3, 7)),
        ("203.0.113.11", Fraction(2, 7)),
        ("203.0.113.12", Fraction(2, 7)),
    ]


# ---------------------------------------------------------------- affinity, no kernel

AFFINITY_S = 10_800  # kube-proxy's default: nothing expires during a test
PORT = 30100  # the generated service's NodePort


def sticky_service(endpoints: int) -> Ruleset:
    return node_ruleset(cluster_of(service(endpoints, session_affinity_seconds=AFFINITY_S)))


def by_client(picks: list[tuple[str, str]]) -> KernelResult:
    """A kernel answer from (client, destination) pairs, in connection order."""
    conns = tuple(
        Connection(c, 10_000 + i, "ok", d, masquerade=True) for i, (c, d) in enumerate(picks)
    )
    return KernelResult(PORT, "10.11.0.5", (), False, conns, NO_MAP, {})


def sticky_prediction(clients: list[str]) -> Prediction:
    halves = {A: Fraction(1, 2), B: Fraction(1, 2)}
    return Prediction(
        halves,
        {A: True, B: True},
        Fraction(0),
        Fraction(0),
        Fraction(0),
        {},
        frozenset(),
        address="10.11.0.5",
        affinity=True,
        affinity_seconds=AFFINITY_S,
        per_client={c: halves for c in clients},
    )


def test_changes_and_two_proportion() -> None:
    assert changes([1, 2, 1, 1, 2], ["a", "b", "a", "b", "b"]) == (3, 1)
    assert two_proportion_p(10, 100, 10, 100) == 1.0
    assert two_proportion_p(0, 100, 0, 400) == 1.0  # both 0: nothing differs
    assert two_proportion_p(30, 100, 10, 100) < 0.001
    wide = two_proportion_p(30, 100, 10, 100, dispersion=4.0)
    assert wide > 0.05  # over-dispersed counts: a wider null (z 3.5 → 1.8)


def test_compare_affinity_sticky_clients_agree() -> None:
    """20 clients × 10 connections, each on its first pick: kpsim's runs say 0 changes."""
    clients = [f"203.0.113.{10 + i}" for i in range(20)]
    picks = [(c, A if i % 2 else B) for _ in range(10) for i, c in enumerate(clients)]
    sim = AffinityPrediction(AFFINITY_S, 100, 180, (0,) * 40)
    v = compare("n1", sticky_prediction(clients), by_client(picks), sim)
    assert v.agree, v.reasons
    a = v.affinity
    assert a is not None
    assert (a.clients, a.repeats, a.changed_kernel, a.changed_kpsim) == (20, 180, 0, 0.0)
    assert a.first_picks == ((A, 10, 10.0), (B, 10, 10.0)) and a.first_pick_p == v.p_value == 1
    assert "first picks of 20 clients: χ² p = 1 ≥ 0.001" in v.reason
    assert "kernel 0 of 180, kpsim 0.0 (p = 1 ≥ 0.001)" in v.reason


def test_compare_affinity_kernel_moves_where_kpsim_never_does() -> None:
    clients = [f"203.0.113.{10 + i}" for i in range(20)]
    picks = [(c, A if i % 2 else B) for _ in range(10) for i, c in enumerate(clients)]
    picks[-1] = (picks[-1][0], A if picks[-1][1] == B else B)  # one client moved once
    sim = AffinityPrediction(AFFINITY_S, 100, 180, (0,) * 40)
    v = compare("n1", sticky_prediction(clients), by_client(picks), sim)
    assert not v.agree
    assert v.affinity is not None and v.affinity.changed_kernel == 1
    assert v.reasons == (
        "repeat connections that changed endpoint: kernel 1 of 180, kpsim none in 40 runs; "
        "p = 0 < 0.001",
    )


def test_compare_affinity_first_picks_skewed() -> None:
    """60 clients all first on A, kpsim's halves: the first-pick χ² fails, not the rest."""
    clients = [f"203.0.113.{10 + i}" for i in range(60)]
    picks = [(c, A) for _ in range(3) for c in clients]
    sim = AffinityPrediction(AFFINITY_S, 100, 120, (0,) * 40)
    v = compare("n1", sticky_prediction(clients), by_client(picks), sim)
    assert not v.agree and v.p_value < P_MIN
    assert any(r.startswith("first picks of 60 clients: χ² p") for r in v.reasons), v.reasons
    assert any(f"to {B}" in r and "never reached" in r for r in v.reasons)  # 30 expected


def test_predict_detects_affinity_on_the_path() -> None:
    pred = predict(NodeInput(NODE.name, sticky_service(3)), VerifyRequest(port=PORT))
    assert pred.affinity and pred.affinity_seconds == AFFINITY_S
    rs = load_file(SEED / "ip-10-11-28-53" / "iptables-save.txt")
    plain = predict(NodeInput("ip-10-11-28-53", rs), VerifyRequest(port=30080))
    assert not plain.affinity and plain.affinity_seconds is None


def test_client_weights_follow_the_order() -> None:
    req = VerifyRequest(port=1, n=4, clients=3, order=(2, 2, 0, 2))
    assert verification.client_weights(req) == [
        ("203.0.113.10", Fraction(1, 4)),
        ("203.0.113.12", Fraction(3, 4)),
    ]
    assert verification.affinity_order(req) == verification.affinity_order(req)  # seeded
    with pytest.raises(verification.UsageError, match="order"):
        VerifyRequest(port=1, n=2, clients=3, order=(0, 3)).check()


def test_verify_affinity_with_a_stand_in_kernel() -> None:
    """The wiring: a sticky service gets a mixed client order, kpsim replays that order,
    and a kernel stand-in that keeps each client on its first pick agrees."""
    seen: list[VerifyRequest] = []

    def sticky(node: NodeInput, request: VerifyRequest) -> KernelResult:
        seen.append(request)
        assert request.order is not None
        sources = verification.client_addresses(request)
        eps = ["10.11.32.2:8080", "10.11.32.3:8080"]
        return by_client([(sources[k], eps[k % 2]) for k in request.order])

    req = VerifyRequest(port=PORT, n=120, clients=12)
    report = verification.verify(
        [NodeInput(NODE.name, sticky_service(2))], req, probe=sticky, capacity_of=lambda: 100
    )
    (v,) = report.nodes
    assert v.agree, v.reasons
    assert seen[0].order == verification.affinity_order(req) and len(set(seen[0].order)) == 12
    assert v.affinity is not None and v.affinity.changed_kpsim == 0 == v.affinity.changed_kernel
    text = verify_text(report)
    assert "session affinity (recent lists: 10800 s, 100 entries each): 12 clients" in text
    assert "repeat connections that changed endpoint: kernel 0 of 108" in text
    a = json.loads(render_json(report))["nodes"][0]["affinity"]
    assert {"clients", "first_pick_p", "changed_kernel", "changed_kpsim", "p_value"} <= set(a)
    assert (a["clients"], a["changed_kernel"], a["changed_kpsim"]) == (12, 0, 0.0)


# ---------------------------------------------------------------- the command, no kernel


def test_cli_without_root_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "missing_requirements", lambda: ["root (run as root)"])
    code, out, err = run("--port", "30080")
    assert code == 2 and out == ""
    assert "needs root (run as root)" in err


def test_missing_requirements_names_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(verification.shutil, "which", lambda t: None if t == "iptables" else t)
    assert verification.missing_requirements() == [
        "root (run as root, e.g. with sudo)",
        "the iptables command",
    ]
    with pytest.raises(KernelUnavailable) as exc:
        verification.verify([], VerifyRequest(port=30080))
    assert exc.value.exit_code == 2
    assert str(exc.value).endswith("needs root (run as root, e.g. with sudo), the iptables command")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "30080", "-n", "0"], "-n 0"),
        (["--port", "70000"], "--port 70000"),
        (["--port", "30080", "--node", "nope"], "--node nope: no such node"),
        (["--port", "31999"], "no NodePort 31999"),
        (["--port", "30080", "--dest", "not-an-ip"], "--dest"),
        (["--port", "30080", "--seed", "-1"], "--seed -1: between 0 and 2**63-1"),
    ],
)
def test_cli_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setattr(verification, "missing_requirements", list)
    monkeypatch.setattr(verification, "kernel_probe", _no_kernel)
    code, _, err = run(*args)
    assert code == 2, err
    assert message in err


def _no_kernel(node: NodeInput, request: VerifyRequest) -> KernelResult:
    raise AssertionError("usage errors must stop before the kernel is asked")


def test_cli_disagreement_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel stand-in that always lands on one endpoint: kpsim's thirds must fail."""

    def lopsided(node: NodeInput, request: VerifyRequest) -> KernelResult:
        return crafted({"10.11.11.70:80": request.n})

    monkeypatch.setattr(verification, "missing_requirements", list)
    monkeypatch.setattr(verification, "kernel_probe", lopsided)
    code, out, _ = run("--port", "30080", "-n", "60", "--node", DROP_NODE, "-o", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["agree"] is False and doc["p_value"] < P_MIN
    (node,) = doc["nodes"]
    assert "never reached" in node["reason"]
    code, text, _ = run("--port", "30080", "-n", "60", "--node", DROP_NODE)
    assert code == 1 and "DISAGREE" in text and "1 of 1 node(s) disagree" in text


# ---------------------------------------------------------------- against the kernel

NODE_KEYS = {"node", "agree", "reason", "p_value", "n", "endpoints", "refused", "timed_out",
             "counters", "address_map"}  # fmt: skip
ENDPOINT_KEYS = {"destination", "kernel_count", "expected_share", "kpsim_expected_count",
                 "masquerade_seen", "masquerade_predicted"}  # fmt: skip


def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(str(SEED), *args, "-o", "json")
    assert out, err
    doc = json.loads(out)
    assert doc["schema"] == "kpsim/verify/v1"
    for node in doc["nodes"]:
        assert set(node) >= NODE_KEYS
        for e in node["endpoints"]:
            assert set(e) >= ENDPOINT_KEYS
            assert e["destination"].startswith("10.11."), e  # the fixture's own addresses
    return code, doc


@STATISTICAL
@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_nodeport_split_agrees() -> None:
    code, doc = verify_json("--port", "30080", "-n", "300")
    assert code == 0, [n["reason"] for n in doc["nodes"]]
    assert doc["agree"] is True and len(doc["nodes"]) == 3
    assert doc["p_value"] == min(n["p_value"] for n in doc["nodes"]) >= P_MIN
    for node in doc["nodes"]:
        assert node["agree"] is True and node["n"] == 300
        assert len(node["endpoints"]) == 3
        assert sum(e["kernel_count"] for e in node["endpoints"]) == 300
        eps = node["endpoints"]
        assert all(e["masquerade_seen"] is e["masquerade_predicted"] is True for e in eps)
        seps = [c["kernel_packets"] for c in node["counters"] if c["chain"].startswith("KUBE-SEP-")]
        assert sorted(seps) == sorted(e["kernel_count"] for e in eps)
        rows = {r["fixture"]: r["replayed"] for r in node["address_map"]}
        assert ipaddress.ip_network(rows["10.11.0.0/16"]).subnet_of(netns.ALLOWED_NET)


@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_local_policy_drop_agrees() -> None:
    """30082 (externalTrafficPolicy Local): DROP on the node without a local pod."""
    code, doc = verify_json("--port", "30082", "-n", "10", "--connect-timeout", "0.3")
    assert code == 0, [n["reason"] for n in doc["nodes"]]
    by_node = {n["node"].split(".")[0]: n for n in doc["nodes"]}
    drop = by_node[DROP_NODE]
    assert drop["agree"] and drop["endpoints"] == []
    assert drop["timed_out"]["kernel_count"] == 10 and drop["timed_out"]["expected_share"] == 1
    last = drop["counters"][-1]
    assert (last["chain"], last["kernel_packets"]) == ("KUBE-EXTERNAL-SERVICES", 10)
    for name, node in by_node.items():
        if name != DROP_NODE:
            (e,) = node["endpoints"]
            assert e["kernel_count"] == 10 and e["masquerade_seen"] is False


@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_no_endpoints_reject_agrees_text() -> None:
    code, text, err = run(str(SEED), "--port", "30083", "-n", "20")
    assert code == 0, text + err
    assert text.count("AGREE") == 3 and "20 refused as REJECT predicts (100%)" in text
    assert "address map" in text and "198.19.1.1" in text  # the outside client, mapped
    assert text.rstrip().endswith("all 3 node(s) agree with kpsim (lowest χ² p = 1)")


@kernel
@pytest.mark.kernel
def test_kernel_keep_leaves_namespaces_and_says_how_to_remove_them() -> None:
    """--keep ends the process without cleanup, so it runs in a subprocess of its own."""
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-m", "kpsim", "verify", str(SEED), "--port", "30080", "-n", "5",
            "--node", DROP_NODE, "--keep", "-o", "json"]  # fmt: skip
    pipe = subprocess.PIPE
    proc = subprocess.Popen(argv, stdout=pipe, stderr=pipe, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        kept = [k["namespace"] for k in json.loads(out)["kept_namespaces"]]
        assert len(kept) == 3 and sorted(kept) == sorted(namespaces_of(proc.pid))
        rules = netns.run(kept[0], ["iptables-save", "-t", "nat"]).stdout
        assert "KUBE-NODEPORTS" in rules  # the node's rules are there to inspect
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for ns in namespaces_of(proc.pid):
            subprocess.run(["ip", "netns", "del", ns], timeout=10, check=False)
    assert namespaces_of(proc.pid) == []


# ---------------------------------------------------------------- generated scenarios, kernel


def skewed() -> Ruleset:
    """Probabilities edited by hand: 0.1 / 0.8 → shares 0.1 / 0.18 / 0.72."""
    cluster = cluster_of(service(3))
    text = synth.render_restore(cluster, NODE)
    for old, new in (("0.3333333333", "0.1000000000"), ("0.5000000000", "0.8000000000")):
        assert text.count(f"--probability {old}") == 1
        text = text.replace(f"--probability {old}", f"--probability {new}")
    return node_ruleset(cluster, text)


def etp_local_elsewhere() -> Ruleset:
    """externalTrafficPolicy Local, both endpoints on the other node: NODE drops."""
    eps = tuple(EndpointSpec(f"10.11.32.{i}", OTHER.name) for i in (2, 3))
    svc = service(2, endpoints=eps, external_traffic_policy="Local")
    return node_ruleset(cluster_of(svc))


def verify_generated(rs: Ruleset, **kw: Any) -> verification.VerifyReport:
    report = verification.verify([NodeInput(NODE.name, rs)], VerifyRequest(port=PORT, **kw))
    (v,) = report.nodes
    print(f"\n{v.reason or v.reasons}")
    return report


@STATISTICAL
@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_generated_uniform() -> None:
    (v,) = verify_generated(node_ruleset(cluster_of(service(4))), n=200, clients=3).nodes
    assert v.agree, v.reasons
    assert [float(e.expected_share) for e in v.endpoints] == pytest.approx([0.25] * 4)
    assert all(e.kernel_count for e in v.endpoints) and v.affinity is None


@STATISTICAL
@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_generated_hand_skewed() -> None:
    (v,) = verify_generated(skewed(), n=300).nodes
    assert v.agree, v.reasons
    shares = sorted(round(float(e.expected_share), 6) for e in v.endpoints)
    assert shares == [0.1, 0.18, 0.72] and v.p_value >= P_MIN


@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_generated_etp_local_drop() -> None:
    (v,) = verify_generated(etp_local_elsewhere(), n=3, connect_timeout_s=0.05).nodes
    assert v.agree, v.reasons
    assert v.endpoints == () and v.timed_out.kernel_count == 3
    assert v.counters[-1].chain == "KUBE-EXTERNAL-SERVICES"


@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_generated_no_endpoints_reject() -> None:
    (v,) = verify_generated(node_ruleset(cluster_of(service(0))), n=5).nodes
    assert v.agree, v.reasons
    assert v.refused.kernel_count == 5 and v.refused.expected_share == 1


def fixture_file(tmp_path: Path, cluster: synth.ClusterSpec) -> Path:
    """NODE's generated rules as a capture file: a ``# kpsim:meta`` first line (as the
    shipped fixtures have), then iptables-save text."""
    meta = json.dumps(dict(node_ruleset(cluster).metadata), sort_keys=True)
    path = tmp_path / "iptables-save.txt"
    path.write_text(f"# kpsim:meta {meta}\n{synth.render_restore(cluster, NODE)}")
    return path


@STATISTICAL
@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_affinity_few_clients_stick(tmp_path: Path) -> None:
    """5 clients × 40 connections through the command: every client keeps its first
    endpoint in the kernel, and kpsim's runs never move one either."""
    path = fixture_file(tmp_path, cluster_of(service(3, session_affinity_seconds=AFFINITY_S)))
    code, out, err = run(
        str(path), "--port", str(PORT), "-n", "200", "--clients", "5", "-o", "json"
    )
    assert out, err
    (node,) = json.loads(out)["nodes"]
    print(f"\n{node['reason']}")
    assert code == 0 and node["agree"] is True, node["reasons"]
    a = node["affinity"]
    assert (a["clients"], a["repeats"]) == (5, 195)
    assert a["changed_kernel"] == 0 and a["changed_kpsim"] == 0 and a["p_value"] == 1
    assert sum(f["kernel_count"] for f in a["first_picks"]) == 5
    assert a["first_pick_p"] == node["p_value"] >= P_MIN


@STATISTICAL
@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_affinity_overflowing_recent_lists() -> None:
    """250 clients over 2 endpoints: each endpoint's recent list holds ip_list_tot (100)
    clients, so some clients fall out and re-pick; kernel and kpsim agree on how often."""
    cap = verification.recent_capacity()
    if 2 * cap >= 250:
        pytest.skip(f"xt_recent ip_list_tot={cap}: 250 clients fit in 2 lists")
    report = verify_generated(sticky_service(2), n=1500, clients=250)
    (v,) = report.nodes
    a = v.affinity
    assert a is not None
    print(f"kernel {a.changed_kernel}/{a.repeats}, kpsim {a.changed_kpsim:.1f}, p {a.p_value:.3g}")
    assert v.agree, v.reasons
    assert a.recent_capacity == cap and a.clients > 200
    assert a.changed_kernel > 0 and a.changed_kpsim > 0
    assert a.first_pick_p >= P_MIN and a.p_value >= P_MIN
    text = verify_text(report)
    assert "203.0.113.10 … 203.0.114.3   198.19.1.1 … 198.19.1.250" in text  # one row


@kernel
@pytest.mark.kernel
@pytest.mark.usefixtures("no_namespace_left_behind")
def test_kernel_bare_dump_uses_the_stand_in_address(tmp_path: Path) -> None:
    """A dump without metadata is replayed at the stand-in node address trace uses, the
    report says so, and the capture's completeness is in the JSON."""
    save = SEED / "ip-10-11-28-53" / "iptables-save.txt"
    bare = tmp_path / "bare.txt"
    bare.write_text(
        "".join(ln for ln in save.read_text().splitlines(True) if "kpsim:meta" not in ln)
    )
    code, out, err = run(str(bare), "--port", "30080", "-n", "60", "-o", "json")
    doc = json.loads(out)
    assert code == 0, err
    (node,) = doc["nodes"]
    assert node["address"] == "198.51.100.10" and node["agree"] is True
    assert any("stand-in local address 198.51.100.10" in n for n in node["notes"])
    assert node["capture"]["complete"] is True and node["diagnostics"] == []
    assert {e["destination"] for e in node["endpoints"]} == {
        "10.11.11.70:80",
        "10.11.16.79:80",
        "10.11.41.25:80",
    }
