"""kp_maps.py (kube-proxy's plain map and set elements read by one regex) gives the very
branches and set elements the general path (``kp_values.element_key`` and ``verdict`` a
part at a time) gives, or leaves the whole map or set to it: generated element lists,
plain and odd (a timeout, an interval, a comment, a damaged element), compared with the
fast path switched off, the diagnostics too."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.formats.nft import kp_lower, kp_maps
from kpsim.formats.nft.kp_lower import Statement, StatementError
from kpsim.formats.nft.kp_text import NftSet

_VMAP = "ip daddr . meta l4proto . th dport vmap @m"
_LOOKUP = "ip daddr @s reject"


def _read(rule: str, sets: dict[str, NftSet], fast: bool) -> object:
    """The rule lowered (or its error and offset), with kp_maps on or off."""
    saved = kp_lower.map_branches, kp_lower.set_elements
    if not fast:
        kp_lower.map_branches = lambda *a: None  # type: ignore[assignment]
        kp_lower.set_elements = lambda *a: None  # type: ignore[assignment]
    try:
        return Statement(rule, sets).read()
    except StatementError as exc:
        return (str(exc), exc.offset)
    finally:
        kp_lower.map_branches, kp_lower.set_elements = saved


def _sets(map_items: list[str], set_items: list[str]) -> dict[str, NftSet]:
    keys = ("ipv4_addr", "inet_proto", "inet_service")
    m = NftSet("m", 1, True, keys, "verdict", elements=[(2, 9, e) for e in map_items])
    s = NftSet("s", 3, False, ("ipv4_addr",), elements=[(4, 9, e) for e in set_items])
    return {"m": m, "s": s}


_addr = st.sampled_from(["10.0.0.1", "172.30.0.41", "255.255.255.255", "0.0.0.0", "10.0.0.1",
                         "010.0.0.1", "256.0.0.1", "10.0.0", "10.0.0.0/8", "10.0.0.1-10.0.0.9",
                         "fd00::1", "a.b.c.d"])  # fmt: skip
_proto = st.sampled_from(["tcp", "udp", "sctp", "TCP", "icmp", "6", "tcpx"])
_port = st.sampled_from(["80", "0", "65535", "65536", "99999", "080", "1-2", "http", "8_0"])
_verdict = st.sampled_from(["goto service-A/b", "jump x", "goto x", "drop", "accept",
                            "goto", "goto a b", 'goto "q"', "goto  x", "reject"])  # fmt: skip
_tail = st.sampled_from(["", "", "", " timeout 3h", ' comment "ns/svc"', " counter", "  "])


@st.composite
def _element(draw: st.DrawFn, is_map: bool) -> str:
    if draw(st.integers(0, 9)) == 0:  # a damaged element
        return draw(st.text(alphabet=' .:0123456789abcgotpu@"-', max_size=30))
    if not is_map:
        return draw(_addr) + draw(_tail)
    key = f"{draw(_addr)} . {draw(_proto)} . {draw(_port)}{draw(_tail)}"
    return f"{key} : {draw(_verdict)}"


@settings(max_examples=300, deadline=None)
@given(st.lists(_element(True), max_size=6), st.lists(_element(False), max_size=6))
def test_the_fast_path_is_the_general_ones_or_declines(maps: list[str], sets: list[str]) -> None:
    found = _sets(maps, sets)
    for rule in (_VMAP, _LOOKUP):
        assert _read(rule, found, True) == _read(rule, found, False)


def test_plain_elements_take_the_fast_path() -> None:
    """It must be used at all: kube-proxy's spelling is read by it, duplicates too."""
    maps = ["10.0.0.1 . tcp . 80 : goto service-A", "10.0.0.2 . udp . 53 : jump service-B"]
    found = _sets(maps, ["10.0.0.2", "10.0.0.1", "10.0.0.2"])
    keys = ("ip daddr", "meta l4proto", "th dport")
    branches = kp_maps.map_branches(found["m"], keys, "@m")
    assert branches is not None and len(branches) == 2
    elements = kp_maps.set_elements(found["s"], ("ip daddr",))
    assert elements is not None and [e[0].text for e in elements] == ["10.0.0.1", "10.0.0.2"]
    for rule in (_VMAP, _LOOKUP):
        assert _read(rule, found, True) == _read(rule, found, False)


@pytest.mark.parametrize(
    "element",
    [
        "10.0.0.1 . tcp . 80 timeout 3h : goto x",  # a timeout
        "10.0.0.0/8 . tcp . 80 : goto x",  # an interval
        '10.0.0.1 . tcp . 80 comment "a" : goto x',  # a comment
        "10.0.0.1 . tcp . 65536 : goto x",  # a port out of range: the general path's error
        "010.0.0.1 . tcp . 80 : goto x",  # a leading zero: ipaddress's rule
        "10.0.0.1 . tcp . 80 : goto",  # damaged
        "10.0.0.1 . tcp : goto x",  # a part missing
        "10.0.0.1 . TCP . 80 : goto x",  # not kube-proxy's spelling
    ],
)
def test_an_odd_element_leaves_the_whole_map_to_the_general_path(element: str) -> None:
    found = _sets(["10.0.0.2 . tcp . 80 : goto y", element], [element.split(" ")[0]])
    assert kp_maps.map_branches(found["m"], ("ip daddr", "meta l4proto", "th dport"), "@m") is None
    assert _read(_VMAP, found, True) == _read(_VMAP, found, False)
    assert _read(_LOOKUP, found, True) == _read(_LOOKUP, found, False)
