"""kube-proxy meaning from real captures: names verified by the chain hash, every layout."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from _paths import CORPUS
from kpsim import kube
from kpsim.parse import load_file

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
