"""kube-proxy meaning from real captures: names verified by the chain hash, every layout."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from _paths import CORPUS
from kpsim.formats import load_file, parse_text
from kpsim.kube import services as kube

REPO = Path(__file__).resolve().parents[1]

SEED = REPO / "fixtures" / "iptables" / "eks-nodeport-workshop"

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")


@pytest.mark.parametrize(
    ("name", "protocol", "chain"),
    [
        ("default/kubernetes:https", "tcp", "NPX46M4PTMTKRN6Y"),
        ("kube-system/kube-dns:dns", "udp", "TCOU7JCQXEZGVUNU"),
        ("kube-system/kube-dns:dns-tcp", "tcp", "ERIFXISQEP7F7OF4"),
        ("default/nginx-svc:", "tcp", "R2VK7O5AFVLRAXSH"),  # old unnamed-port spelling
    ],
)
def test_port_proto_hash_matches_kube_proxy(name: str, protocol: str, chain: str) -> None:
    assert kube.port_proto_hash(name, protocol) == chain


def _services(path: Path) -> dict[str, kube.Service]:
    return {s.name: s for s in kube.services(load_file(path))}


def test_seed_node_services() -> None:
    svcs = _services(SEED / "ip-10-11-28-53" / "iptables-save.txt")
    svc = svcs["node-test-01/node-test-01-svc"]
    assert svc.named_by == "hash"
    assert svc.cluster_ips == ("172.20.177.168",)
    assert svc.node_ports == (30080,)
    assert [e.probability for e in svc.endpoints] == [
        Fraction(715827883, 2**31),
        Fraction(1431655765, 2**32),
        Fraction(1431655765, 2**32),
    ]
    assert sum(e.probability for e in svc.endpoints) == 1
    local = [s for s in svcs.values() if s.traffic_policy_local]
    assert local and all(s.local_endpoints for s in local)
    assert any(s.affinity_seconds == 10800 for s in svcs.values())
    assert any(s.no_endpoints and s.node_ports for s in svcs.values())


@needs_corpus
def test_pre_1_23_layout_names_unnamed_ports_by_hash() -> None:
    svcs = _services(CORPUS / "001-kubeadm-flannel-nodeport-list-numeric.txt")
    nginx = svcs["default/nginx-svc"]
    assert nginx.named_by == "hash" and nginx.node_ports == (30080,)
    assert [e.destination for e in nginx.endpoints] == ["10.244.1.3:80"]


@needs_corpus
def test_xlb_layout_is_traffic_policy_local() -> None:
    svcs = _services(CORPUS / "003-docker-desktop-xlb-list-verbose.txt")
    http = svcs["default/ingress-nginx-controller:http"]
    assert http.traffic_policy_local and http.node_ports == (30701,)


@needs_corpus
def test_old_five_decimal_probabilities_are_kernel_integers() -> None:
    svcs = _services(CORPUS / "007-kube-fw-loadbalancer-save-fragment-annotated.txt")
    nginx = svcs["default/nginx"]
    assert nginx.named_by == "hash"
    first = nginx.endpoints[0].probability
    assert first == Fraction(715820724, 2**31)  # "0.33332999982" as the kernel holds it
    assert sum(e.probability for e in nginx.endpoints) == 1
    assert {f.kind for f in nginx.frontends} >= {"cluster-ip", "load-balancer", "node-port"}


@needs_corpus
def test_very_old_mark_layout_still_names_services() -> None:
    svcs = _services(CORPUS / "006-k8s-1.2era-mark-0x4d415351-list-annotated.txt")
    web = svcs["default/webpod-service"]
    assert web.named_by == "hash"
    assert len(web.endpoints) == 2 and web.cluster_ips == ("192.168.3.237",)


@needs_corpus
def test_ipvs_mode_is_recognised() -> None:
    rs = load_file(CORPUS / "028-calico-ipvs-mode-nat-header-save-fragment-elided.txt")
    assert kube.is_ipvs(rs)


def _svc_chain_rules(h: str, comment: str | None, seps: list[tuple[str, str]]) -> list[str]:
    """A KUBE-SVC chain that splits evenly over ``seps`` (chain, ip:port), and the seps."""
    tag = f'-m comment --comment "{comment}" ' if comment else ""
    out = []
    for i, (sep, _) in enumerate(seps):
        left = len(seps) - i
        chance = f"-m statistic --mode random --probability {1 / left:.11f} " if left > 1 else ""
        out.append(f"-A KUBE-SVC-{h} {tag}{chance}-j {sep}")
    out += [f"-A {sep} -p tcp -m tcp -j DNAT --to-destination {dest}" for sep, dest in seps]
    return out


def test_names_come_from_frontends_then_chains_in_order() -> None:
    """The name a chain hash proves wins; a frontend's name is tried before the chains';
    without proof the first comment names the service, without any the chain does."""
    web = kube.port_proto_hash("default/web:http", "tcp")
    api = kube.port_proto_hash("default/api:https", "tcp")
    web_seps = [("KUBE-SEP-WEBA", "10.0.0.1:8080"), ("KUBE-SEP-WEBB", "10.0.0.2:8080")]
    unproven, chain_only, bare = "A" * 16, "B" * 16, "C" * 16
    rules = [
        # frontend comment not proven by the hash, the chain's comment is
        '-A KUBE-SERVICES -m comment --comment "default/old-web:http cluster IP" -m tcp -p tcp '
        f"-d 10.96.0.10/32 --dport 80 -j KUBE-SVC-{web}",
        *_svc_chain_rules(web, "default/web:http", web_seps),
        # frontend comment proven: the chain's other name is never needed
        '-A KUBE-SERVICES -m comment --comment "default/api:https cluster IP" -m tcp -p tcp '
        f"-d 10.96.0.11/32 --dport 443 -j KUBE-SVC-{api}",
        *_svc_chain_rules(api, "default/zzz:q", [("KUBE-SEP-API", "10.0.0.3:8443")]),
        # nothing proven: the frontend's name comes first
        '-A KUBE-SERVICES -m comment --comment "default/front:a cluster IP" -m tcp -p tcp '
        f"-d 10.96.0.12/32 --dport 81 -j KUBE-SVC-{unproven}",
        *_svc_chain_rules(unproven, "default/chain:b", [("KUBE-SEP-UNPROVEN", "10.0.0.4:81")]),
        *_svc_chain_rules(
            chain_only, "default/only-chain:c", [("KUBE-SEP-CHAINONLY", "10.0.0.5:80")]
        ),
        *_svc_chain_rules(bare, None, [("KUBE-SEP-BARE", "10.0.0.6:80")]),
    ]
    chains = sorted({r.split()[1] for r in rules} | {"KUBE-SERVICES"})
    text = "\n".join(["*nat", *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT", ""])
    svcs = {s.hash: s for s in kube.services(parse_text(text, "names.save"))}

    got = {h: (s.name, s.named_by) for h, s in svcs.items()}
    assert got == {
        web: ("default/web:http", "hash"),
        api: ("default/api:https", "hash"),
        unproven: ("default/front:a", "comment"),
        chain_only: ("default/only-chain:c", "comment"),
        bare: (f"KUBE-SVC-{bare}", "chain"),
    }
    assert [(e.chain, e.destination, e.probability) for e in svcs[web].endpoints] == [
        ("KUBE-SEP-WEBA", "10.0.0.1:8080", Fraction(1, 2)),
        ("KUBE-SEP-WEBB", "10.0.0.2:8080", Fraction(1, 2)),
    ]
    (front,) = svcs[web].frontends
    assert (front.kind, front.address, front.port, front.protocol) == (
        "cluster-ip",
        "10.96.0.10",
        80,
        "tcp",
    )
    assert not svcs[bare].frontends and svcs[bare].endpoints[0].probability == 1
