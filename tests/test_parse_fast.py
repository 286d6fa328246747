"""``parse.fast`` is a shortcut: with it and without it, every input gives the same model.

Compared field by field, ``origin`` included (``Rule ==`` leaves it out), on the
shipped fixtures, the save-format corpus, synthetic dumps in both option orders and
generated kube-proxy-like lines, some of which must not take the shortcut.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _paths import CORPUS
from kpsim.errors import ParseError
from kpsim.formats.iptables.construct import constructor as _constructor
from kpsim.formats.iptables.construct import new_location, new_rule
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.save import parse_save
from kpsim.formats.iptables.write import render_save, save_string
from kpsim.inputs import synth
from kpsim.model import (
    Address,
    CommentMatch,
    Dnat,
    Jump,
    NatRange,
    OpaqueTarget,
    Option,
    RecentCommand,
    RecentMatch,
    Rule,
    Ruleset,
    SourceLocation,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "fixtures" / "iptables").glob("**/iptables-save.txt"))

CORPUS_FILES = sorted(p for pre in ("005", "007", "028") for p in CORPUS.glob(f"{pre}-*"))
KUBE_PROXY_DUMPS = sorted((ROOT / "tests" / "data" / "kube-proxy").glob("*.txt"))


def _rule_fields(rule: Rule) -> tuple[object, ...]:
    return tuple(getattr(rule, f.name) for f in dataclasses.fields(rule))


def assert_same(fast: Ruleset, general: Ruleset) -> None:
    assert fast == general
    assert fast.diagnostics == general.diagnostics
    for name, table in general.tables.items():
        for chain_name, chain in table.chains.items():
            other = fast.tables[name].chains[chain_name]
            assert other.origin == chain.origin
            assert [_rule_fields(r) for r in other.rules] == [_rule_fields(r) for r in chain.rules]


def both(text: str, *, strict: bool = False) -> tuple[Ruleset, Ruleset]:
    return parse_save(text, "p", strict=strict), parse_save(text, "p", strict=strict, fast=False)


def check(text: str) -> Ruleset:
    """Lenient and strict, the shortcut changes nothing (not even which error)."""
    fast, general = both(text)
    assert_same(fast, general)
    try:
        strict_general = parse_save(text, "p", strict=True, fast=False)
    except ParseError as exc:
        with pytest.raises(ParseError) as caught:
            parse_save(text, "p", strict=True)
        assert caught.value.to_dict() == exc.to_dict()
    else:
        assert_same(parse_save(text, "p", strict=True), strict_general)
    return fast


def _fast_share(text: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith("-A ")]
    fast = FastRules(frozenset())
    return sum(fast.shape(line) is not None for line in lines) / max(len(lines), 1)


# ---------------------------------------------------------------- real inputs


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture(path: Path) -> None:
    check(path.read_text())


@pytest.mark.skipif(not CORPUS_FILES, reason="corpus not present")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name[:3])
def test_corpus(path: Path) -> None:
    check(path.read_text())


@pytest.mark.parametrize("seed", [1, 2])
def test_synth_restore_order(seed: int) -> None:
    cluster = synth.synth_large(300, 5, seed=seed)
    text = synth.render_restore(cluster, cluster.nodes[0])
    assert _fast_share(text) > 0.9  # the shortcut is really taken
    check(text)


def test_synth_save_order() -> None:
    cluster = synth.synth_large(300, 5, seed=3)
    text = render_save(parse_save(synth.render_restore(cluster, cluster.nodes[0]), "r"))
    assert _fast_share(text) > 0.9
    check(text)


def test_declared_keyword_chain_keeps_its_meaning() -> None:
    head = "*nat\n:DNAT - [0:0]\n:RETURN - [0:0]\n:X - [0:0]\n"
    rules = "-A X -p tcp -m tcp -j DNAT --to-destination 1.2.3.4:80\n-A X -j RETURN\n"
    fast = check(head + rules + "COMMIT\n")
    dnat, ret = fast.chain("nat", "X").rules  # type: ignore[union-attr]
    assert dnat.target == OpaqueTarget("DNAT", (Option("--to-destination", ("1.2.3.4:80",)),))
    assert ret.target == Jump("RETURN")


@pytest.mark.parametrize("path", KUBE_PROXY_DUMPS, ids=lambda p: p.stem)
def test_kube_proxy_dump(path: Path) -> None:
    """kube-proxy's own test dumps, some with unquoted multi-word comments."""
    check(path.read_text())


@pytest.mark.parametrize(
    "line",
    [
        "-A X -m comment --comment kubernetes service portals -j KUBE-SERVICES",
        "-A X -m comment --comment ns1/svc1:p80 cluster IP -m tcp -p tcp -d 172.30.0.41 "
        "--dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
        "-A X -d 172.30.0.41/32 -p tcp -m comment --comment ns1/svc1:p80 cluster IP -m tcp "
        "--dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
        '-A X -m comment --comment "ns1/svc1:p80" cluster IP -j KUBE-SVC-XPGD46QRK7WJZT7O',
        "-A X -s 10.180.0.1/32 -m comment --comment a b -j KUBE-MARK-MASQ",
        "-A X -m comment --comment a b -m statistic --mode random --probability 0.5 -j X1",
        "-A X -m comment --comment a b ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
    ],
)
def test_unquoted_multi_word_comment_takes_the_general_path(line: str) -> None:
    """The shortcut reads one comment word: it must hand such lines on, not misread them."""
    assert FastRules(frozenset()).shape(line) is None
    fast = check("*nat\n:X - [0:0]\n:X1 - [0:0]\n" + line + "\nCOMMIT\n")
    (rule,) = fast.chain("nat", "X").rules  # type: ignore[union-attr]
    assert rule.target is not None and len(fast.diagnostics) == 1


# ---------------------------------------------------------------- generated lines


def mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Good values nine times in ten: a line takes the shortcut only if all its parts do."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


octet = mostly(st.integers(0, 255).map(str), st.sampled_from(["010", "00", "256", "999"]))
ips = mostly(st.tuples(octet, octet, octet, octet).map(".".join), st.sampled_from(["1.2.3"]))
nets = st.tuples(
    ips, mostly(st.sampled_from(["", "/32", "/24", "/8", "/0"]), st.sampled_from(["/33", "/08"]))
).map("".join)
ports = mostly(st.integers(0, 65535).map(str), st.sampled_from(["080", "65536", "http", "1:2"]))
probabilities = mostly(
    st.sampled_from(["0.2000000000", "0.33333333349", "0.5", "1", "0", "1.0000000000", ".5"]),
    st.sampled_from(["1.5", "0.1.2", "."]),
)
chains = st.sampled_from(["KUBE-SVC-ABC", "KUBE-SEP-X1", "KUBE-SERVICES", "KUBE-NODEPORTS"])
targets = st.sampled_from(
    ["KUBE-MARK-MASQ", "KUBE-SEP-X1", "ACCEPT", "RETURN", "DROP", "MASQUERADE", "LOG", "DNAT",
     "MARK", "KUBE-SVC-ABC", "DOCKER_OUTPUT"]
)  # fmt: skip
comment_text = st.text(st.sampled_from("ab/:- \"\\'!\tc.>"), min_size=0, max_size=12)
protos = mostly(st.sampled_from(["tcp", "udp", "sctp"]), st.sampled_from(["icmp", "6", "TCP"]))
seconds = mostly(st.integers(0, 10800).map(str), st.sampled_from(["-1", "1h", "010"]))
recent_commands = st.sampled_from(["--set", "--rcheck", "--update"]).flatmap(
    lambda cmd: (
        st.just([cmd])
        if cmd == "--set"
        else st.tuples(seconds, st.booleans()).map(
            lambda sr: [cmd, "--seconds", sr[0], *(["--reap"] if sr[1] else [])]
        )
    )
)
#: kube-proxy's two (``--src-type LOCAL``, ``--dst-type LOCAL``), and some it never writes
addrtypes = mostly(
    st.sampled_from([["--src-type", "LOCAL"], ["--dst-type", "LOCAL"]]),
    st.sampled_from(
        [
            ["!", "--src-type", "LOCAL"],
            ["--dst-type", "LOCAL", "--limit-iface-in"],
            ["--src-type", "UNICAST"],
            ["--dst-type", "local"],
            ["--src-type"],
        ]
    ),
)
masks = mostly(st.just("255.255.255.255"), st.sampled_from(["255.255.255.0", "255.255.255"]))


@st.composite
def comments(draw: st.DrawFn) -> str:
    text = draw(comment_text)
    kind = draw(st.sampled_from(["saved"] * 4 + ["quoted"] * 4 + ["raw"]))
    if kind == "saved":
        return save_string(text) if text else '""'
    if kind == "quoted":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text or "x"  # may be broken on purpose: a stray quote or a space


@st.composite
def kube_lines(draw: st.DrawFn) -> str:
    """A rule in iptables-save's or kube-proxy's order, sometimes bent out of shape."""
    chain = draw(chains)
    src = draw(st.none() | st.tuples(st.booleans(), nets))
    dst = draw(st.none() | st.tuples(st.booleans(), nets))
    proto = draw(st.none() | protos)
    module = draw(st.none() | protos)
    comment = draw(st.none() | comments())
    dport = draw(st.none() | ports) if module or not draw(st.integers(0, 4)) else None
    probability = draw(st.none() | probabilities)
    recent = draw(st.none() | recent_commands)
    local = draw(st.none() | addrtypes)
    affinity = draw(st.sampled_from(["KUBE-SEP-X1", "KUBE-SEP-X2"]))
    if draw(st.booleans()):
        nat_port = mostly(st.sampled_from(["", ":80", ":8080"]), st.sampled_from([":", ":65536"]))
        target = ["-j", "DNAT", "--to-destination", draw(ips) + draw(nat_port)]
    else:
        target = ["-j", draw(targets)]

    def addr(flag: str, given: tuple[bool, str] | None) -> list[str]:
        return [] if given is None else ["!"] * given[0] + [flag, given[1]]

    parts_comment = [] if comment is None else ["-m", "comment", "--comment", comment]
    parts_stat = [] if probability is None else ["-m", "statistic", "--mode", "random",
                                                 "--probability", probability]  # fmt: skip
    port = [] if dport is None else ["--dport", dport]
    saved_recent = [] if recent is None else ["-m", "recent", *recent, "--name", affinity, "--mask",
                                              draw(masks), "--rsource"]  # fmt: skip
    written_recent = [] if recent is None else ["-m", "recent", "--name", affinity, *recent]
    parts_local = [] if local is None else ["-m", "addrtype", *local]
    if draw(st.booleans()):  # iptables-save order
        words = [*addr("-s", src), *addr("-d", dst), *(["-p", proto] if proto else []),
                 *parts_comment, *saved_recent, *parts_local, *(["-m", module] if module else []),
                 *port,
                 *parts_stat, *target]  # fmt: skip
    else:  # kube-proxy's restore order
        words = [*parts_comment, *written_recent, *parts_local,
                 *(["-m", module, "-p", proto or module] if module else []),
                 *addr("-d", dst), *port, *addr("-s", src), *parts_stat, *target]  # fmt: skip
    bend = draw(st.sampled_from(["none"] * 10 + ["extra", "swap", "negate", "tab", "space"]))
    if bend == "extra":
        at = draw(st.integers(0, len(words)))
        words[at:at] = draw(st.sampled_from([["-i", "eth0"], ["--syn"], ["!"], ["-f"]]))
    elif bend == "swap" and len(words) > 2:
        at = draw(st.integers(0, len(words) - 2))
        words[at], words[at + 1] = words[at + 1], words[at]
    elif bend == "negate":
        words.insert(draw(st.integers(0, len(words))), "!")
    line = " ".join(["-A", chain, *words])
    if bend == "tab":
        line = line.replace(" ", "\t", 1)
    elif bend == "space":
        line += " "
    return line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(kube_lines(), min_size=1, max_size=8), st.booleans())
def test_generated_lines(lines: list[str], declare_keywords: bool) -> None:
    head = ":KUBE-SVC-ABC - [0:0]\n:KUBE-SEP-X1 - [0:0]\n"
    if declare_keywords:
        head += ":DNAT - [0:0]\n:ACCEPT - [0:0]\n"
    check("*nat\n" + head + "\n".join(lines) + "\nCOMMIT\n")


@settings(max_examples=200, deadline=None)
@given(ips, st.integers(0, 65535), comment_text.filter(lambda t: t != "!"))  # "!" negates
def test_well_formed_lines_take_the_shortcut(ip: str, port: int, text: str) -> None:
    ok = ipaddress.ip_address(ip) if _valid(ip) else None
    comment = save_string(text) if text else '""'
    lines = [
        f"-A KUBE-SEP-X -s {ip}/32 -m comment --comment {comment} -j KUBE-MARK-MASQ",
        f"-A KUBE-SEP-X -p tcp -m comment --comment {comment} -m tcp -j DNAT "
        f"--to-destination {ip}:{port}",
        f"-A KUBE-SERVICES -m comment --comment {comment} -m tcp -p tcp -d {ip} "
        f"--dport {port} -j KUBE-SVC-X",
    ]
    lines.append(
        f"-A KUBE-SEP-X -p tcp -m comment --comment {comment} -m recent --set --name KUBE-SEP-X "
        f"--mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination {ip}:{port}"
    )
    affinity = [
        f"-A KUBE-SVC-X -m comment --comment {comment} -m recent --rcheck --seconds {port} "
        "--reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j KUBE-SEP-X",
        f"-A KUBE-SVC-X -m recent --name KUBE-SEP-X --rcheck --seconds {port} --reap -j KUBE-SEP-X",
    ]
    fast = FastRules(frozenset())
    for line in lines:
        assert (fast.shape(line) is not None) == (ok is not None), line
    for line in affinity:
        assert fast.shape(line) is not None, line
    check("*nat\n" + "\n".join(lines + affinity) + "\nCOMMIT\n")


def _valid(ip: str) -> bool:
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- cheap construction


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (SourceLocation, ("p", 3, "-A X")),
        (Rule, ("nat", "X", 1, Jump("Y"), None, None, None, None, None, None, (), None, None)),
        (Address, (ipaddress.ip_network("10.0.0.0/8"), True, None)),
        (Jump, ("KUBE-SVC-X", False)),
        (Dnat, ((NatRange("1.2.3.4", None, 80, None),), False, False)),
        (CommentMatch, ("ns/svc:http cluster IP",)),
        (
            RecentMatch,
            (RecentCommand.RCHECK, "KUBE-SEP-X", 10800, True, None, False, None, "source", False),
        ),
    ],
)
def test_constructor_builds_the_real_thing(cls: type, args: tuple[object, ...]) -> None:
    built = _constructor(cls)(*args)
    expected = cls(*args)
    assert type(built) is cls
    assert built == expected
    assert hash(built) == hash(expected)
    assert repr(built) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, cls.__slots__[0], None)  # type: ignore[attr-defined]


def test_module_constructors() -> None:
    origin = new_location("p", 1, "t")
    assert origin == SourceLocation("p", 1, "t")
    rule = new_rule("nat", "X", 1, None, None, None, None, None, None, None, (), None, origin)
    assert rule == Rule("nat", "X", 1, None, origin=origin)
