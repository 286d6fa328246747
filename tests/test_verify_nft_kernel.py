"""``kpsim verify`` on the seed lab in kube-proxy's nftables mode, against the real kernel
(root, ip, iptables and nft): each node's ``ip kube-proxy`` table, its addresses moved
into 198.18.0.0/15, is loaded with ``nft -f`` in a throw-away node namespace and real
connections are counted. Each test checks that no namespace of this process is left."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kpsim.cli.main import main
from kpsim.formats import parse_text
from kpsim.inputs.nft_regen import load_and_list
from kpsim.verify import netns
from kpsim.verify.replay.mapping import map_ruleset
from kpsim.verify.stats import P_MIN
from test_nft_kernel import _services, canonical
from test_verify import namespaces_of
from test_verify_nft_write import FLIP, written_dump

ROOT = Path(__file__).resolve().parents[1]
NFT_SET = ROOT / "fixtures/nftables/eks-nodeport-workshop"
DROP_NODE = "ip-10-11-3-14"  # no crystal pod here: 30082 (externalTrafficPolicy Local) drops
ENDPOINTS_30080 = ["10.11.11.70:80", "10.11.16.79:80", "10.11.41.25:80"]

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not netns.available() or shutil.which("nft") is None,
        reason="needs root plus ip, iptables and nft",
    ),
]


@pytest.fixture(autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    yield
    assert namespaces_of(os.getpid()) == []


def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["verify", str(NFT_SET), *args, "-o", "json"])
    assert result.stdout, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "kpsim/verify/v1"
    return result.exit_code, doc


@pytest.mark.flaky(reruns=1)  # χ² at p ≥ 0.001: a correct kpsim fails ~1 run in 1,000
def test_nodeport_30080_split_agrees_with_the_kernel() -> None:
    code, doc = verify_json("--port", "30080", "-n", "300")
    assert code == 0, [n["reason"] for n in doc["nodes"]]
    assert doc["agree"] is True and len(doc["nodes"]) == 3
    for node in doc["nodes"]:
        assert node["agree"] is True and node["p_value"] >= P_MIN
        eps = node["endpoints"]
        assert [e["destination"] for e in eps] == ENDPOINTS_30080
        assert sum(e["kernel_count"] for e in eps) == 300
        assert all(e["masquerade_seen"] is e["masquerade_predicted"] is True for e in eps)
        assert node["counters"] == []  # kube-proxy's nft rules keep none: nothing compared
        rows = {r["fixture"]: r["replayed"] for r in node["address_map"]}
        assert ipaddress.ip_network(rows["172.20.0.0/16"]).subnet_of(netns.ALLOWED_NET)
        for replayed in rows.values():
            assert ipaddress.ip_network(replayed).subnet_of(netns.ALLOWED_NET)


def test_local_policy_30082_drops_on_the_node_without_a_local_pod() -> None:
    code, doc = verify_json("--port", "30082", "-n", "10", "--connect-timeout", "0.3")
    assert code == 0, [n["reason"] for n in doc["nodes"]]
    by_node = {n["node"].split(".")[0]: n for n in doc["nodes"]}
    drop = by_node.pop(DROP_NODE)
    assert drop["agree"] and drop["endpoints"] == []
    assert drop["timed_out"]["kernel_count"] == 10 and drop["timed_out"]["expected_share"] == 1
    assert len(by_node) == 2
    for node in by_node.values():
        (e,) = node["endpoints"]
        assert node["agree"] and e["kernel_count"] == 10 and e["masquerade_seen"] is False


@pytest.mark.flaky(reruns=1)
def test_affinity_sets_keep_150_clients_on_their_first_pod() -> None:
    """ecsdemo-nodejs (ClientIP affinity): ``update @affinity-… { ip saddr }`` in the
    kernel keeps every client on its first endpoint; kpsim's sampler, with the sets'
    65535 entries (not xt_recent's 100), predicts no change either."""
    code, doc = verify_json(
        "--port", "80", "--dest", "172.20.91.45", "-n", "450", "--clients", "150",
        "--node", DROP_NODE,
    )  # fmt: skip
    (node,) = doc["nodes"]
    assert code == 0 and node["agree"], node["reason"]
    a = node["affinity"]
    assert a["recent_capacity"] == 65535 and a["changed_kernel"] == 0 and a["repeats"] > 250


def test_a_capture_on_standard_input_is_refused_in_one_line() -> None:
    """The table is written back from its file; a stream cannot be read twice."""
    text = (NFT_SET / DROP_NODE / "ruleset.nft").read_text()
    result = CliRunner().invoke(main, ["verify", "--port", "30080", "-n", "10", "-"], input=text)
    assert result.exit_code == 2, result.output
    assert "give verify the file, not a stream" in result.stderr
    assert "Traceback" not in result.output


def test_kube_proxys_own_dump_written_back_loads_and_lists_back_the_same() -> None:
    """The writer's text is what nft takes: loaded with ``nft -f`` and listed back, kube-
    proxy's TestOverallNFTablesRules table (addresses moved) has the moved model's services
    and chains (nft lists ``ip daddr { 10.0.0.0/16 }`` as ``ip daddr 10.0.0.0/16``, so the
    rules are compared as services, not statement by statement)."""
    dump, text = written_dump()
    listed = parse_text(load_and_list(text), "listed back")
    moved = map_ruleset(dump, FLIP)
    assert listed.diagnostics == ()
    assert _services(listed) == _services(moved) and _services(moved)
    assert canonical(listed).keys() == canonical(moved).keys()


#: iptables-nft rules beside kube-proxy's table, as ``iptables`` commands: the VPC CNI's
#: SNAT RETURN (a /18 here: two /16s would fill 198.18.0.0/15 with the ClusterIP range),
#: a FORWARD DROP of one endpoint, and ip6tables' FORWARD DROP no IPv4 packet passes.
_BESIDE = [
    ["iptables", "-t", "nat", "-A", "POSTROUTING", "-d", "10.11.0.0/18", "-j", "RETURN"],
    ["iptables", "-t", "filter", "-A", "FORWARD", "-d", "10.11.41.25/32", "-p", "tcp",
     "-j", "DROP"],
    ["ip6tables", "-t", "filter", "-A", "FORWARD", "-j", "DROP"],
]  # fmt: skip


def _mixed_capture(tmp_path: Path, extra: list[list[str]], *, saved: bool = False) -> Path:
    """A node's whole ``nft list ruleset`` made in the kernel: kube-proxy's fixture table
    loaded with ``nft -f``, iptables-nft's rules added with ``iptables``; ``saved``: with
    the ``iptables-save`` ``kpsim fetch`` keeps beside it."""
    source = NFT_SET / "ip-10-11-28-53" / "ruleset.nft"
    with netns.Namespace() as ns:
        netns.run(ns.name, ["nft", "-f", str(source)])
        for argv in [*_BESIDE, *extra]:
            netns.run(ns.name, argv)
        listed = netns.run(ns.name, ["nft", "list", "ruleset"]).stdout
        save = netns.run(ns.name, ["iptables-nft-save"]).stdout
    node = tmp_path / "ip-10-11-28-53"
    node.mkdir(parents=True)
    (node / "ruleset.nft").write_text(source.read_text().splitlines()[0] + "\n" + listed)
    if saved:
        (node / "iptables-save.txt").write_text(save)
    return tmp_path


def test_iptables_nft_tables_beside_kube_proxys_are_replayed_and_agree(tmp_path: Path) -> None:
    """iptables-nft's tables are loaded with iptables-nft-restore before kube-proxy's
    table: the endpoint iptables' FORWARD drops times out, as kpsim predicts (1/3)."""
    fixtures = _mixed_capture(tmp_path, [])
    result = CliRunner().invoke(
        main, ["verify", str(fixtures), "--port", "30080", "-n", "45",
               "--connect-timeout", "0.3", "-o", "json"],
    )  # fmt: skip
    doc = json.loads(result.stdout)
    (node,) = doc["nodes"]
    assert result.exit_code == 0 and node["agree"] is True, node.get("reason")
    assert [e["destination"] for e in node["endpoints"]] == ENDPOINTS_30080[:2]
    assert node["timed_out"]["expected_share"] == 1431655765 / 2**32
    assert node["timed_out"]["kernel_count"] > 0
    assert all(e["masquerade_seen"] is True for e in node["endpoints"])
    assert any(
        "replayed with iptables-nft-restore" in n for n in doc.get("notes", node.get("notes", []))
    )


def test_a_statement_kpsim_did_not_translate_beside_is_refused_naming_its_line(
    tmp_path: Path,
) -> None:
    """kubelet's KUBE-FIREWALL conntrack match is listed by nft as ``ct status dnat``,
    which kpsim keeps as unknown: it cannot be written back, so the node is refused —
    unless the node's iptables-save is beside the listing."""
    firewall = [
        ["iptables", "-t", "filter", "-N", "KUBE-FIREWALL"],
        ["iptables", "-t", "filter", "-A", "KUBE-FIREWALL", "-d", "127.0.0.0/8", "!", "-s",
         "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT",
         "-j", "DROP"],
    ]  # fmt: skip
    fixtures = _mixed_capture(tmp_path, firewall)
    result = CliRunner().invoke(main, ["verify", str(fixtures), "--port", "30080", "-n", "5"])
    assert "Traceback" not in result.output
    assert "cannot be replayed with iptables-nft-restore" in result.output + result.stderr
    assert "ruleset.nft:" in result.output + result.stderr
    # with the node's iptables-save beside it (as kpsim fetch saves it), the same tables
    # are replayed from that, whose conntrack match iptables-nft-restore takes back exactly
    again = _mixed_capture(tmp_path / "saved", firewall, saved=True)
    result = CliRunner().invoke(
        main, ["verify", str(again), "--port", "30080", "-n", "30", "-o", "json"]
    )
    (node,) = json.loads(result.stdout)["nodes"]
    assert result.exit_code == 0 and node["agree"] is True, node.get("reason")
    assert "replayed from iptables-save.txt beside the capture" in result.stdout


@pytest.mark.parametrize(
    ("rule", "port", "expected"),
    [
        # an ACCEPT in iptables-nft's INPUT ends only that base chain: kube-proxy's
        # filter-input still rejects the NodePort without endpoints
        (["-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "30083", "-j", "ACCEPT"],
         "30083", "REJECT"),
        # iptables-nft's nat PREROUTING is walked first (loaded last, so the kernel runs it
        # first too): its DNAT binds the connection and kube-proxy's nat chain never runs
        (["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "30080", "-j", "DNAT",
          "--to-destination", "10.11.16.79:80"], "30080", "10.11.16.79:80"),
    ],
)  # fmt: skip
def test_base_chains_at_one_hook_run_in_turn_as_in_the_kernel(
    tmp_path: Path, rule: list[str], port: str, expected: str
) -> None:
    fixtures = _mixed_capture(tmp_path, [["iptables", *rule]])
    trace = CliRunner().invoke(main, ["trace", str(fixtures), "--port", port, "-o", "json"])
    (outcome,) = json.loads(trace.stdout)["nodes"][0]["outcomes"]
    assert expected in (outcome["verdict"], outcome["destination"])
    result = CliRunner().invoke(
        main, ["verify", str(fixtures), "--port", port, "-n", "20", "-o", "json"]
    )
    (node,) = json.loads(result.stdout)["nodes"]
    assert result.exit_code == 0 and node["agree"] is True, node.get("reason")
