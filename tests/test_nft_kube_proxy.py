"""kube-proxy's nftables mode: the seed lab's nftables fixtures (made through the real
kernel by kpsim.inputs.nft_regen) answer the seed questions exactly as the iptables-mode
fixtures do, numgen shares are the kernel's integers over 2^32, and bad input is exit 2."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from kpsim.cli.main import main as cli
from kpsim.formats import load_file, parse_text
from kpsim.formats.nft.kube_proxy import is_kube_proxy_nft
from kpsim.kube import services as kube
from kpsim.kube.mode import ProxyMode, proxy_mode
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import HookEntry, Verdict
from kpsim.model.nft import NUMGEN_SCALE, NumgenMatch, numgen_count

ROOT = Path(__file__).resolve().parents[1]
NFT_SET = ROOT / "fixtures/nftables/eks-nodeport-workshop"
IPT_SET = ROOT / "fixtures/iptables/eks-nodeport-workshop"
NODES = sorted(p.name for p in NFT_SET.iterdir() if p.is_dir())
SEED_PORTS = (30080, 30081, 30082, 30083)
CLUSTER_IPS = (("172.20.177.168", 8080), ("172.20.91.45", 80), ("172.20.66.201", 8080),
               ("172.20.0.10", 53), ("172.20.140.33", 80))  # fmt: skip
SVC = "node-test-01/node-test-01-svc"


def _nft(node: str):  # type: ignore[no-untyped-def]
    return load_file(NFT_SET / node / "ruleset.nft")


def _ipt(node: str):  # type: ignore[no-untyped-def]
    return load_file(IPT_SET / node / "iptables-save.txt")


def _answers(rulesets: dict[str, object], port: int, dest: str | None = None) -> set[tuple]:  # type: ignore[type-arg]
    inputs = [NodeInput(n, rs) for n, rs in rulesets.items()]  # type: ignore[arg-type]
    report = trace_nodes(inputs, TraceRequest(port=port, dest=dest))
    return {
        (node.node, o.outcome.verdict.value, o.outcome.destination, o.outcome.probability,
         o.outcome.masquerade, o.service)
        for node in report.nodes
        for o in node.outcomes
    }  # fmt: skip


def test_fixtures_are_nftables_mode_and_pick_the_endpoint() -> None:
    assert NODES == ["ip-10-11-28-53", "ip-10-11-3-14", "ip-10-11-40-87"]
    for node in NODES:
        rs = _nft(node)
        assert rs.diagnostics == () and rs.capture.complete, node
        found = proxy_mode(rs)
        assert found.mode is ProxyMode.NFTABLES and found.chooses_endpoints


@pytest.mark.parametrize("port", SEED_PORTS)
def test_nodeports_answer_as_in_iptables_mode(port: int) -> None:
    nft = _answers({n: _nft(n) for n in NODES}, port)
    ipt = _answers({n: _ipt(n) for n in NODES}, port)
    assert nft == ipt


def test_a_cluster_ip_on_a_wrong_port_is_rejected_unlike_iptables_mode() -> None:
    """kube-proxy's nftables mode rejects it (cluster-ips-check, "Reject traffic to invalid
    ports of ClusterIPs"); its iptables mode lets it go on unchanged."""
    nft = _answers({"n1": _nft("ip-10-11-28-53")}, 9, "172.20.66.201")
    ipt = _answers({"n1": _ipt("ip-10-11-28-53")}, 9, "172.20.66.201")
    assert {a[1] for a in nft} == {"REJECT"} and {a[1] for a in ipt} == {"ACCEPT"}


@pytest.mark.parametrize(("dest", "port"), CLUSTER_IPS)
def test_cluster_ips_answer_as_in_iptables_mode(dest: str, port: int) -> None:
    nft = _answers({n: _nft(n) for n in NODES}, port, dest)
    ipt = _answers({n: _ipt(n) for n in NODES}, port, dest)
    assert {a[1:5] for a in nft} == {a[1:5] for a in ipt}


def test_30080_has_three_endpoints_with_numgen_shares_over_2_32() -> None:
    rs = _nft("ip-10-11-28-53")
    found = _answers({"n1": rs}, 30080)
    assert {(a[1], a[2], a[3], a[4], a[5]) for a in found} == {
        ("DNAT", ("10.11.11.70", 80), Fraction(1431655766, NUMGEN_SCALE), True, SVC),
        ("DNAT", ("10.11.16.79", 80), Fraction(1431655765, NUMGEN_SCALE), True, SVC),
        ("DNAT", ("10.11.41.25", 80), Fraction(1431655765, NUMGEN_SCALE), True, SVC),
    }
    (svc,) = [s for s in kube.services(rs) if 30080 in s.node_ports]
    assert svc.name == "node-test-01/node-test-01-svc" and svc.cluster_ips == ("172.20.177.168",)
    assert [e.probability * NUMGEN_SCALE for e in svc.endpoints] == [
        1431655766,
        1431655765,
        1431655765,
    ]


@pytest.mark.parametrize("modulus", [1, 2, 3, 5, 7, 10, 1000, 2**31 + 1])
def test_numgen_counts_are_the_kernels_reciprocal_scale(modulus: int) -> None:
    counts = [numgen_count(modulus, k) for k in range(min(modulus, 50))]
    if modulus <= 50:
        assert sum(counts) == NUMGEN_SCALE
    for k, count in enumerate(counts):  # r lands in bucket ⌊r·N/2^32⌋ (reciprocal_scale)
        first = next_r = -(-k * NUMGEN_SCALE // modulus)
        next_r = -(-(k + 1) * NUMGEN_SCALE // modulus)
        assert count == next_r - first
        assert (first * modulus) >> 32 == k and ((next_r - 1) * modulus) >> 32 == k
    cascade = [NumgenMatch(3, k, tuple(range(k))).chance for k in range(3)]
    assert cascade[-1] == 1 and cascade[0] == Fraction(1431655766, NUMGEN_SCALE)


def test_cli_trace_and_simulate_on_the_nftables_set() -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["trace", "--port", "30080", "-o", "json", str(NFT_SET)])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    text = json.dumps(doc)
    assert "10.11.11.70" in text and "10.11.41.25" in text and "10.11.16.79" in text
    text_out = runner.invoke(cli, ["trace", "--port", "30080", "-v", str(NFT_SET)])
    assert text_out.exit_code == 0, text_out.output
    assert "bucket 0 of 3: 1431655766/2^32 of the draws" in text_out.output
    assert "bucket 2 of 3: 1431655765/2^32 of the draws" in text_out.output
    assert "kernel integers over 2^32" in text_out.output
    # every share of the table over the one scale the footnote names, none reduced to 2^31
    wide = runner.invoke(cli, ["trace", "--port", "30080", str(NFT_SET)], env={"COLUMNS": "200"})
    assert "1431655766/2^32" in wide.output and "1431655765/2^32" in wide.output
    assert "/2^31" not in wide.output
    sim = runner.invoke(cli, ["simulate", "-n", "10000", "--port", "30080", str(NFT_SET)])
    assert sim.exit_code == 0, sim.output
    assert "node-test-01/node-test-01-svc" in sim.output and "10000 connections" in sim.output


def test_parse_error_has_line_and_column_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nft"
    bad.write_text(
        "add table ip kube-proxy\n"
        "add chain ip kube-proxy services\n"
        "add rule ip kube-proxy services ip daddr 10.0.0.1 frobnicate 3 jump x\n"
    )
    rs = parse_text(bad.read_text(), str(bad))
    (diag,) = rs.diagnostics
    assert (diag.line, diag.col) == (3, 51) and "frobnicate" in diag.message
    out = CliRunner().invoke(
        cli, ["trace", "--strict", "--dest", "10.0.0.1", "--port", "80", str(bad)]
    )
    assert out.exit_code == 2
    assert f"{bad}:3:51:" in out.output


def test_graph_of_a_nodeport_reaches_its_three_endpoint_chains() -> None:
    out = CliRunner().invoke(cli, ["graph", "--port", "30080", str(NFT_SET / "ip-10-11-28-53")])
    assert out.exit_code == 0, out.output
    for ep in ("10.11.11.70/80", "10.11.16.79/80", "10.11.41.25/80"):
        assert f"__{ep}" in out.output
    assert '"chain:nat:services"' in out.output


def test_base_chains_are_walked_in_the_kernels_priority_order() -> None:
    text = "\n".join(
        [
            "table ip kube-proxy {",
            "\tchain a { type filter hook prerouting priority dstnat - 10; policy accept; }",
            "\tchain b { type nat hook prerouting priority dstnat; policy accept; }",
            "\tchain c { type filter hook output priority -90; policy accept; }",
            "\tchain d { type filter hook output priority -110; policy accept; }",
            "\tchain e { type filter hook forward priority filter; policy drop; }",
            "\tchain services {",
            "\t}",
            "\tchain nat-prerouting {",
            "\t}",
            "}",
        ]
    )
    rs = parse_text(text, "prio.nft")
    slots = {
        (t, c): [r.target.chain for r in rs.chain(t, c).rules]  # type: ignore[union-attr]
        for t, c in [("mangle", "PREROUTING"), ("nat", "PREROUTING"), ("filter", "OUTPUT"),
                     ("mangle", "OUTPUT"), ("filter", "FORWARD")]
    }  # fmt: skip
    assert slots == {
        ("mangle", "PREROUTING"): ["a"],  # -110: before DNAT (-100)
        ("nat", "PREROUTING"): ["b"],
        ("filter", "OUTPUT"): ["c"],  # -90: after nat OUTPUT (-100)
        ("mangle", "OUTPUT"): ["d"],
        ("filter", "FORWARD"): ["e"],
    }
    (entry,) = rs.chain("filter", "FORWARD").rules  # type: ignore[union-attr]
    assert isinstance(entry.target, HookEntry) and entry.target.policy is Verdict.DROP


@pytest.mark.parametrize(
    "line",
    [
        "\tchain y",
        "add set ip kube-proxy s",
        "add element ip kube-proxy s } {",
        "add rule ip kube-proxy services numgen random mod 0 vmap { 0 : goto x }",
        "add chain ip kube-proxy q { type nat hook prerouting priority banana ; }",
        "add rule ip kube-proxy services mark set mark or zz",
        'add rule ip kube-proxy services comment "unterminated',
        "add element ip kube-proxy service-ips { 1.1.1.1 . tcp . 99999 : goto z }",
    ],
)
def test_damaged_lines_are_diagnostics_or_exit_2_never_a_crash(line: str) -> None:
    text = (NFT_SET / "ip-10-11-28-53" / "ruleset.nft").read_text()
    head, _, rest = text.partition("\tchain services {")
    damaged = head + line + "\n\tchain services {" + rest
    rs = parse_text(damaged, "damaged.nft")  # lenient: kept going
    kube.services(rs)
    _answers({"n1": rs}, 30080)
    out = CliRunner().invoke(cli, ["trace", "--strict", "--port", "30080", "-"], input=damaged)
    assert out.exit_code in (0, 2), out.output
    assert "internal error" not in out.output


def test_dnat_through_a_numgen_map_has_the_same_exact_shares() -> None:
    """The shape proposed for kube-proxy (one rule, DNAT by a numgen-keyed map)."""
    text = (
        "add table ip kube-proxy\n"
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n"
        "add chain ip kube-proxy services\n"
        "add rule ip kube-proxy nat-prerouting jump services\n"
        "add rule ip kube-proxy services ip daddr 172.30.0.9 tcp dport 80 dnat to numgen random"
        " mod 3 map { 0 : 10.0.0.1 . 80, 1 : 10.0.0.2 . 80, 2 : 10.0.0.3 . 8080 }\n"
    )
    found = _answers({"n": parse_text(text, "map.nft")}, 80, "172.30.0.9")
    assert {(a[2], a[3]) for a in found} == {
        (("10.0.0.1", 80), Fraction(1431655766, NUMGEN_SCALE)),
        (("10.0.0.2", 80), Fraction(1431655765, NUMGEN_SCALE)),
        (("10.0.0.3", 8080), Fraction(1431655765, NUMGEN_SCALE)),
    }


def test_session_affinity_sticks_as_in_iptables_mode() -> None:
    """``ip saddr @affinity-…`` / ``update @affinity-… { ip saddr }`` are recent --rcheck /
    --set: simulate keeps a client on its pod, as for the iptables fixtures."""
    args = ["simulate", "-n", "2000", "--dest", "172.20.91.45", "--port", "80", "--seed", "1"]
    lines = []
    for fixtures in (NFT_SET, IPT_SET):
        out = CliRunner().invoke(cli, [*args, str(fixtures)], env={"COLUMNS": "200"})
        assert out.exit_code == 0, out.output
        lines.append([ln for ln in out.output.splitlines() if "session affinity" in ln])
    assert lines[0] == lines[1] and lines[0]
    assert "(10800s)" in lines[0][0] and "0.0% of repeat visits changed pod" in lines[0][0]
    rs = _nft("ip-10-11-28-53")
    (svc,) = [s for s in kube.services(rs) if s.name == "nodeport-test/ecsdemo-nodejs"]
    assert svc.affinity_seconds == 10800
    report = trace_nodes(
        [NodeInput("n1", rs)],
        TraceRequest(80, "172.20.91.45", affinity=("10.11.9.41:3000",)),
    )
    assert [o.destination for o in report.nodes[0].outcomes] == ["10.11.9.41:3000"]


def test_an_accept_ends_only_its_base_chain_and_a_policy_drop_ends_the_hook() -> None:
    """Each base chain is its own hook entry in the kernel: ``accept`` (even from a chain
    jumped to) goes on to the next base chain at the hook, and a base chain's end or
    ``return`` is its own policy (tests/test_verify_nft_kernel.py checks a case in the
    kernel)."""
    text = "\n".join(
        [
            "table ip kube-proxy {",
            "\tchain a {\n\t\ttype filter hook input priority 0; policy accept;",
            "\t\ttcp dport 80 jump x\n\t\ttcp dport 81 return\n\t}",
            "\tchain x {\n\t\taccept\n\t}",
            "\tchain b {\n\t\ttype filter hook input priority 10; policy drop;",
            "\t\ttcp dport 22 accept\n\t\ttcp dport 81 accept\n\t}",
            "}",
            "",
        ]
    )
    rs = parse_text(text, "entries.nft")
    assert rs.diagnostics == ()

    def verdicts(port: int) -> set[str]:
        report = trace_nodes([NodeInput("n", rs)], TraceRequest(port=port, dest="127.0.0.1"))
        return {o.outcome.verdict.value for o in report.nodes[0].outcomes}

    assert verdicts(80) == {"DROP"}  # x's accept ends a; b's policy drops
    assert verdicts(22) == {"LOCAL"}  # a's end: its policy accept; b accepts
    assert verdicts(81) == {"LOCAL"}  # a's return: its policy; b accepts


_WHOLE = (NFT_SET / "ip-10-11-28-53" / "ruleset.nft").read_text().splitlines(keepends=True)


@pytest.mark.parametrize("cut", range(20, len(_WHOLE), 9))
def test_a_cut_listing_never_invents_an_answer(cut: int) -> None:
    """``nft list ruleset`` cut after line ``cut`` (inside a set, a chain, before the base
    chains): every answer is the whole listing's or UNKNOWN. Before, a listing that ended
    inside a block counted as showing every table, so a NodePort whose chains came after
    the cut was LOCAL, and a chain cut short simply ended."""
    whole = parse_text("".join(_WHOLE), "whole.nft")
    part = parse_text("".join(_WHOLE[:cut]), "cut.nft")
    prefix = "".join(_WHOLE[:cut])
    if prefix.count("{") == prefix.count("}"):  # cut between two tables: nothing is open
        pytest.skip("the cut falls outside every block")
    last = len(prefix.rstrip().splitlines())  # the cut is at the last line with text
    assert part.capture.all_tables is False and part.capture.cut_at == last

    def outcomes(rs: object, port: int) -> set[tuple[object, ...]]:
        report = trace_nodes([NodeInput("n", rs)], TraceRequest(port=port))  # type: ignore[arg-type]
        return {(o.outcome.verdict.value, o.outcome.destination, o.outcome.probability,
                 o.outcome.masquerade) for o in report.nodes[0].outcomes}  # fmt: skip

    for port in (30080, 30081, 30082, 30083):
        full = outcomes(whole, port)
        for verdict, dest, p, masq in outcomes(part, port):
            if verdict == "UNKNOWN":
                continue
            assert any((verdict, dest, p) == w[:3] and masq in (None, w[3]) for w in full), (
                port, verdict, dest, p, masq)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("add table ip kube-proxy\nadd table ip nat\n", True),  # found first: no more read
        ("add table ip nat\nadd table ip kube-proxy\n", True),
        ("table ip nat {\n}\n", False),
        ("# table ip kube-proxy\ntable ip nat {\n}\n", False),  # not a line's head
        ("table ip filter {\n}\n  table inet kube-proxy {\n}\n", True),
        ("add rule ip kube-proxy x jump y\n", True),  # no table line: named in a command
        ("add rule ip filter x jump y\n", False),
    ],
)
def test_kube_proxys_table_is_told_from_the_tables_named(text: str, expected: bool) -> None:
    assert is_kube_proxy_nft(text) is expected
