"""The published ``iptables -L`` dumps of the shared corpus load leniently, with the
chains and rules counted by hand from each file and a diagnostic for each pasted line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kpsim.formats.iptables.listing import parse_list
from kpsim.model import (
    Address,
    AddrTypeMatch,
    CommentMatch,
    Counters,
    Dnat,
    MarkMatch,
    MarkTarget,
    Masquerade,
    NatRange,
    PortMatch,
    PortRange,
    Ruleset,
    StatisticMatch,
    Verdict,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real-dumps"
if not CORPUS.is_dir():
    from _paths import CORPUS
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")

FLANNEL_CHAINS = {  # 001 and 002: the same cluster, complete nat table
    "PREROUTING": 2, "INPUT": 0, "OUTPUT": 2, "POSTROUTING": 6, "DOCKER": 1,
    "KUBE-MARK-DROP": 1, "KUBE-MARK-MASQ": 1, "KUBE-NODEPORTS": 2, "KUBE-POSTROUTING": 1,
    "KUBE-SEP-2JVQP42V4GXGTRDZ": 2, "KUBE-SEP-AZ26OUDW2ONMCF3B": 2,
    "KUBE-SEP-KPC3R4X2272VTT4E": 2, "KUBE-SEP-NQYSJ3QY2ADXHRG3": 2,
    "KUBE-SEP-WZIMOURZMGKYESDR": 2, "KUBE-SEP-X5LPZOF2HZFMFFC2": 2, "KUBE-SERVICES": 9,
    "KUBE-SVC-ERIFXISQEP7F7OF4": 2, "KUBE-SVC-NPX46M4PTMTKRN6Y": 1,
    "KUBE-SVC-R2VK7O5AFVLRAXSH": 1, "KUBE-SVC-TCOU7JCQXEZGVUNU": 2,
}  # fmt: skip


def load(prefix: str) -> Ruleset:
    (path,) = CORPUS.glob(f"{prefix}-*.txt")
    return parse_list(path.read_text(encoding="utf-8"), path.name)


def counts(rs: Ruleset) -> dict[str, int]:
    return {name: len(c.rules) for name, c in rs.tables["nat"].chains.items()}


def diag_lines(rs: Ruleset) -> list[int]:
    return [d.line for d in rs.diagnostics]


def test_001_numeric() -> None:
    rs = load("001")
    assert list(rs.tables) == ["nat"]
    assert counts(rs) == FLANNEL_CHAINS
    assert rs.diagnostics == ()
    assert any("read as nat" in n for n in rs.notes)
    svc = rs.chain("nat", "KUBE-SVC-ERIFXISQEP7F7OF4")
    assert svc is not None
    stat = svc.rules[0].matches[1]
    assert isinstance(stat, StatisticMatch) and stat.threshold == 1 << 30
    sep = rs.chain("nat", "KUBE-SEP-2JVQP42V4GXGTRDZ")
    assert sep is not None
    dnat = sep.rules[1]
    assert dnat.target == Dnat((NatRange("10.244.0.25", None, 53),))
    assert dnat.matches == (CommentMatch("kube-system/kube-dns:dns-tcp"), PortMatch("tcp"))
    post = rs.chain("nat", "POSTROUTING")
    assert post is not None
    assert post.rules[3].destination == Address(ipaddress.ip_network("224.0.0.0/4"), True)
    assert post.policy is Verdict.ACCEPT and post.counters is None
    mark = rs.chain("nat", "KUBE-MARK-MASQ")
    assert mark is not None and mark.rules[0].target == MarkTarget(0x4000, 0x4000)


def test_002_verbose() -> None:
    rs = load("002")
    assert counts(rs) == FLANNEL_CHAINS
    assert rs.diagnostics == ()
    svc = rs.chain("nat", "KUBE-SVC-ERIFXISQEP7F7OF4")
    assert svc is not None
    stat = svc.rules[0].matches[1]
    assert isinstance(stat, StatisticMatch) and stat.threshold == 1073741824
    out = rs.chain("nat", "OUTPUT")
    assert out is not None and out.counters == Counters(10, 600)
    assert out.rules[0].counters == Counters(10, 600)
    post = rs.chain("nat", "POSTROUTING")
    assert post is not None
    assert post.rules[1].out_interface is not None
    assert post.rules[1].out_interface.negated and post.rules[1].out_interface.name == "docker0"
    docker = rs.chain("nat", "DOCKER")
    assert docker is not None and docker.rules[0].in_interface is not None
    kp = rs.chain("nat", "KUBE-POSTROUTING")
    assert kp is not None and kp.rules[0].matches[1] == MarkMatch(0x4000, 0x4000)


def test_003_units_and_prompts() -> None:
    rs = load("003")
    c = counts(rs)
    assert len(c) == 56 and sum(c.values()) == 167
    assert c["POSTROUTING"] == 17 and c["desktop"] == 32 and c["KUBE-SERVICES"] == 15
    assert c["KUBE-NODEPORTS"] == 14 and c["KUBE-XLB-D7TXZ2ONB4DT7BQA"] == 3
    assert [(d.line, d.col) for d in rs.diagnostics] == [(1, 1), (336, 1)]
    assert all("shell prompt" in d.message for d in rs.diagnostics)
    pre = rs.chain("nat", "PREROUTING")
    out = rs.chain("nat", "OUTPUT")
    assert pre is not None and out is not None
    assert pre.rules[0].counters == Counters(23979, 1651000)
    assert out.rules[0].counters == Counters(471000, 28000000)
    assert out.counters == Counters(7134, 436000)
    assert any("rounded" in n for n in rs.notes)
    kp = rs.chain("nat", "KUBE-POSTROUTING")
    assert kp is not None
    assert kp.rules[0].matches == (MarkMatch(0x4000, 0x4000, negated=True),)
    assert kp.rules[1].target == MarkTarget(0x4000, 0)
    assert kp.rules[2].target == Masquerade(random_fully=True)
    docker = rs.chain("nat", "DOCKER")
    assert docker is not None
    assert docker.rules[0].matches == (PortMatch("tcp", PortRange(7443, 7443)),)
    xlb = rs.chain("nat", "KUBE-XLB-D7TXZ2ONB4DT7BQA")
    assert xlb is not None and xlb.rules[0].matches[1] == AddrTypeMatch(src_type=("LOCAL",))


def test_004_resolved_names() -> None:
    rs = load("004")
    c = counts(rs)
    assert len(c) == 22 and sum(c.values()) == 44
    assert c["FLANNEL-POSTRTG"] == 6 and c["KUBE-SERVICES"] == 5
    assert [(d.line, d.message) for d in rs.diagnostics] == [(1, "skipped shell prompt")]
    assert not any("read as" in n for n in rs.notes)  # the prompt said -t nat
    fl = rs.chain("nat", "FLANNEL-POSTRTG")
    assert fl is not None
    assert fl.rules[0].source is None and fl.rules[0].destination is None
    assert fl.rules[1].source == Address(None, unresolved="k8s-cp/24")
    assert fl.rules[1].destination == Address(None, unresolved="k8s-cp/16")
    assert fl.rules[4].destination == Address(ipaddress.ip_network("224.0.0.0/4"), True)
    assert fl.rules[4].target == Masquerade(random_fully=True)


def test_006_annotated() -> None:
    rs = load("006")
    assert counts(rs) == {
        "PREROUTING": 2, "KUBE-SEP-G3MLSGWVLUPEIMXS": 2, "KUBE-SEP-OUBP2X5UG3G4CYYB": 2,
        "KUBE-SEP-PXEMGP3B44XONJEO": 2, "KUBE-SERVICES": 3, "KUBE-SVC-6N4SJQIF3IX3FORG": 1,
        "KUBE-SVC-N4RX4VPNP4ATLCGG": 2,
    }  # fmt: skip
    notes = [(d.line, d.col) for d in rs.diagnostics if "author note" in d.message]
    assert notes == [(4, 100), (7, 48), (17, 48), (22, 36), (32, 48)]
    assert diag_lines(rs) == [1, 4, 7, 17, 22, 32]
    sep = rs.chain("nat", "KUBE-SEP-G3MLSGWVLUPEIMXS")
    assert sep is not None and sep.rules[0].target == MarkTarget(0x4D415351, 0xFFFFFFFF)
    svcs = rs.chain("nat", "KUBE-SERVICES")
    assert svcs is not None
    assert svcs.rules[0].matches[1] == PortMatch("tcp", PortRange(80, 80))
    assert svcs.rules[1].matches[1] == PortMatch("tcp", PortRange(443, 443))
    pre = rs.chain("nat", "PREROUTING")
    assert pre is not None and len(pre.rules[0].matches) == 1  # the note is not a match


def test_030_markdown_page() -> None:
    rs = load("030")
    assert counts(rs) == {
        "KUBE-SERVICES": 2, "KUBE-SVC-RGCN5N2WQYBIR5LN": 3, "KUBE-SEP-VFQ5BKTMS2WQMEDV": 2,
        "KUBE-SEP-W3FM4QSTZ6S45B6W": 2, "KUBE-SEP-OFLDMAZYM3MKDZOA": 2, "KUBE-NODEPORTS": 4,
    }  # fmt: skip
    by_kind: dict[str, list[int]] = {}
    for d in rs.diagnostics:
        by_kind.setdefault(d.message, []).append(d.line)
    fences = [2, 4, 10, 12, 13, 20, 23, 25, 26, 32, 36, 38, 39, 56, 59, 61, 62, 80, 81, 83, 84, 91]
    assert by_kind["skipped markdown fence"] == fences
    assert by_kind["skipped command line"] == [3, 11, 24, 37, 60, 82]
    assert by_kind["skipped elision"] == [16, 19, 40, 55]
    assert by_kind["skipped shell prompt"] == [63]
    assert by_kind["skipped comment"] == [1, 58]
    prose = by_kind["skipped line outside any chain listing"]
    assert prose == [6, 7, 22, *range(64, 80)]
    svc = rs.chain("nat", "KUBE-SVC-RGCN5N2WQYBIR5LN")
    assert svc is not None
    stat = svc.rules[0].matches[1]
    assert isinstance(stat, StatisticMatch) and stat.threshold == 715827883
    services = rs.chain("nat", "KUBE-SERVICES")
    assert services is not None
    assert services.rules[0].matches[1] == PortMatch("tcp", PortRange(80, 80))
    assert any("KUBE-SERVICES: rules elided" in n for n in rs.notes)


@pytest.mark.parametrize("prefix", ["001", "002", "003", "004", "006", "030"])
def test_origins_point_at_the_rule_lines(prefix: str) -> None:
    rs = load(prefix)
    (path,) = CORPUS.glob(f"{prefix}-*.txt")
    lines = path.read_text(encoding="utf-8").split("\n")
    for chain in rs.tables["nat"].chains.values():
        for n, rule in enumerate(chain.rules, start=1):
            assert rule.number == n
            assert rule.origin is not None and lines[rule.origin.line - 1].startswith(
                rule.origin.text
            )
