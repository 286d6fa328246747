"""Every sentence true: the verdicts and remarks kpsim prints, against the numbers behind
them — a table of cases, edge cases included (the range a verdict prints agrees with the
counts it calls "within"; drops are rules; ties are ties; ETP Local without a local pod)."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest
from click.testing import CliRunner

from kpsim.cli.main import main as cli
from kpsim.simulate import stats

HALF, THIRD = Fraction(1, 2), Fraction(1, 3)
Q = Fraction(1, 2**31)
# kube-proxy's 3-way cascade as the kernel draws it: 715827883/2^31, then half the rest.
K3 = [Fraction(715827883, 2**31), (1 - Fraction(715827883, 2**31)) / 2] * 1
K3 = [K3[0], K3[1], K3[1]]


@pytest.mark.parametrize(
    ("probs", "counts", "kind", "must", "must_not"),
    [
        # within ±0.92 points of 33.33%: "within that", chance
        (K3, [3390, 3319, 3291], "chance", ["is within that", "±0.92 points"], ["outside"]),
        # 34.9% is outside ±0.92 but χ² p ≥ 0.001: the sentence must name it as outside
        (K3, [3221, 3290, 3489], "chance", ["c at 34.89% is outside that", "p = 0.003"],
         ["is within that"]),
        # far out: χ² p < 0.001 → a rare draw of the rules (simulate draws from them)
        ([HALF, HALF], [5160, 4840], "chance", ["a at 51.60% is outside that"], ["within"]),
        ([HALF, HALF], [5400, 4600], "unlikely", ["do not fit that", "rare draw"], ["besides"]),
        # exactly the expected split: within, zero deviation
        ([HALF, HALF], [500, 500], "chance", ["500/500 is within that"], ["outside"]),
        # shares one 2^-31 step apart are the kernel's even split, not a skew
        ([THIRD + Q, THIRD, THIRD - Q], [3333, 3334, 3333], "chance", ["1/3"], ["skewed"]),
        # truly uneven rules: skewed, with digits enough to show the difference
        ([Fraction(33332, 100000), Fraction(33334, 100000), Fraction(33334, 100000)],
         [3333, 3334, 3333], "skewed", ["33.334%", "33.332%"], ["do not fit"]),
        ([Fraction(3, 4), Fraction(1, 4)], [750, 250], "skewed", ["75.00%", "counts match"], []),
        # edges: nothing sampled, one endpoint, few counts
        ([], [], "empty", ["no connection reached an endpoint"], ["chance"]),
        ([Fraction(1)], [7], "single", ["gets every connection"], ["chance"]),
        ([HALF, HALF], [3, 3], "chance", ["3/3 split happens only 5 times in 16"], []),
        ([HALF, HALF], [12, 0], "unlikely", ["rarer than that", "rare draw"], ["besides"]),
    ],
)  # fmt: skip
def test_verdict_sentence_matches_its_numbers(
    probs: list[Fraction], counts: list[int], kind: str, must: list[str], must_not: list[str]
) -> None:
    labels = [chr(ord("a") + i) for i in range(len(probs))]
    v = stats.explain(labels, probs, counts)
    assert v.kind == kind, v.text
    for text in must:
        assert text in v.text, v.text
    for text in must_not:
        assert text not in v.text, v.text
    m = re.search(r"±([\d.]+) points", v.text)
    if m:  # the printed range agrees with the "within"/"outside" claim, share by share
        n, k = sum(counts), len(counts)
        inside = all(abs(c / n * 100 - 100 / k) <= float(m.group(1)) for c in counts)
        assert ("is within that" in v.text) == inside


def test_is_even_uses_the_kernels_quantum() -> None:
    assert stats.is_even(K3)
    assert stats.is_even([THIRD + 2 * Q, THIRD - Q, THIRD])  # 3 rules: 3 steps apart
    assert not stats.is_even([THIRD + 2 * Q, THIRD - 2 * Q, THIRD])


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_simulate_drops_are_rules_and_chi2_skips_them() -> None:
    report = json.loads(_run("simulate", "-n", "3000", "--seed", "7", "-o", "json"))
    text = " ".join(_run("simulate", "-n", "3000", "--seed", "7", "-v").split())
    by = {s["service"]: s for s in report["services"]}
    crystal = by["nodeport-test/ecsdemo-crystal"]
    empty = by["node-test-01/node-test-02-svc"]
    assert empty["chi2_p"] is None  # no endpoint sampled: no test
    assert "the rules DROP every connection" in text
    assert "the rules REJECT every connection" in text
    assert "connections that reached an endpoint" in text
    assert "DROP" not in crystal["verdict"]["text"]
    assert "the rules DROP every connection (" in text


def test_trace_local_policy_keeps_client_ip_only_where_delivered() -> None:
    out = _run("trace", "--port", "30082", "-v")
    drop = [line for line in out.splitlines() if "DROP" in line]
    text = " ".join(out.split())
    assert drop and not any("kept" in line for line in drop)
    assert "client IP kept for 66.67% of connections (33.33% are not delivered)" in text
    assert "masqueraded for 0.00%" not in text
    assert "no random draw" in text  # one endpoint (or a DROP) per node: nothing to chance
    assert "chance" not in text


def test_show_etp_local_without_a_local_pod() -> None:
    report = json.loads(_run("show", "-o", "json"))
    seen = {}
    for i in report["inputs"]:
        for s in i["services"]:
            if s["service"] == "nodeport-test/ecsdemo-crystal":
                seen[i["node"]] = s["traffic_policy_local"]
    assert seen and all(seen.values()), seen


def test_graph_names_no_most_probable_among_ties() -> None:
    text = _run("graph", "--port", "30080")
    assert "most probable:" not in text
    assert "3 outcomes tie at ≈ 33.33% each" in text
    dot = _run(
        "graph", "--port", "30082", "--node", "ip-10-11-28-53.ap-northeast-2.compute.internal"
    )
    assert "most probable: DNAT 10.11.25.102:3000" in dot
