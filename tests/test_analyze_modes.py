"""``lint``, ``diff`` and ``show`` read kube-proxy's nftables mode as they read iptables
mode (``kube.policy``): the seed lab in both modes gives the same findings and no
differences, and kube-proxy's own nftables dump gives the findings its services imply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _paths import REPO
from kpsim import api
from kpsim.cli.main import main
from kpsim.kube.policy import local_drops, policies
from kpsim.kube.services import services
from kpsim.lint import Finding

IPT = REPO / "fixtures/iptables/eks-nodeport-workshop"
NFT = REPO / "fixtures/nftables/eks-nodeport-workshop"
NFT_DUMP = REPO / "tests/data/kube-proxy-nft/overall-nftables-rules.nft"
CRYSTAL = "nodeport-test/ecsdemo-crystal"
NODES = ("ip-10-11-28-53", "ip-10-11-3-14", "ip-10-11-40-87")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)


def findings(path: Path) -> tuple[Finding, ...]:
    return api.lint(api.load([str(path)], all_files=False)).findings


def _keys(found: tuple[Finding, ...]) -> set[tuple[str, str | None, str]]:
    return {(f.code, f.service, f.node.split(".")[0]) for f in found}


def test_lint_finds_the_same_problems_in_both_modes_with_nft_lines() -> None:
    ipt, nft = findings(IPT), findings(NFT)
    assert (
        _keys(nft)
        == _keys(ipt)
        == {("KP001", "node-test-01/node-test-02-svc", n) for n in NODES}
        | {("KP002", CRYSTAL, "ip-10-11-3-14")}
    )
    (hole,) = [f for f in nft if f.code == "KP002"]
    # the @no-endpoint-nodeports lookup in nodeport-endpoints-check, where the drop is
    assert hole.location == f"{NFT}/ip-10-11-3-14/ruleset.nft:92"
    assert "NodePort 30082 is DROPped" in hole.message and "externalTrafficPolicy" in hole.message
    assert "ip-10-11-28-53" in hole.message and "10.11.25.102:3000" in hole.message
    assert "ip-10-11-40-87" in hole.message and "10.11.44.17:3000" in hole.message
    empty = [f for f in nft if f.code == "KP001"]
    assert all(str(f.location).startswith(str(NFT)) for f in empty)
    assert all(f.location and f.location.split(":")[-1] in ("87", "88") for f in empty)
    # nftables words, not iptables chain names
    assert all("kube-proxy REJECTs 172.20.66.201:8080, NodePort 30083" in f.message for f in empty)
    assert not any("KUBE-" in f.message for f in nft)


def test_diff_of_the_seed_lab_across_modes_is_empty() -> None:
    report = api.diff(api.load([str(IPT)]), api.load([str(NFT)]))
    assert report.changes == ()
    assert report.only_left == report.only_right == ()
    code, out, _ = _run("diff", str(IPT), str(NFT))
    assert code == 0 and "no differences" in out


def test_policies_read_alike_in_both_modes() -> None:
    """The same Local policies and masquerade conditions, service by service."""
    for node in NODES:
        ipt = api.load([str(IPT / node)]).nodes[0].primary
        nft = api.load([str(NFT / node)]).nodes[0].primary
        assert policies(ipt, services(ipt)) == policies(nft, services(nft)), node
    nft = api.load([str(NFT / "ip-10-11-3-14")]).nodes[0].primary
    crystal = policies(nft, services(nft))[(CRYSTAL, "tcp")]
    assert crystal.external_local and not crystal.internal_local
    assert crystal.masquerade == {"external: -m addrtype --src-type LOCAL"}


def test_show_reports_crystal_local_on_every_nft_node() -> None:
    for node in NODES:
        code, out, _ = _run("show", str(NFT / node), "-o", "json")
        assert code == 0
        (svc,) = [s for s in json.loads(out)["inputs"][0]["services"] if s["service"] == CRYSTAL]
        assert svc["traffic_policy_local"] is True, node


def test_kube_proxys_own_nft_dump_through_lint() -> None:
    """TestOverallNFTablesRules: svc2 is externalTrafficPolicy Local with no local
    endpoint (its NodePort 3001, external IP and LB IP drop), svc6 has no endpoints
    (REJECT); the other services are sound."""
    found = findings(NFT_DUMP)
    got = sorted(
        (f.code, f.service, f.message.split(": Local black hole: ")[-1][:20]) for f in found
    )
    assert got == [
        ("KP001", "ns6/svc6:p80", "no endpoints: kube-p"),
        ("KP002", "ns2/svc2:p80", "1.2.3.4:80 is DROPpe"),
        ("KP002", "ns2/svc2:p80", "192.168.99.22:80 is "),
        ("KP002", "ns2/svc2:p80", "NodePort 3001 is DRO"),
    ]
    assert all(f.message.startswith("externalTrafficPolicy") for f in found if f.code == "KP002")
    (empty,) = [f for f in found if f.code == "KP001"]
    assert "kube-proxy REJECTs 172.30.0.46:80" in empty.message
    rs = api.load([str(NFT_DUMP)]).nodes[0].primary
    assert {(d.service, d.external) for d in local_drops(rs)} == {("ns2/svc2:p80", True)}
    pol = policies(rs, services(rs))
    assert pol[("ns2/svc2:p80", "tcp")].external_local
    assert not any(p.external_local for k, p in pol.items() if k[0] != "ns2/svc2:p80")
    # masquerade: off-cluster clients of a cluster IP (masqueradeAll off, cluster CIDR
    # 10.0.0.0/8), every external client unless the policy is Local
    assert pol[("ns1/svc1:p80", "tcp")].masquerade == {
        "cluster IP: ! -s 10.0.0.0/8 -d 172.30.0.41/32"
    }
    assert pol[("ns3/svc3:p80", "tcp")].masquerade == {
        "cluster IP: ! -s 10.0.0.0/8 -d 172.30.0.43/32",
        "external: every packet",
    }
    assert "external: -m addrtype --src-type LOCAL" in pol[("ns2/svc2:p80", "tcp")].masquerade


def test_iptables_and_nft_dumps_of_kube_proxy_mean_the_same_masquerade() -> None:
    """kube-proxy's iptables and nftables TestOverallRules share svc1 (a cluster IP with
    cluster CIDR 10.0.0.0/8): the same condition, spelled alike."""
    ipt = api.load([str(REPO / "tests/data/kube-proxy/overall-iptables-rules.txt")])
    nft = api.load([str(NFT_DUMP)])
    a, b = ipt.nodes[0].primary, nft.nodes[0].primary
    pa = policies(a, services(a))[("ns1/svc1:p80", "tcp")]
    pb = policies(b, services(b))[("ns1/svc1:p80", "tcp")]
    assert pa.masquerade == pb.masquerade == {"cluster IP: ! -s 10.0.0.0/8 -d 172.30.0.41/32"}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_an_edited_numgen_map_is_a_duplicate_and_a_fall_through(tmp_path: Path) -> None:
    """A hand edit of a service- chain's numgen map: bucket 2 dropped and bucket 1 sent
    to the endpoint of bucket 0: 10.11.11.70 twice, and 1/3 of new connections matched
    by no bucket (they leave the chain undecided)."""
    text = (NFT / "ip-10-11-28-53/ruleset.nft").read_text()
    svc = "node-test-01/node-test-01-svc/tcp/"
    first = f"0 : goto endpoint-O7XYNQBL-{svc}__10.11.11.70/80"
    rest = (f", 1 : goto endpoint-ARBBKUCL-{svc}__10.11.16.79/80, "
            f"2 : goto endpoint-Y2SXN7JQ-{svc}__10.11.41.25/80 }}")  # fmt: skip
    assert text.count(first + rest) == 1
    path = tmp_path / "ruleset.nft"
    path.write_text(text.replace(first + rest, first + ", " + first.replace("0 :", "1 :") + " }"))
    found = findings(path)
    got = {(f.code, f.service, f.location) for f in found if f.code in ("KP004", "KP008")}
    assert got == {
        ("KP004", "node-test-01/node-test-01-svc", f"{path}:223"),
        ("KP008", "node-test-01/node-test-01-svc", f"{path}:223"),
    }
    (falls,) = [f for f in found if f.code == "KP004"]
    assert "66.6667% in all; 33.3333%" in falls.message and "numgen" in falls.message
    # the unedited capture has neither
    assert not {f.code for f in findings(NFT / "ip-10-11-28-53")} & {"KP003", "KP004", "KP008"}
