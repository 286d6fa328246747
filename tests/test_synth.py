"""Tests for kpsim.inputs.synth (rule generator) and the shipped seed fixtures."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpsim.inputs.synth import (
    ClusterSpec,
    EndpointSpec,
    NodeSpec,
    ServicePortSpec,
    ServiceSpec,
    chain_hash,
    endpoint_chain_hash,
    probability,
    render_kube_proxy_restore,
    render_restore,
    seed_workshop,
    svc_chain,
    synth_large,
)
from kpsim.verify import netns

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "iptables" / "eks-nodeport-workshop"

kernel = pytest.mark.skipif(
    not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
)

SEED = seed_workshop()
N1, N2, N3 = SEED.nodes


def table_rules(text: str, table: str) -> list[str]:
    """The -A lines of one table, in order."""
    out: list[str] = []
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith("-A "):
            out.append(line)
    return out


def chain_rules(text: str, table: str, chain: str) -> list[str]:
    return [r for r in table_rules(text, table) if r.split()[1] == chain]


def declared(text: str, table: str) -> list[str]:
    out: list[str] = []
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif current == table and line.startswith(":"):
            out.append(line[1:].split()[0])
    return out


# --- naming -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spn", "proto", "expected"),
    [
        ("default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
        ("kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
        ("kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"),
        ("kube-system/kube-dns:dns-tcp", "TCP", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ],
)
def test_chain_hash_matches_kube_proxy(spn: str, proto: str, expected: str) -> None:
    assert "KUBE-SVC-" + chain_hash(spn, proto) == expected
    assert svc_chain(spn, proto) == expected


def test_endpoint_hash_shape_and_dependence() -> None:
    a = endpoint_chain_hash("default/kubernetes:https", "tcp", "10.11.7.201:443")
    b = endpoint_chain_hash("default/kubernetes:https", "tcp", "10.11.45.118:443")
    assert re.fullmatch(r"[A-Z2-7]{16}", a) and a != b


def test_probability_strings() -> None:
    assert probability(2) == "0.5000000000"
    assert probability(3) == "0.3333333333"
    assert probability(7) == "0.1428571429"


# --- layout invariants ------------------------------------------------------------------


@pytest.mark.parametrize("node", SEED.nodes, ids=lambda n: n.short_name)
def test_nodeports_jump_is_last_and_chains_declared(node: NodeSpec) -> None:
    text = render_restore(SEED, node)
    services = chain_rules(text, "nat", "KUBE-SERVICES")
    assert services[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    assert "NOTE: this must be the last rule" in services[-1]
    for table in ("filter", "nat", "mangle"):
        decl = declared(text, table)
        assert len(decl) == len(set(decl)), table
        for rule in table_rules(text, table):
            target = rule.split(" -j ")[-1].split()[0] if " -j " in rule else None
            if target and target.startswith(("KUBE-", "AWS-")):
                assert target in decl, rule


def test_probability_ladder_and_endpoint_order() -> None:
    text = render_restore(SEED, N1)
    chain = svc_chain("node-test-01/node-test-01-svc", "tcp")
    rules = chain_rules(text, "nat", chain)
    assert [r.split("--probability ")[1].split()[0] for r in rules[:-1]] == [
        "0.3333333333",
        "0.5000000000",
    ]
    assert "--probability" not in rules[-1]
    dests = [re.search(r"-> (\S+)\"", r).group(1) for r in rules]  # type: ignore[union-attr]
    assert dests == sorted(dests)  # kube-proxy sorts endpoints by "ip:port" string


def test_postrouting_and_mark_masq() -> None:
    text = render_kube_proxy_restore(SEED, N1)
    assert chain_rules(text, "nat", "KUBE-POSTROUTING") == [
        "-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"'
        " -j MASQUERADE --random-fully",
    ]
    assert chain_rules(text, "nat", "KUBE-MARK-MASQ") == [
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000"
    ]
    assert text.startswith("*filter\n:KUBE-SERVICES - [0:0]\n")  # payload only, no base chains


def test_no_endpoints_rejects_in_filter_only() -> None:
    text = render_restore(SEED, N1)
    h = chain_hash("node-test-01/node-test-02-svc", "tcp")
    assert h not in text.split("*nat", 1)[1]
    flt = table_rules(text, "filter")
    assert any(
        r.startswith("-A KUBE-SERVICES ") and "has no endpoints" in r and r.endswith("-j REJECT")
        and "-d 172.20.66.201" in r for r in flt
    )  # fmt: skip
    assert any(
        r.startswith("-A KUBE-EXTERNAL-SERVICES ") and "--dport 30083" in r
        and "--dst-type LOCAL" in r and r.endswith("-j REJECT") for r in flt
    )  # fmt: skip


def test_etp_local_with_and_without_local_endpoints() -> None:
    h = chain_hash("nodeport-test/ecsdemo-crystal", "tcp")
    with_local = render_restore(SEED, N1)
    ext = chain_rules(with_local, "nat", f"KUBE-EXT-{h}")
    assert ext[-1] == f"-A KUBE-EXT-{h} -j KUBE-SVL-{h}"
    assert any("masquerade LOCAL traffic" in r and "--src-type LOCAL" in r for r in ext)
    svl = chain_rules(with_local, "nat", f"KUBE-SVL-{h}")
    assert len(svl) == 1 and "10.11.25.102:3000" in svl[0]
    assert "masquerade traffic for nodeport-test/ecsdemo-crystal" not in with_local

    without = render_restore(SEED, N3)
    assert f"KUBE-SVL-{h}" not in without
    ext3 = chain_rules(without, "nat", f"KUBE-EXT-{h}")
    assert all(f"-j KUBE-SVC-{h}" in r or "KUBE-MARK-MASQ" in r for r in ext3)
    drops = [r for r in chain_rules(without, "filter", "KUBE-EXTERNAL-SERVICES") if "30082" in r]
    assert len(drops) == 1 and "has no local endpoints" in drops[0] and drops[0].endswith("DROP")
    # ClusterIP still works cluster-wide
    assert len(chain_rules(without, "nat", f"KUBE-SVC-{h}")) == 2


def test_session_affinity_rules() -> None:
    text = render_restore(SEED, N2)
    h = chain_hash("nodeport-test/ecsdemo-nodejs", "tcp")
    rules = chain_rules(text, "nat", f"KUBE-SVC-{h}")
    assert [("--rcheck --seconds 10800 --reap" in r) for r in rules] == [True, True, False, False]
    seps = [r for r in table_rules(text, "nat") if "DNAT" in r and "ecsdemo-nodejs" in r]
    assert len(seps) == 2 and all("-m recent --name KUBE-SEP-" in r and "--set" in r for r in seps)


def test_vpc_cni_chains() -> None:
    text = render_restore(SEED, N2)
    snat = chain_rules(text, "nat", "AWS-SNAT-CHAIN-0")
    assert snat[0].startswith("-A AWS-SNAT-CHAIN-0 -d 10.11.0.0/16 ") and snat[0].endswith("RETURN")
    assert "--to-source 10.11.40.87 --random-fully" in snat[-1]
    post = chain_rules(text, "nat", "POSTROUTING")
    assert post[0].endswith("-j KUBE-POSTROUTING") and post[1].endswith("-j AWS-SNAT-CHAIN-0")
    pre = chain_rules(text, "nat", "PREROUTING")
    assert pre[0].endswith("-j KUBE-SERVICES") and "AWS-CONNMARK-CHAIN-0" in pre[1]
    assert len(chain_rules(text, "mangle", "PREROUTING")) == 3


def _lb_cluster(cluster_cidr: str | None = "10.11.0.0/16") -> ClusterSpec:
    node = NodeSpec("ip-198-18-0-10.example.internal", "i-0123456789abcdef0", "az1", "198.18.0.10")
    svc = ServiceSpec(
        "web", "front", "172.20.9.9",
        (ServicePortSpec("http", "TCP", 80, 8080, 31000),), type="LoadBalancer",
        endpoints=(EndpointSpec("10.11.1.1", node.name), EndpointSpec("10.11.2.2", "other"),
                   EndpointSpec("10.11.3.3", node.name, ready=False)),
        load_balancer_ips=("203.0.113.7",), load_balancer_source_ranges=("198.18.0.0/24",),
        external_ips=("198.18.1.1",), external_traffic_policy="Local", health_check_node_port=32000,
    )  # fmt: skip
    return ClusterSpec(nodes=(node,), services=(svc,), cluster_cidr=cluster_cidr)


def test_loadbalancer_firewall_and_local_detector() -> None:
    cl = _lb_cluster()
    text = render_restore(cl, cl.nodes[0])
    h = chain_hash("web/front:http", "tcp")
    fw = chain_rules(text, "nat", f"KUBE-FW-{h}")
    assert "-s 198.18.0.0/24 -j KUBE-EXT-" in fw[0]
    assert "-s 203.0.113.7 -j KUBE-EXT-" in fw[1]  # node IP is inside the allowed range
    assert "will be dropped by KUBE-PROXY-FIREWALL" in fw[-1]
    assert any("-d 203.0.113.7" in r for r in chain_rules(text, "filter", "KUBE-PROXY-FIREWALL"))
    assert any("-j KUBE-FW-" in r for r in chain_rules(text, "nat", "KUBE-SERVICES"))
    assert any("! -s 10.11.0.0/16 -j KUBE-MARK-MASQ" in r
               for r in chain_rules(text, "nat", f"KUBE-SVC-{h}"))  # fmt: skip
    assert any("pod traffic for" in r and "-s 10.11.0.0/16" in r
               for r in chain_rules(text, "nat", f"KUBE-EXT-{h}"))  # fmt: skip
    assert any("health check node port" in r and "--dport 32000" in r
               for r in chain_rules(text, "filter", "KUBE-NODEPORTS"))  # fmt: skip
    assert "10.11.3.3" not in text  # unready endpoints are not programmed


def test_large_cluster_renders_fast_without_endpoint_comments() -> None:
    start = time.perf_counter()
    cl = synth_large(10_000, 5, seed=1)
    text = render_restore(cl, cl.nodes[0])
    assert time.perf_counter() - start < 10
    assert cl == synth_large(10_000, 5, seed=1)
    sep = next(r for r in table_rules(text, "nat") if r.startswith("-A KUBE-SEP-"))
    assert "--comment" not in sep  # large-cluster mode drops per-endpoint comments
    assert len(chain_rules(text, "nat", "KUBE-SERVICES")) == 10_001


# --- real kernel ------------------------------------------------------------------------

_PAIR_HEX = re.compile(r"^(0x[0-9a-fA-F]+)(?:/(0x[0-9a-fA-F]+))?$")


def _hex(tok: str) -> str:
    m = _PAIR_HEX.match(tok)
    if not m:
        return tok
    parts = [hex(int(g, 16)) for g in m.groups() if g]
    return "/".join(parts)


def canonical(rule: str) -> tuple[str, ...]:
    """Order-insensitive token form so kube-proxy's argv and iptables-save output compare."""
    toks = shlex.split(rule)
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t in ("-s", "-d") and "/" not in nxt:
            out += [t, nxt + "/32"]
            i += 2
            continue
        if t == "--probability":
            out += [t, f"{round(float(nxt) * 2**31) / 2**31:.11f}"]
            i += 2
            continue
        if t in ("--or-mark", "--xor-mark"):
            v = int(nxt, 16)
            out += ["--set-xmark", f"{v:#x}/{v:#x}" if t == "--or-mark" else f"{v:#x}/0x0"]
            i += 2
            continue
        if t == "--set-mark":
            out += ["--set-xmark", _hex(nxt)]
            i += 2
            continue
        if t == "--mask" and "--restore-mark" in toks:
            out += ["--nfmask", _hex(nxt), "--ctmask", _hex(nxt)]
            i += 2
            continue
        if (t, nxt) == ("--mask", "255.255.255.255") or t == "--rsource":
            i += 2 if t == "--mask" else 1
            continue
        out.append(_hex(t))
        i += 1
    if out[-1] == "REJECT":
        out += ["--reject-with", "icmp-port-unreachable"]
    return tuple(sorted(out))


def _by_chain(text: str) -> dict[tuple[str, str], list[tuple[str, ...]]]:
    res: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for table in ("mangle", "filter", "nat"):
        for chain in declared(text, table):
            res.setdefault((table, chain), [])
        for r in table_rules(text, table):
            res.setdefault((table, r.split()[1]), []).append(canonical(r))
    return res


def _lb_and_seed_cases() -> list[tuple[ClusterSpec, NodeSpec]]:
    cl = _lb_cluster()
    return [(SEED, n) for n in SEED.nodes] + [(cl, cl.nodes[0])]


@kernel
@pytest.mark.kernel
@pytest.mark.parametrize("case", _lb_and_seed_cases(), ids=lambda c: c[1].short_name)
def test_kernel_round_trip(case: tuple[ClusterSpec, NodeSpec]) -> None:
    cluster, node = case
    text = render_restore(cluster, node)
    with netns.netns_session() as ns:
        ns.restore_test(text)
        ns.load_rules(text)
        saved = ns.save()
    assert _by_chain(saved) == _by_chain(text)


@kernel
@pytest.mark.kernel
def test_committed_fixtures_match_regen(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-m", "kpsim.inputs.regen", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.txt"))
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*.txt"))
    assert produced == committed and len(produced) == 9
    for rel in produced:
        assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), rel
