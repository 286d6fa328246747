"""Which kube-proxy mode a capture comes from: only in iptables mode do its rules pick the pod.

The fixtures in fixtures/damaged/ lay the seed lab's services out as the IPVS, userspace
and nftables proxiers write them; the shipped captures and the published corpus are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _paths import CORPUS, REPO, needs_corpus
from kpsim.formats import load_file, parse_text
from kpsim.kube import services
from kpsim.kube.mode import ModeFinding, ProxyMode, proxy_mode
from kpsim.model import Format, Ruleset

DAMAGED = REPO / "fixtures" / "damaged"
SEED = REPO / "fixtures" / "iptables" / "eks-nodeport-workshop"
SEED_SAVES = sorted(SEED.glob("*/iptables-save.txt"))
SEED_FILES = sorted(SEED.glob("*/*.txt"))
CORPUS_FILES = sorted(CORPUS.glob("[0-9]*")) if CORPUS.is_dir() else []
# INDEX.md: 028 is from a node in IPVS mode; 008 is iptables-nft rules in nft syntax,
# i.e. iptables mode seen through nft; every other dump is iptables mode
CORPUS_MODES = {"028": ProxyMode.IPVS}

FIXTURES = {
    "ipvs-mode.txt": (ProxyMode.IPVS, Format.SAVE),
    "userspace-mode.txt": (ProxyMode.USERSPACE, Format.SAVE),
    "nftables-mode.nft": (ProxyMode.NFTABLES, Format.NFT),
}


def _finding(path: Path) -> ModeFinding:
    return proxy_mode(load_file(path))


def _text(text: str, name: str = "inline.txt") -> Ruleset:
    return parse_text(text, name)


# ---------------------------------------------------------------- the three other modes


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_loads_with_kpsim_and_has_a_header(name: str) -> None:
    path = DAMAGED / name
    mode, fmt = FIXTURES[name]
    ruleset = load_file(path)
    assert ruleset.format is fmt
    first = path.read_text().split("\n", 1)[0]
    assert first.startswith("# kpsim fixture: ") and f"{mode.value} mode" in first.lower()
    assert sum(t.rule_count for t in ruleset.tables.values()) > 40
    if fmt is Format.SAVE:  # only the header's comment lines are skipped
        assert {d.message for d in ruleset.diagnostics} == {"skipped comment"}


def test_ipvs_fixture_says_ipvs_picks_the_endpoint() -> None:
    found = _finding(DAMAGED / "ipvs-mode.txt")
    assert found.mode is ProxyMode.IPVS
    assert not found.chooses_endpoints
    assert "IPVS, not these iptables rules, picks the endpoint" in found.message
    assert "ipvsadm -Ln" in found.message
    assert found.active == (ProxyMode.IPVS,) and found.leftovers == ()
    assert any("--match-set KUBE-CLUSTER-IP" in e.text for e in found.evidence)


def test_userspace_fixture_says_the_proxy_process_picks_the_endpoint() -> None:
    found = _finding(DAMAGED / "userspace-mode.txt")
    assert found.mode is ProxyMode.USERSPACE
    assert not found.chooses_endpoints
    assert "the kube-proxy process picks the endpoint" in found.message
    assert any("KUBE-PORTALS-CONTAINER" in e.text for e in found.evidence)


def test_nftables_fixture_is_read_and_picks_the_endpoint() -> None:
    found = _finding(DAMAGED / "nftables-mode.nft")
    assert found.mode is ProxyMode.NFTABLES
    assert found.chooses_endpoints
    assert "kube-proxy runs in nftables mode here: its table picks the endpoint" in found.message
    assert "\tchain nat-prerouting {" in [e.text for e in found.evidence]


def test_is_ipvs_still_agrees() -> None:
    assert services.is_ipvs(load_file(DAMAGED / "ipvs-mode.txt"))
    assert not services.is_ipvs(load_file(SEED_SAVES[0]))


# ---------------------------------------------------------------- real captures


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_fixtures_are_iptables_mode(path: Path) -> None:
    found = _finding(path)
    assert found.mode is ProxyMode.IPTABLES
    assert found.chooses_endpoints
    assert found.leftovers == ()
    assert "these iptables rules" in found.message and "pick the endpoint" in found.message


@needs_corpus
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name[:3])
def test_corpus_dump_gives_its_mode(path: Path) -> None:
    expected = CORPUS_MODES.get(path.name[:3], ProxyMode.IPTABLES)
    found = _finding(path)
    assert found.mode is expected
    assert found.chooses_endpoints is (expected is ProxyMode.IPTABLES)


@needs_corpus
def test_corpus_is_the_one_the_table_describes() -> None:
    assert len(CORPUS_FILES) >= 10
    assert any(p.name.startswith("028-") for p in CORPUS_FILES)
    assert any(p.name.startswith("008-") for p in CORPUS_FILES)


@pytest.mark.parametrize(
    "path",
    [*(DAMAGED / n for n in sorted(FIXTURES)), *SEED_SAVES, *CORPUS_FILES],
    ids=lambda p: p.name[:24],
)
def test_evidence_points_at_real_lines(path: Path) -> None:
    found = _finding(path)
    lines = path.read_text().split("\n")
    assert 1 <= len(found.evidence) <= 6
    for where in found.evidence:
        assert where.path == str(path)
        assert 1 <= where.line <= len(lines)
        assert lines[where.line - 1].rstrip("\r") == where.text


@pytest.mark.parametrize(
    ("table", "chain", "mode"),
    [
        ("nat", "KUBE-NODE-PORT", ProxyMode.IPVS),
        ("nat", "KUBE-LOAD-BALANCER", ProxyMode.IPVS),
        ("nat", "KUBE-FIREWALL", ProxyMode.IPVS),  # IPVS proxiers before KUBE-PROXY-FIREWALL
        ("filter", "KUBE-IPVS-FILTER", ProxyMode.IPVS),
        ("filter", "KUBE-FIREWALL", ProxyMode.NONE),  # kubelet's own
        ("nat", "KUBE-NODEPORTS", ProxyMode.IPTABLES),
        ("nat", "KUBE-NODEPORT-HOST", ProxyMode.USERSPACE),
    ],
)
def test_one_chain_of_a_fragment_shows_the_mode(table: str, chain: str, mode: ProxyMode) -> None:
    found = proxy_mode(_text(f"*{table}\n:{chain} - [0:0]\nCOMMIT\n"))
    assert found.mode is mode
    assert [e.line for e in found.evidence] == ([2] if mode is not ProxyMode.NONE else [])


# ---------------------------------------------------------------- no kube-proxy at all

DOCKER_ONLY = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER-USER -j RETURN
COMMIT
"""


def test_docker_only_ruleset_is_none() -> None:
    found = proxy_mode(_text(DOCKER_ONLY))
    assert found.mode is ProxyMode.NONE
    assert not found.chooses_endpoints and found.evidence == ()
    assert found.message.startswith("no kube-proxy rules in this capture")
    assert "kubelet" not in found.message


def test_kubelet_chains_alone_are_none_and_named() -> None:
    text = (
        "*nat\n:POSTROUTING ACCEPT [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n"
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING\n'
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\nCOMMIT\n"
    )
    found = proxy_mode(_text(text))
    assert found.mode is ProxyMode.NONE
    assert "only kubelet's chains: KUBE-MARK-MASQ, KUBE-POSTROUTING" in found.message


def test_kube_services_alone_is_taken_for_iptables_mode() -> None:
    found = proxy_mode(_text("*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"))
    assert found.mode is ProxyMode.IPTABLES
    assert [e.line for e in found.evidence] == [2]


# ---------------------------------------------------------------- leftovers and mixtures

IPVS_SERVICES = """\
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade \
purpose" -m set --match-set {set} src,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set {set} dst,dst -j ACCEPT
"""

IPTABLES_LEFTOVER = """\
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/kubernetes:https" \
-j KUBE-SEP-XDAKEI2XLX7RCSFE
-A KUBE-SEP-XDAKEI2XLX7RCSFE -p tcp -m comment --comment "default/kubernetes:https" -m tcp \
-j DNAT --to-destination 10.208.40.179:6443
"""


def _nat(chains: list[str], rules: str) -> str:
    head = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    decl = "".join(f":{c} - [0:0]\n" for c in chains)
    hooks = (
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n'
    )
    return head + decl + hooks + rules + "COMMIT\n"


def test_ipvs_node_with_iptables_chains_left_behind() -> None:
    chains = ["KUBE-NODE-PORT", "KUBE-SEP-XDAKEI2XLX7RCSFE", "KUBE-SERVICES"]
    chains.append("KUBE-SVC-NPX46M4PTMTKRN6Y")
    text = _nat(chains, IPVS_SERVICES.format(set="KUBE-CLUSTER-IP") + IPTABLES_LEFTOVER)
    found = proxy_mode(_text(text))
    assert found.mode is ProxyMode.IPVS and not found.chooses_endpoints
    assert found.leftovers == (ProxyMode.IPTABLES,)
    assert "IPVS, not these iptables rules, picks the endpoint" in found.message
    assert "left behind by iptables mode" in found.message
    assert found.evidence[0].text.startswith("-A KUBE-SERVICES")
    assert found.evidence[-1].text.startswith((":KUBE-SEP-", ":KUBE-SVC-"))


def test_ipv6_ipvs_set_names_count() -> None:
    text = _nat(["KUBE-SERVICES"], IPVS_SERVICES.format(set="KUBE-6-CLUSTER-IP"))
    text = text.replace("-j KUBE-NODE-PORT\n", "-j RETURN\n")
    assert proxy_mode(_text(text)).mode is ProxyMode.IPVS


def test_kube_router_sets_are_not_ipvs() -> None:
    text = _nat(
        ["KUBE-SERVICES", "KUBE-SVC-NPX46M4PTMTKRN6Y"],
        "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y\n"
        "-A KUBE-SERVICES -m set --match-set KUBE-DST-BGKCFGFO4ML3EA7D dst -j RETURN\n",
    )
    found = proxy_mode(_text(text))
    assert found.mode is ProxyMode.IPTABLES and found.leftovers == ()


def test_iptables_node_with_userspace_chains_left_behind() -> None:
    chains = ["KUBE-PORTALS-CONTAINER", "KUBE-SERVICES", "KUBE-SVC-NPX46M4PTMTKRN6Y"]
    rules = (
        "-A KUBE-PORTALS-CONTAINER -d 10.96.0.1/32 -p tcp -m comment --comment "
        '"default/kubernetes:https" -m tcp --dport 443 -j REDIRECT --to-ports 40927\n'
        "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y\n"
    )
    found = proxy_mode(_text(_nat(chains, rules)))
    assert found.mode is ProxyMode.IPTABLES and found.chooses_endpoints
    assert found.leftovers == (ProxyMode.USERSPACE,)
    assert "left behind by userspace mode" in found.message


def test_nftables_table_beside_live_iptables_rules_is_mixed() -> None:
    text = (
        "table ip nat {\n"
        "\tchain KUBE-SERVICES {\n"
        "\t\tmeta l4proto tcp ip daddr 10.96.0.1 tcp dport 443 jump KUBE-SVC-NPX46M4PTMTKRN6Y\n"
        "\t}\n"
        "}\n"
        "table ip kube-proxy {\n"
        "\tchain nat-prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        "\t\tjump services\n"
        "\t}\n"
        "\tchain services {\n"
        "\t\tip daddr . meta l4proto . th dport vmap @service-ips\n"
        "\t}\n"
        "}\n"
    )
    found = proxy_mode(_text(text, "mixed.nft"))
    assert found.mode is ProxyMode.MIXED and not found.chooses_endpoints
    assert set(found.active) == {ProxyMode.IPTABLES, ProxyMode.NFTABLES}
    assert "several kube-proxy modes are live here" in found.message
    assert {e.line for e in found.evidence} == {3, 7, 11}
