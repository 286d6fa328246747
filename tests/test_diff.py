"""``kpsim diff``: the seed lab's two snapshots (tests/data/snapshots, made by
``python -m kpsim.inputs.regen --snapshots`` through the real iptables-restore/-save):
node-test-01 scaled 3 → 5 on two nodes, ip-10-11-3-14 lagging with 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from _paths import REPO
from kpsim import api
from kpsim.cli.main import main
from kpsim.model import PROBABILITY_SCALE
from kpsim.verify import netns

SNAP = REPO / "tests/data/snapshots"
SEED = REPO / "fixtures/iptables/eks-nodeport-workshop"
SVC = "node-test-01/node-test-01-svc (tcp)"
OLD = ["10.11.11.70:80", "10.11.16.79:80", "10.11.41.25:80"]
NEW = ["10.11.30.61:80", "10.11.47.203:80"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def _kernel_share(probabilities: list[float], i: int) -> Fraction:
    """Rule i's exact share with p = round(p · 2^31) / 2^31, as the kernel draws."""
    left = Fraction(1)
    for p in probabilities[:i]:
        left *= 1 - Fraction(round(p * PROBABILITY_SCALE), PROBABILITY_SCALE)
    p = probabilities[i] if i < len(probabilities) else 1.0
    return left * Fraction(round(p * PROBABILITY_SCALE), PROBABILITY_SCALE)


def test_snapshots_differ_by_exactly_the_scale_up() -> None:
    report = api.diff(api.load([str(SNAP / "before")]), api.load([str(SNAP / "after")]))
    got = sorted((c.node.split(".")[0], c.kind, c.service, c.subject) for c in report.changes)
    scaled = ("ip-10-11-28-53", "ip-10-11-40-87")  # ip-10-11-3-14 lags: no change there
    want = sorted(
        [(n, "endpoint-added", SVC, ep) for n in scaled for ep in NEW]
        + [(n, "share-changed", SVC, ep) for n in scaled for ep in OLD]
    )
    assert got == want
    assert report.only_left == report.only_right == ()
    # exact shares: kube-proxy's 0.33333333349, 0.5 before; 0.2, 0.25, 0.33333333349, 0.5 after
    shares = {(c.node, c.subject): (c.before_exact, c.after_exact) for c in report.changes}
    before = [_kernel_share([0.33333333349, 0.5], i) for i in range(3)]
    after = [_kernel_share([0.2, 0.25, 0.33333333349, 0.5], i) for i in range(5)]
    n1 = next(c.node for c in report.changes)
    assert shares[(n1, "10.11.11.70:80")] == (before[0], after[0])
    assert all(abs(a - Fraction(1, 5)) < Fraction(1, 10**8) for a in after)
    assert sum(after) == 1 and sum(before) == 1


def test_nodes_of_one_snapshot_name_the_lagging_node() -> None:
    report = api.diff_nodes(api.load([str(SNAP / "after")]))
    (lag,) = report.changes
    assert (lag.kind, lag.node.split(".")[0], lag.service) == (
        "endpoints-differ",
        "ip-10-11-3-14",
        SVC,
    )
    assert lag.subject == "2 of 3 nodes" and lag.after == ", ".join(OLD)
    assert lag.before == ", ".join(sorted(OLD + NEW))
    code, out, _ = run("diff", "--nodes", str(SNAP / "after"))
    assert code == 0
    # folded at the width (80 here): the words, in order, across the fold
    words = " ".join(out.split())
    assert "3 here, 5 on 2 of 3 nodes: lacks 10.11.30.61:80, 10.11.47.203:80" in words
    # the lab before the scale-up: ETP Local differs per node by design, yet agrees
    assert api.diff_nodes(api.load([str(SNAP / "before")])).changes == ()
    assert api.diff_nodes(api.load([str(SEED)])).changes == ()


def test_a_capture_against_itself_is_empty() -> None:
    for path in (SEED, SNAP / "after", REPO / "tests/data/kube-proxy/overall-iptables-rules.txt"):
        loaded = api.load([str(path)])
        assert api.diff(loaded, loaded).changes == ()
    code, out, _ = run("diff", str(SEED), str(SEED))
    assert code == 0 and out.endswith("no differences\n")


def test_reordered_rules_are_no_difference(tmp_path: Path) -> None:
    """By meaning, not by text: KUBE-SERVICES rules in another order, the file's
    line numbers all shifted."""
    src = (SEED / "ip-10-11-28-53/iptables-save.txt").read_text().splitlines()
    nat = src.index("*nat")
    services = [
        i for i, line in enumerate(src) if i > nat and line.startswith("-A KUBE-SERVICES -d")
    ]
    assert len(services) == 8
    moved = [src[i] for i in services]
    out = [line for i, line in enumerate(src) if i not in services]
    at = services[0]
    out[at:at] = list(reversed(moved))
    out.insert(1, "# a comment line that shifts every line")
    (tmp_path / "a.txt").write_text("\n".join(out) + "\n")
    a = api.load([str(SEED / "ip-10-11-28-53/iptables-save.txt")])
    assert api.diff(a, api.load([str(tmp_path / "a.txt")])).changes == ()


def test_policy_affinity_and_masquerade_changes(tmp_path: Path) -> None:
    src = (SEED / "ip-10-11-28-53/iptables-save.txt").read_text()
    changed = src.replace("--seconds 10800", "--seconds 600").replace(
        '-m comment --comment "masquerade traffic for node-test-01/node-test-01-svc external '
        'destinations" -j KUBE-MARK-MASQ',
        '-s 10.0.0.0/8 -m comment --comment "masquerade traffic for node-test-01/node-test-01-svc '
        'external destinations" -j KUBE-MARK-MASQ',
    )
    assert changed.count("--seconds 600") >= 1
    (tmp_path / "b.txt").write_text(changed)
    report = api.diff(api.load([str(SEED / "ip-10-11-28-53/iptables-save.txt")]),
                      api.load([str(tmp_path / "b.txt")]))  # fmt: skip
    got = {(c.kind, c.service, c.before, c.after) for c in report.changes}
    nodejs = "nodeport-test/ecsdemo-nodejs (tcp)"
    assert got == {
        ("affinity-changed", nodejs, "ClientIP 10800s", "ClientIP 600s"),
        ("masquerade-changed", SVC, "external: every packet", "external: -s 10.0.0.0/8"),
    }


def test_json_schema_and_text() -> None:
    code, out, _ = run("diff", "-o", "json", str(SNAP / "before"), str(SNAP / "after"))
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "kpsim/diff/v1" and doc["mode"] == "captures"
    assert out == json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n"
    assert len(doc["changes"]) == 10
    for node in {c["node"] for c in doc["changes"]}:
        mine = [c for c in doc["changes"] if c["node"] == node]
        # the five endpoints' exact shares after the scale-up add up to exactly 1
        assert sum(Fraction(c["after_exact"]) for c in mine) == 1
        assert all(c["before_exact"] is None for c in mine if c["kind"] == "endpoint-added")
    code, out, _ = run("diff", str(SNAP / "before"), str(SNAP / "after"))
    assert "+ endpoint 10.11.30.61:80  20.0000%" in out
    assert "~ share 10.11.16.79:80  33.3333% → 20.0000%" in out and out.endswith("10 differences\n")


def test_bad_input_exits_2(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_text("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m bogus --what -j\nCOMMIT\n")
    code, _, err = run("diff", "--strict", str(dump), str(SEED))
    assert code == 2 and f"{dump}:3:" in err and "Traceback" not in err
    assert run("diff", str(SEED))[0] == 2
    assert run("diff", "--nodes", str(SEED), str(SEED))[0] == 2


@pytest.mark.kernel
@pytest.mark.skipif(not netns.available(), reason="needs root, ip and iptables")
def test_committed_snapshots_match_regen(tmp_path: Path) -> None:
    """The snapshots are what the generator and the real iptables-restore/-save give."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "kpsim.inputs.regen", "--snapshots", str(tmp_path)],
        capture_output=True, text=True, timeout=240, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.txt"))
    assert produced == sorted(p.relative_to(SNAP) for p in SNAP.rglob("*.txt"))
    assert len(produced) == 6
    for rel in produced:
        assert (tmp_path / rel).read_bytes() == (SNAP / rel).read_bytes(), rel
    # the lagging node's capture is the one from before the scale-up
    lag = "ip-10-11-3-14/iptables-save.txt"
    assert (SNAP / "after" / lag).read_bytes() == (SNAP / "before" / lag).read_bytes()


def test_a_cut_capture_is_not_comparable_rather_than_removed() -> None:
    """The capture cut at line 124 lost every KUBE-SVC rule: nothing was removed, the
    services' endpoints are out of sight."""
    whole = api.load([str(SEED / "ip-10-11-28-53/iptables-save.txt")])
    cut = api.load([str(REPO / "fixtures/damaged/cut-mid-line.txt")])
    for before, after, side in ((whole, cut, "after"), (cut, whole, "before")):
        changes = api.diff(before, after).changes
        assert len(changes) == 8
        assert {(c.kind, c.before) for c in changes} == {("service-not-captured", side)}


def test_two_nodes_that_disagree_have_no_majority() -> None:
    """Two captures of the same node name (before and after): both values are listed,
    each under its own path."""
    node = "ip-10-11-28-53/iptables-save.txt"
    loaded = api.load([str(SNAP / "before" / node), str(SNAP / "after" / node)])
    changes = api.diff_nodes(loaded).changes
    assert {(c.kind, c.subject, c.before) for c in changes} == {
        ("endpoints-differ", "no majority", None)
    }
    assert len({c.node for c in changes}) == 2 and {len(c.after.split(", ")) for c in changes} == {
        3,
        5,
    }


def test_docs_show_what_the_commands_print() -> None:
    doc = (REPO / "docs/analyze.md").read_text()
    for args in (
        ["lint"],
        ["diff", "tests/data/snapshots/before", "tests/data/snapshots/after"],
        ["diff", "--nodes", "tests/data/snapshots/after"],
    ):
        out = run(*args)[1]
        assert f"$ kpsim {' '.join(args)}\n{out}```" in doc, args


def test_internal_traffic_policy_local_on_kube_proxys_own_dumps() -> None:
    """kube-proxy's rules_test: the same service with internalTrafficPolicy Cluster, then
    Local: cluster-IP traffic now only reaches the local endpoint, and the masquerade
    rule moved from KUBE-SVC to KUBE-SVL unchanged (so no masquerade change)."""
    kp = REPO / "tests/data/kube-proxy"
    report = api.diff(api.load([str(kp / "internal-traffic-policy-cluster.txt")]),
                      api.load([str(kp / "internal-traffic-policy-local.txt")]))  # fmt: skip
    got = sorted((c.kind, c.subject) for c in report.changes)
    assert got == [
        ("endpoint-removed", "10.0.1.1:80"),
        ("endpoint-removed", "10.0.1.2:80"),
        ("endpoint-removed", "10.0.1.3:80"),
        ("local-endpoint-added", "10.0.1.1:80"),
        ("policy-changed", "policy"),
    ]
    (policy,) = [c for c in report.changes if c.kind == "policy-changed"]
    assert policy.after == "externalTrafficPolicy Cluster, internalTrafficPolicy Local"
