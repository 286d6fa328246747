"""The published save-format dumps (005, 007, 028) and the nft one (008) load with the
rule counts counted by hand from each file and the diagnostics their noise deserves."""

from __future__ import annotations

import pytest

from _paths import CORPUS
from kpsim.errors import ParseError
from kpsim.formats.iptables.save import parse_save
from kpsim.formats.nft.iptables_nft import NOTE, parse_nft
from kpsim.model import Dnat, Format, Jump, MarkTarget, Masquerade, StatisticMatch


def _load(prefix: str) -> tuple[str, str]:
    path = next(CORPUS.glob(f"{prefix}-*"))
    return path.read_text(), str(path)


pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")


def _counts(ruleset, table: str) -> dict[str, int]:
    return {name: len(c.rules) for name, c in ruleset.tables[table].chains.items() if c.rules}


def test_005_all_tables() -> None:
    text, path = _load("005")
    rs = parse_save(text, path)
    assert rs.format is Format.SAVE
    assert [(d.line, d.col, d.message) for d in rs.diagnostics] == [(1, 1, "skipped shell prompt")]
    assert _counts(rs, "mangle") == {}
    assert len(rs.tables["mangle"].chains) == 7
    assert _counts(rs, "filter") == {
        "INPUT": 3, "FORWARD": 3, "OUTPUT": 2, "KUBE-FIREWALL": 2, "KUBE-FORWARD": 3,
    }  # fmt: skip
    sep = {f"KUBE-SEP-{s}": 2 for s in (
        "242VRRB6CJESMF7F", "2KMBOYXVR33SDSC2", "6E7XQMQ4RAYOWTTM", "OJCTP5LCEHQJ3D72",
        "PUHFDAMRBZWCPADU", "SF3LG62VAE5ALYDV", "WXWGHGKZOCNYRYI7", "ZP3FB6NMPNCO4VBJ",
        "ZXMNUKOKXUTL2MK2",
    )}  # fmt: skip
    svc = {"KUBE-SVC-3CRYVFGPLWYNKULQ": 2, "KUBE-SVC-ERIFXISQEP7F7OF4": 3,
           "KUBE-SVC-JD5MR3NA4I4DYORP": 3, "KUBE-SVC-NPX46M4PTMTKRN6Y": 2,
           "KUBE-SVC-QWNV66JT3UNCF3AW": 2, "KUBE-SVC-TCOU7JCQXEZGVUNU": 3}  # fmt: skip
    assert _counts(rs, "nat") == {
        "PREROUTING": 2, "OUTPUT": 2, "POSTROUTING": 3, "DOCKER_OUTPUT": 2,
        "DOCKER_POSTROUTING": 2, "KIND-MASQ-AGENT": 2, "KUBE-MARK-DROP": 1, "KUBE-MARK-MASQ": 1,
        "KUBE-POSTROUTING": 3, **sep, "KUBE-SERVICES": 7, **svc,
    }  # fmt: skip
    assert rs.tables["nat"].rule_count == 58  # lines 73-130
    masq = rs.chain("nat", "KUBE-POSTROUTING")
    assert masq is not None
    assert masq.rules[1].target == MarkTarget(0x4000, 0)
    assert masq.rules[2].target == Masquerade(random_fully=True)
    assert masq.rules[2].origin is not None and masq.rules[2].origin.line == 90
    pick = rs.chain("nat", "KUBE-SVC-ERIFXISQEP7F7OF4").rules[1].matches[1]  # type: ignore[union-attr]
    assert isinstance(pick, StatisticMatch) and pick.threshold == 1 << 30


def test_007_fragment_with_author_comments() -> None:
    text, path = _load("007")
    rs = parse_save(text, path)
    assert [d.line for d in rs.diagnostics] == [1, 6, 11, 16, 20, 25, 29, 33]
    assert {d.message for d in rs.diagnostics} == {"skipped comment"}
    assert "no table header: assumed table nat" in rs.notes
    assert _counts(rs, "nat") == {
        "KUBE-MARK-DROP": 1, "KUBE-MARK-MASQ": 1, "KUBE-POSTROUTING": 1, "KUBE-SERVICES": 3,
        "KUBE-FW-4N57TFCL4MD7ZTDA": 3, "KUBE-NODEPORTS": 2, "KUBE-SVC-4N57TFCL4MD7ZTDA": 3,
        "KUBE-SEP-6QCC2MHJZP35QQAR": 2, "KUBE-SEP-TOYRWPNILILHH3OR": 2,
        "KUBE-SEP-UXHBWR5XIMVGXW3H": 2,
    }  # fmt: skip
    first = rs.chain("nat", "KUBE-SVC-4N57TFCL4MD7ZTDA").rules[0]  # type: ignore[union-attr]
    assert first.matches[1] == StatisticMatch(first.matches[1].mode, threshold=715820724)  # type: ignore[union-attr]
    sep = rs.chain("nat", "KUBE-SEP-UXHBWR5XIMVGXW3H").rules[1]  # type: ignore[union-attr]
    assert isinstance(sep.target, Dnat) and str(sep.target.to[0]) == "10.244.1.2:80"


def test_007_strict_stops_at_first_comment() -> None:
    text, path = _load("007")
    with pytest.raises(ParseError) as err:
        parse_save(text, path, strict=True)
    assert (err.value.line, err.value.col) == (1, 1)


def test_028_elided_ipvs_fragment() -> None:
    text, path = _load("028")
    rs = parse_save(text, path)
    assert [(d.line, d.message) for d in rs.diagnostics] == [
        (24, "skipped elision"),
        (26, "COMMIT expected: table nat was not closed"),  # iptables-restore's words
    ]
    assert _counts(rs, "nat") == {"PREROUTING": 3, "cali-PREROUTING": 1}
    # the elision and the missing COMMIT: PREROUTING may lack rules after #3 (line 25)
    assert rs.capture.cut_at == 25 and rs.capture.limit("nat", "PREROUTING") == 3
    assert {g.kind.value for g in rs.capture.gaps} >= {"elided", "truncated"}
    assert len(rs.tables["nat"].chains) == 18
    pre = rs.chain("nat", "PREROUTING")
    assert pre is not None and pre.counters is not None and pre.counters.packets == 23
    assert pre.rules[2].target == Jump("DOCKER")
    with pytest.raises(ParseError) as err:
        parse_save(text, path, strict=True)
    assert (err.value.line, err.value.col) == (24, 1)


def test_005_strict_stops_at_prompt() -> None:
    text, path = _load("005")
    with pytest.raises(ParseError) as err:
        parse_save(text, path, strict=True)
    assert (err.value.line, err.value.col) == (1, 1)
    assert "shell prompt" in err.value.message


def test_008_nft_two_copies_of_kube_services() -> None:
    text, path = _load("008")
    rs = parse_nft(text, path)
    assert rs.format is Format.NFT
    assert NOTE in rs.notes and "no table header: assumed table nat" in rs.notes
    assert [(d.line, d.col) for d in rs.diagnostics] == [(2, 1), (12, 1), (13, 7)]
    chain = rs.chain("nat", "KUBE-SERVICES")
    assert chain is not None and len(chain.rules) == 10
    assert [r.number for r in chain.rules] == list(range(1, 11))
    last = chain.rules[-1]
    assert last.target == Jump("KUBE-NODEPORTS") and last.counters is not None
    assert (last.counters.packets, last.counters.bytes) == (7, 696)
    assert str(last.destination.network) == "192.168.0.101/32"  # type: ignore[union-attr]
    assert not any(type(m).__name__ == "OpaqueMatch" for r in chain.rules for m in r.matches)
    with pytest.raises(ParseError) as err:
        parse_nft(text, path, strict=True)
    assert (err.value.line, err.value.col) == (2, 1)
