"""``show`` of a capture read on demand (chain counts, references and endpoints read off the
text: ``formats.iptables.lazy_text``, ``kube.fast_show``, ``kube.fast_services``) says what
the whole reader's ``show`` says, byte for byte, in JSON and in text.

``tests/test_lazy_load.py`` compares the JSON over every shipped capture, corpus dump and
generated dump; here: the text output too, generated dumps with affinity and Local
services, service chains with a line only the whole reader reads (the chain is read from
its rules), a Local drop read at once, and inputs that must be read whole.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _paths import REPO
from kpsim.formats import parse_captures
from kpsim.formats.iptables.lazy import LazyChain
from kpsim.formats.iptables.lazy_text import table_text
from kpsim.inputs import synth
from kpsim.kube.fast_services import fast_services
from kpsim.kube.frontends import RuleAt
from kpsim.kube.policy import policies, with_policies
from kpsim.kube.services import services
from kpsim.kube.show import ShowReport, summarize
from kpsim.model import Ruleset
from kpsim.render.json import show_json
from kpsim.render.text import show_text


def _both(text: str) -> tuple[str, str]:
    """(JSON + text of ``show``) from a lazy read and from the whole reader."""

    def render(rulesets: tuple[Ruleset, ...]) -> str:
        report = ShowReport("set", "origin", tuple(summarize(rs, "n") for rs in rulesets))
        words = show_text(report, color=False, chains=True, details=True)
        return show_json(report) + words

    return render(parse_captures(text, "p", lazy=True)), render(parse_captures(text, "p"))


def _lazy(text: str) -> bool:
    rs = parse_captures(text, "p", lazy=True)[0]
    nat = rs.table("nat")
    return nat is not None and table_text(nat) is not None


def _dump(services: int = 120, endpoints: int = 3, seed: int = 3) -> str:
    cluster = synth.synth_large(services, endpoints, seed=seed)
    return synth.render_restore(cluster, cluster.nodes[0])


def test_generated_dumps_show_the_same() -> None:
    for seed in (1, 2, 5):
        text = _dump(seed=seed)
        assert _lazy(text)
        fast, whole = _both(text)
        assert fast == whole


def test_shipped_saves_show_the_same_in_text() -> None:
    roots = [REPO / "fixtures" / "iptables", REPO / "tests" / "data" / "kube-proxy"]
    paths = [p for r in roots if r.is_dir() for p in sorted(r.rglob("*.txt"))]
    assert paths
    for path in paths:
        fast, whole = _both(Path(path).read_text(encoding="utf-8", errors="replace"))
        assert fast == whole, path


def _edit(text: str, prefix: str, extra: str) -> str:
    """``extra`` inserted after the first line starting with ``prefix``."""
    at = text.index("\n" + prefix) + 1
    end = text.index("\n", at) + 1
    return text[:end] + extra + text[end:]


@pytest.mark.parametrize(
    "prefix, make",
    [
        # a service chain's line only the whole reader reads (a mark match): from its rules
        ("-A KUBE-SVC-", lambda chain: f"-A {chain} -m mark --mark 0x1 -j KUBE-MARK-MASQ\n"),
        # an endpoint chain's DNAT read at once (a port range)
        (
            "-A KUBE-SEP-",
            lambda chain: f"-A {chain} -p tcp -j DNAT --to-destination 1.2.3.4:80-81\n",
        ),
        # a Local drop read at once in a filter chain
        (
            "-A KUBE-EXTERNAL-SERVICES",
            lambda chain: (
                f'-A {chain} -m comment --comment "a/b:p has no local endpoints" '
                "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 31000 "
                "-m mark ! --mark 0x2 -j DROP\n"
            ),
        ),
    ],
)
def test_lines_read_at_once_show_the_same(prefix: str, make: object) -> None:
    text = _dump()
    line = text[text.index("\n" + prefix) + 1 :].split("\n", 1)[0]
    chain = line.split()[1]
    edited = _edit(text, prefix, make(chain))  # type: ignore[operator]
    assert _lazy(edited)  # still read on demand, that line at once
    fast, whole = _both(edited)
    assert fast == whole


@pytest.mark.parametrize("extra", [" -s 10.9.9.9/32", " ! -d 10.9.9.0/24"])
def test_endpoint_jumps_with_more_matches_show_the_same(extra: str) -> None:
    # an endpoint jump with an address match before its statistic is still a deferred
    # line, read off the text: the shares must be what its rules give
    text = _dump()
    at = text.index(" -m statistic --mode random", text.index("\n-A KUBE-SVC-"))
    edited = text[:at] + extra + text[at:]
    assert _lazy(edited)
    fast, whole = _both(edited)
    assert fast == whole


def test_affinity_and_local_services_show_the_same() -> None:
    # the 10,000-service generator's shapes at a small size: affinity (-m recent) and
    # Local policies with and without local endpoints
    cluster = synth.synth_large(400, 2, seed=11)
    for node in cluster.nodes[:2]:
        text = synth.render_restore(cluster, node)
        fast, whole = _both(text)
        assert fast == whole


def test_an_ipset_capture_is_read_whole() -> None:
    text = "create KUBE-X hash:ip family inet\nadd KUBE-X 10.0.0.1\n" + _dump(30)
    rs = parse_captures(text, "p", lazy=True)[0]
    assert not any(type(c) is LazyChain for t in rs.tables.values() for c in t.chains.values())
    fast, whole = _both(text)
    assert fast == whole


def test_a_damaged_capture_falls_back_and_shows_the_same() -> None:
    text = _dump(30).replace("--probability 0.", "--probability 7.", 1)
    assert not _lazy(text)
    fast, whole = _both(text)
    assert fast == whole


def _same(a: object, b: object) -> bool:
    """``a == b``, told without pytest's diff of two big values (minutes for a show)."""
    return a == b


def test_frontends_read_off_the_sketch_show_the_same() -> None:
    # KUBE-SERVICES read on demand is sketched and its frontends read off the sketch: odd
    # destinations (a prefix, /32, negated), comments without a name, unquoted or none,
    # no protocol; each frontend's rule, built when asked for, is the whole reader's
    text = _dump()
    chains = [w.split()[0] for w in text.split("-j KUBE-SVC-")[1:4]]
    h1, h2, h3 = chains
    lines = [
        f'-m comment --comment "ns/x:p external IP" -m tcp -p tcp -d 10.9.0.0/16 --dport 80 '
        f"-j KUBE-SVC-{h1}",
        f"-m comment --comment ns/y:q -m udp -p udp -d 10.9.9.9/32 --dport 53 -j KUBE-SVC-{h2}",
        f'-m comment --comment "no name here" ! -d 10.9.9.8/32 -j KUBE-SVC-{h3}',
        f"-d 10.9.9.7 -j KUBE-SVC-{h1}",
        f'-m comment --comment "" -m sctp -p sctp --dport 9 -j KUBE-SVC-{h2}',
        f"-d 10.9.0.0/0 -j KUBE-SVC-{h3}",
    ]
    edited = _edit(text, "-A KUBE-SERVICES ", "".join(f"-A KUBE-SERVICES {w}\n" for w in lines))
    assert _lazy(edited)
    rs = parse_captures(edited, "p", lazy=True)[0]
    whole = parse_captures(edited, "p")[0]
    assert rs.chain("nat", "KUBE-SERVICES").sketch() is not None  # type: ignore[union-attr]
    fast_svcs, whole_svcs = fast_services(rs), services(whole)
    assert _same(fast_svcs, whole_svcs)
    sketched = 0
    for fast_svc, whole_svc in zip(fast_svcs, whole_svcs, strict=True):
        for f, w in zip(fast_svc.frontends, whole_svc.frontends, strict=True):
            sketched += isinstance(f.source, RuleAt)
            assert (f.rule, f.rule.origin, f.jump) == (w.rule, w.rule.origin, w.jump)
    assert sketched > 100
    fast, whole_text = _both(edited)
    assert _same(fast, whole_text)


def _cluster_ext(text: str) -> str:
    """A KUBE-EXT chain of a Cluster-policy service: it jumps to its KUBE-SVC chain for any
    source (``-A KUBE-EXT-H -j KUBE-SVC-H``)."""
    found = re.search(r"\n-A (KUBE-EXT-(\w+)) -j KUBE-SVC-\2\n", text)
    assert found is not None
    return found[1]


@pytest.mark.parametrize(
    "rule, local, read_off_text",
    [
        ("-s 10.0.0.0/8 -j KUBE-SVC-{h}", True, True),  # pod sources only
        ("! -s 10.0.0.0/8 -j KUBE-SVC-{h}", False, True),
        ("-m addrtype --src-type LOCAL -j KUBE-SVC-{h}", True, True),
        ("-m addrtype --dst-type LOCAL -j KUBE-SVC-{h}", False, True),
        ('-m comment --comment "-s 1.2.3.4" -j KUBE-SVC-{h}', False, True),
        ("-m mark --mark 0x1 -s 10.0.0.0/8 -j KUBE-SVC-{h}", True, False),  # read at once
    ],
)
def test_external_chains_read_off_the_text_show_the_same(
    rule: str, local: bool, read_off_text: bool
) -> None:
    # a KUBE-EXT chain's last jump replaced: whether the service is Local is read off the
    # text (``TableText.local_sources``) or, with a line read at once, from its rules
    text = _dump()
    ext = _cluster_ext(text)
    h = ext.removeprefix("KUBE-EXT-")
    edited = text.replace(f"\n-A {ext} -j KUBE-SVC-{h}\n", f"\n-A {ext} {rule.format(h=h)}\n")
    assert _lazy(edited)
    rs = parse_captures(edited, "p", lazy=True)[0]
    nat = table_text(rs.table("nat"))  # type: ignore[arg-type]
    assert nat is not None
    assert (nat.local_sources(ext) is not None) == read_off_text
    svc = next(s for s in fast_services(rs) if s.hash == h)
    shown = next(s for s in with_policies(rs, (svc,)) if s.hash == h)
    assert shown.traffic_policy_local == local
    fast, whole = _both(edited)
    assert _same(fast, whole)


_TWINS = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SVC-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SVL-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-EXT-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-CCCCCCCCCCCCCCCC - [0:0]
-A KUBE-SERVICES -m comment --comment "ns/twin:p cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SERVICES -m comment --comment "ns/twin:p cluster IP" -m tcp -p tcp -d 10.96.0.2 --dport 80 -j KUBE-SVC-BBBBBBBBBBBBBBBB
-A KUBE-EXT-AAAAAAAAAAAAAAAA -s 10.0.0.0/8 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SVC-BBBBBBBBBBBBBBBB -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SVL-BBBBBBBBBBBBBBBB -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SEP-CCCCCCCCCCCCCCCC -m tcp -p tcp -j DNAT --to-destination 10.1.0.1:80
COMMIT
"""  # noqa: E501


def test_services_sharing_a_name_take_the_policy_policies_keys_them_by() -> None:
    # two services named alike (by their comments): ``policies`` keys by name, the last
    # one's policy wins; ``with_policies`` reads only the services not already Local, and
    # must still give each the policy ``policies`` gives its key
    rs = parse_captures(_TWINS, "p")[0]
    found = services(rs)
    assert [(s.name, s.traffic_policy_local) for s in found] == [
        ("ns/twin:p", False),
        ("ns/twin:p", True),
    ]
    pols = policies(rs, found, masq=False)
    for s in with_policies(rs, found):
        p = pols[(s.name, s.protocol or "")]
        assert s.traffic_policy_local == (
            s.traffic_policy_local or p.external_local or p.internal_local
        )
    assert not with_policies(rs, found)[0].traffic_policy_local  # the last one's policy


_SAVE_ORDER = """# Generated by iptables-save v1.8.9
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-CCCCCCCCCCCCCCCC - [0:0]
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "ns/a:p cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-NODEPORTS -p tcp -m comment --comment ns/a:p -m tcp --dport 30001 -j KUBE-EXT-AAAAAAAAAAAAAAAA
-A KUBE-EXT-AAAAAAAAAAAAAAAA -m comment --comment "masquerade traffic for ns/a:p external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-AAAAAAAAAAAAAAAA {rule}
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "ns/a:p -> 10.1.0.1:80" -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SEP-CCCCCCCCCCCCCCCC -s 10.1.0.1/32 -m comment --comment ns/a:p -j KUBE-MARK-MASQ
-A KUBE-SEP-CCCCCCCCCCCCCCCC -p tcp -m comment --comment ns/a:p -m tcp -j DNAT --to-destination 10.1.0.1:80
COMMIT
"""  # noqa: E501


@pytest.mark.parametrize(
    "rule, local",
    [
        ('-s 10.0.0.0/8 -m comment --comment "pod traffic" -j KUBE-SVC-AAAAAAAAAAAAAAAA', True),
        ('! -s 10.0.0.0/8 -m comment --comment "pod" -j KUBE-SVC-AAAAAAAAAAAAAAAA', False),
        ("-m addrtype --src-type LOCAL -j KUBE-SVC-AAAAAAAAAAAAAAAA", True),
    ],
)
def test_external_chains_in_iptables_save_order_show_the_same(rule: str, local: bool) -> None:
    text = _SAVE_ORDER.format(rule=rule)
    assert _lazy(text)
    rs = parse_captures(text, "p", lazy=True)[0]
    nat = table_text(rs.table("nat"))  # type: ignore[arg-type]
    assert nat is not None and nat.source.order == 1  # iptables-save's
    assert nat.local_sources("KUBE-EXT-AAAAAAAAAAAAAAAA") is not None
    (shown,) = with_policies(rs, fast_services(rs))
    assert shown.traffic_policy_local == local
    fast, whole = _both(text)
    assert _same(fast, whole)


def test_chains_in_several_runs_show_the_same() -> None:
    # a service chain and an endpoint chain cut in two runs by another chain's line: the
    # endpoint jumps of both runs count, in order, and an endpoint chain's first DNAT wins
    # (here in a run before its own lines)
    text = _dump()
    seps = re.findall(r"\n-A (KUBE-SEP-\w+) [^\n]*-j DNAT", text)
    sep, later = seps[0], seps[1]
    edited = _edit(
        text, f"-A {sep} ", f"-A {later} -m tcp -p tcp -j DNAT --to-destination 9.9.9.9:99\n"
    )
    svc = re.search(r"\n-A (KUBE-SVC-\w+) -m comment [^\n]* -m statistic", text)
    assert svc is not None
    edited = _edit(edited, f"-A {svc[1]} ", f"-A {later} -j KUBE-MARK-MASQ\n")
    assert _lazy(edited)
    rs = parse_captures(edited, "p", lazy=True)[0]
    nat = table_text(rs.table("nat"))  # type: ignore[arg-type]
    assert nat is not None and nat.dnat()[later] == "9.9.9.9:99"
    assert len(nat.sep_jumps()[svc[1]][1]) > 1
    assert _same(fast_services(rs), services(parse_captures(edited, "p")[0]))
    fast, whole = _both(edited)
    assert _same(fast, whole)


def _affinity_chain(text: str) -> str:
    found = re.search(r"\n-A (KUBE-SVC-\w+) [^\n]*-m recent --name \S+ --rcheck --seconds", text)
    assert found is not None
    return found[1]


@pytest.mark.parametrize(
    "edit",
    [
        lambda t, c: t.replace("--rcheck --seconds 10800", "--rcheck --seconds 0010801", 1),
        lambda t, c: _edit(t, f"-A {c} ", f"-A {c} -m recent --name {c} --set -j KUBE-MARK-MASQ\n"),
        lambda t, c: _edit(t, f"-A {c} ", f"-A {c} -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"),
        # a line read at once: the chain is read from its rules
        lambda t, c: _edit(t, f"-A {c} ", f"-A {c} -m mark --mark 0x1 -j KUBE-MARK-MASQ\n"),
        lambda t, c: t,
    ],
)
def test_service_chains_with_affinity_show_the_same(edit: object) -> None:
    # a service chain with session affinity is read off its lines' fields
    cluster = synth.synth_large(120, 2, seed=11)
    text = synth.render_restore(cluster, cluster.nodes[0])
    chain = _affinity_chain(text)
    edited = edit(text, chain)  # type: ignore[operator]
    assert _lazy(edited)
    rs = parse_captures(edited, "p", lazy=True)[0]
    whole = services(parse_captures(edited, "p")[0])
    fast = fast_services(rs)
    assert _same(fast, whole)
    assert any(s.affinity_seconds for s in fast)
    assert _same(*_both(edited))


_SAVE_AFFINITY = """# Generated by iptables-save v1.8.9
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-CCCCCCCCCCCCCCCC - [0:0]
:KUBE-SEP-DDDDDDDDDDDDDDDD - [0:0]
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "ns/a:p cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "ns/a:p -> 10.1.0.1:80" -m recent --rcheck --seconds 600 --reap --name KUBE-SEP-CCCCCCCCCCCCCCCC --mask 255.255.255.255 --rsource -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "ns/a:p -> 10.1.0.2:80" -m recent --rcheck --seconds 700 --reap --name KUBE-SEP-DDDDDDDDDDDDDDDD --mask 255.255.255.255 --rsource -j KUBE-SEP-DDDDDDDDDDDDDDDD
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "ns/a:p -> 10.1.0.1:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "ns/a:p -> 10.1.0.2:80" -j KUBE-SEP-DDDDDDDDDDDDDDDD
-A KUBE-SEP-CCCCCCCCCCCCCCCC -p tcp -m comment --comment ns/a:p -m recent --set --name KUBE-SEP-CCCCCCCCCCCCCCCC --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.1.0.1:80
-A KUBE-SEP-DDDDDDDDDDDDDDDD -p tcp -m comment --comment ns/a:p -m recent --set --name KUBE-SEP-DDDDDDDDDDDDDDDD --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.1.0.2:80
COMMIT
"""  # noqa: E501


def test_service_chains_with_affinity_in_iptables_save_order_show_the_same() -> None:
    assert _lazy(_SAVE_AFFINITY)
    rs = parse_captures(_SAVE_AFFINITY, "p", lazy=True)[0]
    nat = table_text(rs.table("nat"))  # type: ignore[arg-type]
    assert nat is not None and nat.source.order == 1
    assert nat.fields("KUBE-SVC-AAAAAAAAAAAAAAAA", "seconds") == [
        ("600",),
        ("700",),
        (None,),
        (None,),
    ]
    (svc,) = fast_services(rs)
    assert svc.affinity_seconds == 700
    assert [e.destination for e in svc.endpoints] == ["10.1.0.1:80", "10.1.0.2:80"]
    assert _same((svc,), services(parse_captures(_SAVE_AFFINITY, "p")[0]))
    fast, whole = _both(_SAVE_AFFINITY)
    assert _same(fast, whole)


def test_a_table_read_on_demand_gives_one_text_view() -> None:
    # ``table_text`` is asked by every part of ``show``: made once, its readings shared
    rs = parse_captures(_dump(30), "p", lazy=True)[0]
    nat = rs.table("nat")
    assert nat is not None
    view = table_text(nat)
    assert view is not None and view is table_text(nat)
    assert view.sep_jumps() is table_text(nat).sep_jumps()  # type: ignore[union-attr]
