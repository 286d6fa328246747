"""Observed counts against the rules (kpsim counters, simulate --observed, why): the
verdict's words against its own numbers, the shipped counter captures (taken for real in
namespaces, tests/data/counters/README.md), the keep-alive arithmetic, parser errors."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import chisquare

from kpsim.cli.main import LAZY_COMMANDS, main
from kpsim.errors import UsageError
from kpsim.explain.counters import count
from kpsim.explain.fit import fit
from kpsim.formats import load_file
from kpsim.simulate.reuse import idle_chance, simulate_reuse

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests/data/counters"
SEED = REPO / "fixtures/iptables/eks-nodeport-workshop"
THIRD = Fraction(1, 3)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def doctored(tmp_path: Path, moved: int = 150) -> Path:
    """after.txt with ``moved`` connections taken from the first endpoint's jump rule
    (NodePort 30080) and given to the last one's: what a skewed picker would leave."""
    lines = (DATA / "after.txt").read_text().splitlines(keepends=True)
    jump = re.compile(r"^\[(\d+):(\d+)\] (-A KUBE-SVC-6FADE4ADMXCZ7ACT .*)$")
    rows = [i for i, line in enumerate(lines) if jump.match(line)]
    assert len(rows) == 3
    for i, delta in ((rows[0], -moved), (rows[-1], moved)):
        m = jump.match(lines[i])
        assert m is not None
        lines[i] = f"[{int(m.group(1)) + delta}:{m.group(2)}] {m.group(3)}\n"
    out = tmp_path / "doctored.txt"
    out.write_text("".join(lines))
    return out


def jump_counts(path: Path) -> list[int]:
    text = path.read_text()
    return [int(x) for x in re.findall(r"^\[(\d+):\d+\] -A KUBE-SVC-6FADE4ADMXCZ7ACT ", text, re.M)]


# ---------------------------------------------------------------- the verdict vs its numbers


def words_match_numbers(f_verdict: str, p: float | None, n: int) -> None:
    assert f"n = {n}" in f_verdict
    if p is not None:
        assert f"p = {p:.3g}" in f_verdict
        assert ("not consistent" in f_verdict) == (p < 0.01)


def test_consistent_counts_quote_their_numbers() -> None:
    f = fit(["a", "b", "c"], [THIRD] * 3, [98, 105, 97])
    assert f.kind == "consistent" and f.consistent is True and f.method == "chi2"
    ref = chisquare([98, 105, 97], [100, 100, 100])
    assert f.statistic == pytest.approx(ref.statistic) and f.p_value == pytest.approx(ref.pvalue)
    words_match_numbers(f.verdict, f.p_value, 300)
    assert f"χ² = {ref.statistic:.2f}" in f.verdict


def test_all_on_one_pod_is_not_consistent() -> None:
    f = fit(["a", "b", "c"], [THIRD] * 3, [300, 0, 0])
    assert f.kind == "not-consistent" and f.consistent is False
    assert f.p_value is not None and f.p_value < 1e-50
    words_match_numbers(f.verdict, f.p_value, 300)
    assert "a got 100.0% where the rules give 33.3%" in f.verdict


def test_no_data_is_not_a_verdict() -> None:
    f = fit(["a", "b"], [Fraction(1, 2)] * 2, [0, 0])
    assert f.kind == "no-data" and f.consistent is None and f.p_value is None
    assert "n = 0" in f.verdict and "consistent" not in f.verdict


def test_one_endpoint() -> None:
    f = fit(["only"], [Fraction(1)], [42])
    assert f.kind == "single" and f.consistent is True and "n = " not in f.verdict
    assert "all 42 connections went there" in f.verdict
    stray = fit(["only", "gone"], [Fraction(1), Fraction(0)], [40, 2])
    assert stray.kind == "impossible" and stray.consistent is False
    assert "gone (2)" in stray.verdict and "share of 0" in stray.verdict


def test_small_n_uses_the_exact_test() -> None:
    f = fit(["a", "b", "c"], [THIRD] * 3, [6, 0, 0])
    assert f.method == "exact"
    # P(split at most as likely as 6/0/0) = 3 · (1/3)^6 = 1/243
    assert f.p_value == pytest.approx(3 / 3**6)
    words_match_numbers(f.verdict, f.p_value, 6)


# ---------------------------------------------------------------- counters on real captures


def test_real_counters_are_consistent() -> None:
    rep = count([load_file(DATA / "after.txt")], "n", port=30080)
    (c,) = rep.cascades
    assert c.fit is not None
    assert [e.picked for e in c.endpoints] == jump_counts(DATA / "after.txt")
    assert [e.dnat for e in c.endpoints] == jump_counts(DATA / "after.txt")  # no affinity
    assert c.fit.n == 1200 and c.fit.consistent is True
    words_match_numbers(c.fit.verdict, c.fit.p_value, 1200)


def test_doctored_counters_are_flagged(tmp_path: Path) -> None:
    rep = count([load_file(doctored(tmp_path))], "n", port=30080)
    (c,) = rep.cascades
    assert c.fit is not None and c.fit.consistent is False and c.fit.n == 1200
    code, out, _ = run("counters", str(doctored(tmp_path)), "--port", "30080")
    assert code == 0 and "not consistent with the rules at the 1% level" in out


def test_difference_of_two_captures() -> None:
    earlier, later = load_file(DATA / "before.txt"), load_file(DATA / "after.txt")
    rep = count([earlier, later], "n", port=30081)
    (c,) = rep.cascades
    assert c.fit is not None and c.fit.n == 600  # the second batch alone
    assert rep.difference and c.fit.consistent is True


def test_counter_going_down_is_refused() -> None:
    earlier, later = load_file(DATA / "before.txt"), load_file(DATA / "after.txt")
    with pytest.raises(UsageError, match="counter went down"):
        count([later, earlier], "n")
    code, _, err = run("counters", str(DATA / "after.txt"), str(DATA / "before.txt"))
    assert code == 2 and "counter went down" in err and "another node" in err


def test_capture_without_counters_says_so() -> None:
    rep = count([load_file(SEED / "ip-10-11-28-53/iptables-save.txt")], "n", port=30080)
    assert not rep.has_counters and "not zero" in rep.notes[0]
    assert all(c.fit is None for c in rep.cascades)
    assert all(e.picked is None for c in rep.cascades for e in c.endpoints)


def test_listing_counters() -> None:
    """``iptables -L -v -x`` (taken with after.txt) counts the same connections."""
    rep = count([load_file(DATA / "after-nat-L.txt")], "n", port=30080)
    (c,) = rep.cascades
    assert [e.picked for e in c.endpoints] == jump_counts(DATA / "after.txt")
    assert c.fit is not None and c.fit.n == 1200 and c.fit.consistent is True


def test_counters_json() -> None:
    code, out, _ = run("counters", str(DATA / "after.txt"), "--port", "30080", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == "kpsim/counters/v1"
    (svc,) = doc["nodes"][0]["services"]
    assert svc["fit"]["consistent"] is True and svc["fit"]["n"] == 1200
    assert out == json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n"
    assert "counters" in LAZY_COMMANDS and "why" in LAZY_COMMANDS


# ---------------------------------------------------------------- connection reuse


def test_keep_alive_three_pods_four_connections() -> None:
    """3 pods, 4 connections × 1,000 requests: request shares are multiples of 1/4, never
    1/3, and some pod gets nothing 5 times in 9."""
    assert idle_chance([THIRD] * 3, 4) == Fraction(5, 9)
    run_ = simulate_reuse([THIRD] * 3, 4, 1_000, np.random.default_rng(7), trials=4_000)
    shares = [c / 4_000 for c in run_.request_counts]
    assert sum(run_.request_counts) == 4_000
    assert max(abs(s - 1 / 3) for s in shares) >= 1 / 12 - 1e-12
    assert run_.trials_with_idle_pod / run_.trials == pytest.approx(5 / 9, abs=0.03)
    assert run_.mean_max_share > 0.5  # the busiest pod: ≥ 2 of 4 connections on average


def test_why_explains_keep_alive_in_words() -> None:
    code, out, _ = run("why", str(SEED), "--port", "30080")
    assert code == 0
    out = " ".join(out.split())  # the text is wrapped at 100 columns
    assert "4 connections × 1,000 requests" in out
    assert "per connection, not per request" in out and "(≈ 5/9)" in out
    shares = [float(x) for x in re.findall(r"10\.11\.\d+\.\d+:80 (\d+)%", out)][:3]
    assert len(shares) == 3 and all(abs(s - 100 / 3) > 8 for s in shares)


def test_why_on_doctored_counters(tmp_path: Path) -> None:
    code, out, _ = run("why", str(doctored(tmp_path)), "--port", "30080", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "kpsim/why/v1"
    status = {c["key"]: c["status"] for c in doc["causes"]}
    # rule counters count connections: reuse cannot skew them, and kpsim says what can
    assert status["noise"] == "ruled-out" and status["reuse"] == "ruled-out"
    assert "edited or reset part-way" in doc["notes"][0]
    assert status["affinity"] == "ruled-out" and doc["fit"]["consistent"] is False
    ranks = [c["status"] for c in doc["causes"]]
    assert ranks == sorted(ranks, key=["explains", "likely", "possible", "ruled-out"].index)
    assert all(c["doc_term"] for c in doc["causes"])


def test_why_on_observed_requests_ranks_reuse_first() -> None:
    keepalive = str(DATA / "observed-keepalive.csv")
    code, out, _ = run("why", str(SEED), "--port", "30080", "--observed", keepalive, "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["fit"]["consistent"] is False and doc["fit"]["n"] == 4000
    assert doc["causes"][0]["key"] == "reuse"
    assert doc["causes"][0]["status"] == "likely"
    assert next(c for c in doc["causes"] if c["key"] == "noise")["status"] == "ruled-out"
    fair = str(DATA / "observed.json")
    _, out, _ = run("why", str(SEED), "--port", "30080", "--observed", fair, "-o", "json")
    doc = json.loads(out)
    assert doc["fit"]["consistent"] is True and doc["causes"][0]["key"] == "noise"
    assert doc["causes"][0]["status"] == "explains"


def test_why_affinity_and_etp_local() -> None:
    _, out, _ = run("why", str(SEED), "--service", "nodeport-test/ecsdemo-nodejs", "-o", "json")
    doc = json.loads(out)
    aff = next(c for c in doc["causes"] if c["key"] == "affinity")
    assert aff["status"] == "possible" and aff["numbers"]["seconds"] == 10800
    assert re.search(r"iptables-save\.txt:\d+$", aff["evidence"][0])
    _, out, _ = run("why", str(SEED), "--port", "30082", "-o", "json")
    doc = json.loads(out)
    etp = next(c for c in doc["causes"] if c["key"] == "etp-local")
    assert etp["status"] == "likely" and doc["causes"][0]["key"] == "etp-local"
    assert [n.split(".")[0] for n in etp["numbers"]["drop"]] == ["ip-10-11-3-14"]
    hop = next(c for c in doc["causes"] if c["key"] == "cross-node")
    assert hop["status"] == "ruled-out"


# ---------------------------------------------------------------- observed files


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("pod,count\n10.11.11.70,10\nnope,3\n", ":3:1:", "'nope' is not an endpoint"),
        ("10.11.11.70,ten\n", ":1:13:", "a whole number"),
        ("10.11.11.70,5\n10.11.11.70:80,5\n", ":2:1:", "counted twice (line 1)"),
        ("10.11.11.70 5\n", ":1:1:", "expected pod_or_ip,count"),
        ('{"10.11.11.70": 5,\n "10.11.16.79": -1}\n', ":2:2:", "not a whole number"),
        ('{"10.11.11.70": 5,,}\n', ":1:19:", "invalid JSON"),
    ],
)
def test_observed_file_errors(tmp_path: Path, text: str, where: str, says: str) -> None:
    path = tmp_path / ("obs.json" if text.startswith("{") else "obs.csv")
    path.write_text(text)
    for cmd in (["simulate", "-n", "100", "--seed", "1"], ["why"]):
        code, _, err = run(*cmd, str(SEED), "--port", "30080", "--observed", str(path))
        assert code == 2, err
        assert f"{path}{where}" in err and says in err


def test_observed_by_pod_name_and_ip(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text(
        "# from the access logs\npod,count\n10.11.11.70,340\n"
        "node-test-01-869b8d5f87-fpww5,298\n10.11.41.25:80,362\n"
    )
    code, out, _ = run("simulate", str(SEED), "--port", "30080", "-n", "300", "--seed", "1",
                       "--observed", str(path), "-o", "json")  # fmt: skip
    assert code == 0
    obs = json.loads(out)["observed"]
    assert [c["observed"] for c in obs["cells"]] == [340, 298, 362]
    assert obs["n"] == 1000 and obs["unit"] == "requests" and obs["consistent"] is True
    words_match_numbers(obs["verdict"], obs["p_value"], 1000)


def test_why_udp_conntrack_and_determinism() -> None:
    """kube-dns:dns is UDP behind a ClusterIP only: stale conntrack entries are possible,
    cross-node NodePort hops are ruled out; the same seed prints the same bytes."""
    args = ("why", str(SEED), "--service", "kube-system/kube-dns:dns", "-o", "json")
    _, out, _ = run(*args)
    status = {c["key"]: c["status"] for c in json.loads(out)["causes"]}
    assert status["conntrack"] == "possible" and status["cross-node"] == "ruled-out"
    _, again, _ = run(*args)
    assert again == out
    _, tcp, _ = run("why", str(SEED), "--service", "kube-system/kube-dns:dns-tcp", "-o", "json")
    assert {c["key"]: c["status"] for c in json.loads(tcp)["causes"]}["conntrack"] == "ruled-out"


def test_why_without_endpoints_weighs_no_split() -> None:
    _, out, _ = run("why", str(SEED), "--port", "30083", "-o", "json")
    doc = json.loads(out)
    assert "no endpoints" in doc["notes"][0] and doc["endpoints"] == []
    assert [c["key"] for c in doc["causes"]] == ["topology"]


def test_rounded_listing_counters_are_not_judged(tmp_path: Path) -> None:
    """``-L -v`` without ``-x`` prints 120K for 120,000-odd: such counters are not tested
    (the real listing, one jump counter given a unit as iptables would print it)."""
    text = (DATA / "after-nat-L.txt").read_text()
    row = re.search(r"^1 +(\d+) +(\d+) KUBE-SEP-GT3XY65SJT4AIPQ2 ", text, re.M)
    assert row is not None
    text = text.replace(row.group(0), f"1 {'120K':>11} {'7M':>8} KUBE-SEP-GT3XY65SJT4AIPQ2 ")
    path = tmp_path / "nat-L.txt"
    path.write_text(text)
    rep = count([load_file(path)], "n", port=30080)
    (c,) = rep.cascades
    assert c.endpoints[0].picked == 120_000 and c.fit is None
    assert any("rounded" in n for n in rep.notes) and any("not judged" in n for n in c.notes)
    other = count([load_file(path)], "n", port=30081)  # small counters: printed whole, judged
    assert other.cascades[0].fit is not None


def test_reuse_for_udp_speaks_of_flows_not_keep_alive() -> None:
    """kube-dns (UDP 53): reuse is a socket's conntrack flow pinning datagrams, not HTTP
    keep-alive; TCP 30080 keeps the keep-alive wording."""

    def reuse_text(port: str) -> str:
        out = CliRunner().invoke(main, ["why", "--port", port, "-o", "json"])
        assert out.exit_code == 0, out.output
        (cause,) = [c for c in json.loads(out.output)["causes"] if c["key"] == "reuse"]
        return str(cause["text"])

    udp, tcp = reuse_text("53"), reuse_text("30080")
    assert "datagram" in udp and "keep-alive" not in udp and "flows ×" in udp
    assert "keep-alive" in tcp and "requests" in tcp and "datagram" not in tcp
