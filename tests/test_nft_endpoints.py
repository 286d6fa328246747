"""A whole load's endpoint chains, made as the scan reads their three lines
(``kp_hot.endpoint_chains``: the dnat line cut at known places, not split), are the whole
reader's: every protocol kube-proxy writes, with and without a port; an endpoint chain
added twice is left to the whole reader."""

from __future__ import annotations

import re

import pytest

from kpsim.formats.nft import kp_lazy
from kpsim.formats.nft.kube_proxy import parse_kube_proxy
from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft
from lazy_compare import model as _model

_DNAT = r"(\nadd rule ip kube-proxy endpoint-\S+ meta l4proto )tcp dnat to ([0-9.]+):[0-9]+\n"


def _clean() -> str:
    seed = synth.seed_workshop()
    return render_kube_proxy_nft(seed, seed.nodes[0])


def _same(text: str) -> None:
    """The whole load's model is the whole reader's, and the one pass took the input."""
    built = kp_lazy.scan_kube_proxy(text, "e")
    assert built is not None
    assert _model(built) == _model(parse_kube_proxy(text, "e"))


@pytest.mark.parametrize(
    "replacement",
    [
        r"\1udp dnat to \2:53\n",
        r"\1sctp dnat to \2:9\n",
        r"\1tcp dnat to \2\n",  # no port
        r"\1sctp dnat to \2\n",
        r"\1udp dnat to \2:65535\n",
    ],
)
def test_an_endpoint_chains_dnat_in_each_spelling_is_the_whole_readers(replacement: str) -> None:
    clean = _clean()
    text, n = re.subn(_DNAT, replacement, clean, count=3)
    assert n == 3
    _same(text)


def test_an_endpoint_chain_added_twice_is_read_whole() -> None:
    """Its second ``add chain`` and two rules are another run of the scan's: the chain's
    earlier lines are in the first, so the whole reader answers."""
    clean = _clean()
    found = re.search(r"\n(add chain ip kube-proxy endpoint-\S+\n(?:add rule [^\n]*\n){2})", clean)
    assert found is not None
    text = clean + found.group(1)
    assert kp_lazy.scan_kube_proxy(text, "e") is None
    assert kp_lazy.scan_kube_proxy(text, "e", lazy=True) is None
    rs = kp_lazy.read_kube_proxy(text, "e")
    assert _model(rs) == _model(parse_kube_proxy(text, "e"))


def _first_endpoint(text: str) -> str:
    found = re.search(r"\nadd chain ip kube-proxy (endpoint-\S+)\n", text)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize(
    "extra",
    [
        "add rule ip kube-proxy filter-forward jump {ep}",  # reached in filter too
        "add rule ip kube-proxy {ep} jump mark-for-masquerade",  # a deferred third rule
        "add rule ip kube-proxy {ep} counter",  # a rule read now: the pass runs again
        'add chain ip kube-proxy {ep} {{ comment "x" ; }}',  # so does a comment
    ],
)
def test_the_endpoint_chains_stand_in_is_never_seen(extra: str) -> None:
    """A whole load gives the endpoint chains one NftChain: a chain reached outside nat,
    read past its two lines or changed by a line read now has its own line and text."""
    clean = _clean()
    text = clean + extra.format(ep=_first_endpoint(clean)) + "\n"
    _same(text)


def test_an_endpoint_chain_named_as_a_built_in_one_is_lowered_as_its_own() -> None:
    """A chain named INPUT in the endpoint shape is lowered now (its hook slot may reset
    it): with its own name, line and text, not the stand-in's."""
    rule = "add rule ip kube-proxy INPUT"
    text = _clean() + (
        f"add chain ip kube-proxy INPUT\n{rule} ip saddr 10.9.0.1 jump mark-for-masquerade\n"
        f"{rule} meta l4proto tcp dnat to 10.9.0.1:80\n"
    )
    _same(text)


def test_mark_for_masquerade_not_captured_is_a_gap_of_the_endpoint_chains() -> None:
    """The endpoint chains made by the scan jump to it: their targets count (freeze adds
    them once for all) when the capture lacks it and only they jump there."""
    rule = "add rule ip kube-proxy"
    text = (
        "add table ip kube-proxy\n"
        f"add chain ip kube-proxy services\n{rule} services jump endpoint-a\n"
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n"
        f"{rule} nat-prerouting jump services\n"
        "add chain ip kube-proxy endpoint-a\n"
        f"{rule} endpoint-a ip saddr 10.0.0.1 jump mark-for-masquerade\n"
        f"{rule} endpoint-a meta l4proto tcp dnat to 10.0.0.1:80\n"
    )
    _same(text)
    built = kp_lazy.scan_kube_proxy(text, "e")
    assert built is not None and ("nat", "mark-for-masquerade") in built.capture.missing
