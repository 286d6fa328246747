"""No crash, no hang (#17): every reader, on generated and damaged input, ends in a model
with diagnostics or a ParseError, in time linear in the input.

The CI slice of ``bench/fuzz.py`` (which runs 100,000 inputs; docs/hardening.md):
hypothesis properties over each reader (iptables-save, ``-S``, ``-L``, nft text, the
metadata line), the number grammar and the prompt test against their definitions, a few
hundred of the fuzzer's mutated real dumps through ``show``, and the inputs the issue
names: numbers past 4,300 digits, Unicode digits, metadata of the wrong shape, a 50 MB
single line, a million junk lines, 100,000 blanks, deep nft braces, a long quoted string.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _paths import REPO
from kpsim import api
from kpsim.errors import ParseError
from kpsim.formats import parse_captures
from kpsim.formats.common import MAX_LINE, PROMPT_RE, is_prompt
from kpsim.formats.iptables.order import settle
from kpsim.formats.meta import ADDRESS_LISTS
from kpsim.formats.numbers import U32, U64, decimal, hexadecimal, probability, strtoul
from kpsim.inputs.fixtures import FixtureSet, NodeSource
from kpsim.kube.routing import node_addresses, node_context
from kpsim.kube.scenario import pods_of
from kpsim.kube.show import ShowReport
from kpsim.model import Format, Ruleset
from kpsim.model.rules import EXCERPT, Diagnostic, caret_offset, excerpt


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kpsim_bench_fuzz", REPO / "bench/fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()
T = TypeVar("T")
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def read(text: str, fmt: Format | None = None) -> tuple[Ruleset, ...] | None:
    """Lenient and strict: a model, or (strict only) a ParseError; never anything else.
    The lenient model's diagnostics hold a bounded slice of their line."""
    rulesets = parse_captures(text, "f.txt", fmt=fmt)
    for rs in rulesets:
        for d in rs.diagnostics:
            assert d.line >= 1 and d.col >= 1, d
            assert len(d.text) <= EXCERPT + 2 and len(d.message) <= 300, d
    try:
        parse_captures(text, "f.txt", fmt=fmt, strict=True)
    except ParseError as exc:
        assert exc.line >= 1 and exc.col >= 1
        assert len(str(exc)) < 1000
    return rulesets


# ---------------------------------------------------------------- strategies

NUMBERS = st.one_of(
    st.sampled_from(fuzz.NUMBERS),
    st.integers(0, 2**70).map(str),
    st.text(alphabet="0123456789²٣١ -x.", min_size=1, max_size=25),
)
WORDS = st.one_of(st.sampled_from(fuzz.WORDS), NUMBERS, st.text(max_size=10))
RULE_WORDS = st.lists(WORDS, max_size=14).map(" ".join)
OPTIONS = st.sampled_from(
    [
        "-p tcp -m tcp --dport {}", "-m statistic --mode random --probability {}",
        "-m statistic --mode nth --every {} --packet {}", "-m recent --rcheck --seconds {}",
        "-m recent --update --hitcount {} --name X", "-m mark --mark {}/{}", "-c {} {}",
        "-j DNAT --to-destination 10.0.0.1:{}", "-j MARK --set-xmark {}/{}", "-p {}",
        "-j LOG --log-level {}", "-j MASQUERADE --to-ports {}-{}", "-m multiport --dports {},{}",
        "-j CONNMARK --save-mark --nfmask {}", "-m comment --comment {}",
    ]
)  # fmt: skip


@st.composite
def option(draw: st.DrawFn) -> str:
    shape = draw(OPTIONS)
    return shape.format(*(draw(NUMBERS) for _ in range(shape.count("{}"))))


RULE = st.builds(
    lambda chain, opts, rest: f"-A {chain} {' '.join(opts)} {rest}",
    st.sampled_from(["KUBE-SERVICES", "X", "KUBE-SEP-A"]),
    st.lists(option(), max_size=4),
    RULE_WORDS,
)


@st.composite
def save_text(draw: st.DrawFn) -> str:
    lines = ["*nat"]
    for chain in draw(st.lists(st.sampled_from(["PREROUTING", "X", "DNAT"]), max_size=3)):
        lines.append(f":{chain} {draw(st.sampled_from(['ACCEPT', '-', 'Y']))} "
                     f"[{draw(NUMBERS)}:{draw(NUMBERS)}]")  # fmt: skip
    for rule in draw(st.lists(RULE, max_size=8)):
        prefix = f"[{draw(NUMBERS)}:{draw(NUMBERS)}] " if draw(st.booleans()) else ""
        lines.append(prefix + rule)
    lines += draw(st.lists(st.sampled_from(["-I X {} -j ACCEPT", "-N Y", "COMMIT"]), max_size=2))
    text = "\n".join(lines).replace("{}", draw(NUMBERS))
    return text + draw(st.sampled_from(["\n", "", "\r\n"]))


@st.composite
def rules_text(draw: st.DrawFn) -> str:
    head = [f"-P INPUT ACCEPT -c {draw(NUMBERS)} {draw(NUMBERS)}", "-N KUBE-SERVICES"]
    return "\n".join(head + draw(st.lists(RULE, max_size=6))) + "\n"


LIST_TAILS = st.sampled_from(fuzz._LIST_TAILS)


@st.composite
def list_text(draw: st.DrawFn) -> str:
    num, verbose = draw(st.booleans()), draw(st.booleans())
    counts = f" {draw(NUMBERS)} packets, {draw(NUMBERS)} bytes" if verbose else ""
    lines = [f"Chain KUBE-SVC-X (policy ACCEPT{counts})"]
    cols = ["num"] * num + ["pkts", "bytes"] * verbose + ["target", "prot", "opt"]
    lines.append("  ".join(cols + ["in", "out"] * verbose + ["source", "destination"]))
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(NUMBERS)] * num + [draw(NUMBERS), draw(NUMBERS)] * verbose
        row += [draw(st.sampled_from(["ACCEPT", "DNAT", "MARK", "LOG", "KUBE-SEP-Y"]))]
        row += [draw(st.sampled_from(["all", "tcp", "6"]) | NUMBERS), "--"]
        row += ["*", "*"] * verbose + ["0.0.0.0/0", "0.0.0.0/0"]
        row += [draw(LIST_TAILS).format(n=draw(NUMBERS)), draw(RULE_WORDS)]
        lines.append("  ".join(row))
    if draw(st.booleans()):
        lines.append(f"Total number of rules: {draw(NUMBERS)}  ← {draw(NUMBERS)}")
    return "\n".join(lines) + "\n"


@st.composite
def nft_text(draw: st.DrawFn) -> str:
    lines = ["table ip nat {", "  chain KUBE-SERVICES {", "    type nat hook prerouting;"]
    for _ in range(draw(st.integers(0, 5))):
        lines.append(
            f"    ip daddr 10.0.0.1 tcp dport {draw(NUMBERS)} meta mark and {draw(NUMBERS)} "
            f"== 0 counter packets {draw(NUMBERS)} bytes {draw(NUMBERS)} {draw(RULE_WORDS)}"
        )
    lines.append("    " + "{ " * draw(st.integers(0, 300)) + draw(RULE_WORDS))
    lines += ["  }"] * draw(st.integers(0, 3))
    return "\n".join(lines) + "\n"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
META_VALUES = st.one_of(
    JSON,
    st.lists(st.sampled_from(fuzz.ADDRESSES) | JSON, max_size=4),
    st.lists(st.fixed_dictionaries({"ip": st.sampled_from(fuzz.ADDRESSES) | JSON}), max_size=3),
    st.dictionaries(st.sampled_from(["eth0", "lo"]), st.lists(st.sampled_from(fuzz.ADDRESSES))),
)
META_KEYS = st.sampled_from(["node", "local_addresses", "private_ips", "interfaces", "pods", "x"])


#: What JSON can say that no number or value of kpsim's schema is.
META_ODDITIES = st.sampled_from(["9" * 5000, "NaN", "-Infinity", "1e999", "[" * 2000])


@st.composite
def meta_text(draw: st.DrawFn) -> str:
    meta = draw(st.dictionaries(META_KEYS, META_VALUES, max_size=5))
    text = json.dumps(meta)
    if draw(st.booleans()):
        text = text[:-1] + (", " if meta else "") + f'"n": {draw(META_ODDITIES)}}}'
    return "# kpsim:meta " + text + "\n*nat\n:X ACCEPT [0:0]\nCOMMIT\n"


# ---------------------------------------------------------------- every reader


@PROPERTY
@given(save_text())
def test_save_reader(text: str) -> None:
    read(text, Format.SAVE)
    read(text)


@PROPERTY
@given(rules_text())
def test_rules_reader(text: str) -> None:
    read(text, Format.RULES)


@PROPERTY
@given(list_text())
def test_list_reader(text: str) -> None:
    read(text, Format.LIST)


@PROPERTY
@given(nft_text())
def test_nft_reader(text: str) -> None:
    read(text, Format.NFT)


@PROPERTY
@given(meta_text())
def test_metadata_is_what_its_schema_says(text: str) -> None:
    """Whatever the line held, the metadata kpsim keeps has the schema's types, and what
    kube.scenario reads from it (addresses, interfaces, pods) does not fail."""
    rulesets = read(text)
    assert rulesets is not None
    meta = rulesets[0].metadata
    for key in ADDRESS_LISTS & set(meta):
        assert all(isinstance(a, str) and ipaddress.ip_interface(a) for a in meta[key])  # type: ignore[attr-defined]
    if "node" in meta:
        assert isinstance(meta["node"], str)
    if "pods" in meta:
        assert all(isinstance(p, dict) for p in meta["pods"])  # type: ignore[attr-defined]
    node_addresses(meta, ())
    node_context(meta, ())
    pods_of(meta)


@PROPERTY
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    for fmt in (None, Format.SAVE, Format.LIST, Format.NFT):
        try:
            read(text, fmt)
        except ParseError:
            assert fmt is None  # only detection refuses a text outright


# ---------------------------------------------------------------- grammars of record


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789²٣١１-+x_ .e", max_size=30) | st.integers(0, 2**80).map(str))
def test_decimal_is_ascii_digits_in_range(text: str) -> None:
    expected = int(text) if re.fullmatch(r"[0-9]+", text) else None
    assert decimal(text, U64) == (expected if expected is not None and expected <= U64 else None)
    assert decimal(text, U32) == (expected if expected is not None and expected <= U32 else None)


def test_numbers_past_python_limits_are_bad_numbers_not_errors() -> None:
    assert decimal("9" * 5000, U64) is None
    assert decimal("0" * 5000 + "7", U64) == 7
    assert hexadecimal("0x" + "f" * 5000, U32) is None
    assert strtoul("0" + "7" * 5000, U32) is None
    assert strtoul("040000", U32) == 0o40000 and strtoul("0x4000", U32) == 0x4000
    assert strtoul("0b101", U32) is None and strtoul("1_000", U32) is None
    for bad in ("nan", "inf", "1e400", "٠.٥", "0x1p-1", "1.5", "-0.5"):
        with pytest.raises(ValueError):
            probability(bad)
    assert probability("0." + "5" * 5000) > 0


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.text(alphabet="a@:#$ /\t~\n\u00a0", max_size=16))
def test_is_prompt_is_the_prompt_regex(text: str) -> None:
    assert is_prompt(text) == bool(PROMPT_RE.match(text))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet="ab ", min_size=1, max_size=900), st.integers(1, 1000))
def test_excerpt_keeps_the_caret_under_its_column(line: str, col: int) -> None:
    col = min(col, len(line))
    text, text_col = excerpt(line, col)
    assert len(text) <= EXCERPT + 2
    assert text[caret_offset(col, text_col)] == line[col - 1]
    rendered = Diagnostic("p", 1, col, "m", text, text_col).render().split("\n")
    assert rendered[2].index("^") - 4 == caret_offset(col, text_col)


# ---------------------------------------------------------------- what the issue found

HEAD = "Chain X (policy ACCEPT)\nnum  pkts bytes target prot opt in out source destination\n"


@pytest.mark.parametrize(
    "text",
    [
        "*nat\n:X ACCEPT [" + "9" * 5000 + ":0]\nCOMMIT\n",
        "*nat\n[" + "9" * 5000 + ":1] -A X -j ACCEPT\nCOMMIT\n",
        "*nat\n-I X " + "9" * 5000 + " -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -c ² 3 -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -p tcp -m tcp --dport " + "9" * 5000 + " -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -p tcp -m tcp --dport ٣ -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -s 1٣.0.0.1/32 -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -m statistic --mode nth --every ² -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -m recent --rcheck --seconds " + "9" * 5000 + " --reap --name a --mask "
        "255.255.255.255 --rsource -j ACCEPT\nCOMMIT\n",
        "*nat\n-A X -j LOG --log-level ²\nCOMMIT\n",
        "-P INPUT ACCEPT -c ² 3\n-N X\n",
        HEAD + "1 " + "9" * 5000 + "K 0 ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0\n",
        HEAD + "² 0 0 ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0\n",
        HEAD + "1 0 0 ACCEPT ٣ -- * * 0.0.0.0/0 0.0.0.0/0 tcp dpt:²\n",
        HEAD + "1 0 0 ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0 statistic mode nth every " + "9" * 5000,
        "Chain X (policy ACCEPT " + "9" * 5000 + " packets, 0 bytes)\n",
        HEAD + "Total number of rules: " + "9" * 5000 + "\n",
        "table ip nat {\n chain X {\n  counter packets " + "9" * 5000 + " bytes 0 accept\n }\n}\n",
    ],
    ids=lambda t: re.sub(r"\W+", "-", t[:40]),
)
def test_bad_numbers_are_diagnostics_with_a_column(text: str) -> None:
    (rs,) = read(text) or ()
    assert rs.diagnostics, "a bad number is never silent"
    with pytest.raises(ParseError) as caught:
        parse_captures(text, "f.txt", strict=True)
    assert caught.value.line >= 1 and caught.value.col >= 1


@pytest.mark.parametrize(
    ("meta", "dropped"),
    [
        ({"local_addresses": "10.0.0.1/24"}, "local_addresses"),
        ({"local_addresses": ["10.0.0.1/24", 5, "x"]}, "local_addresses[1]"),
        ({"private_ips": {"a": 1}}, "private_ips"),
        ({"pods": "p"}, "pods"),
        ({"pods": [{"ip": "x"}, {"ip": "10.1.1.1", "name": 5}]}, "pods[0]"),
        ({"interfaces": ["eth0"]}, "interfaces"),
        ({"interfaces": {"eth0": "10.0.0.1"}}, "interfaces.'eth0'"),
        ({"node": 5}, "node"),
    ],
)
def test_metadata_of_the_wrong_shape_is_dropped_with_a_diagnostic(
    meta: dict[str, object], dropped: str
) -> None:
    line = "# kpsim:meta " + json.dumps({"schema": "s", **meta})
    (rs,) = read(line + "\n*nat\nCOMMIT\n") or ()
    d = next(d for d in rs.diagnostics if "kpsim:meta" in d.message)
    key = dropped.partition("[")[0].partition(".")[0]
    assert f"kpsim:meta {dropped} " in d.message
    assert d.line == 1 and d.col == line.index(f'"{key}"') + 1
    assert rs.metadata["schema"] == "s"
    node_context(rs.metadata, ())  # what was kept is what scenario can read
    pods_of(rs.metadata)


def test_metadata_numbers_json_cannot_give_drop_their_key_only() -> None:
    line = '# kpsim:meta {"node": "n", "big": ' + "9" * 5000 + ', "nan": NaN}'
    (rs,) = read(line + "\n*nat\nCOMMIT\n") or ()
    assert dict(rs.metadata) == {"node": "n"}
    assert len([d for d in rs.diagnostics if "kpsim:meta" in d.message]) == 2
    deep = "# kpsim:meta " + "[" * 100_000 + "\n*nat\nCOMMIT\n"
    (rs,) = read(deep) or ()
    assert rs.metadata == {} and rs.diagnostics[0].message == "skipped bad kpsim:meta line"


# ---------------------------------------------------------------- linear time, bounded output


class _TooSlow(Exception):
    pass


def _too_slow(signum: int, frame: object) -> None:
    raise _TooSlow


def _within(limit: float, run: Callable[[], T]) -> T:
    """``run()`` in under ``limit`` seconds: a quadratic path fails here, it does not
    hang the suite (the regex engine checks for signals as it backtracks)."""
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return run()
    except _TooSlow:
        pytest.fail(f"not done in {limit} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _timed(text: str, fmt: Format | None = None, limit: float = 4.0) -> tuple[Ruleset, ...]:
    return _within(limit, lambda: parse_captures(text, "big.txt", fmt=fmt))


@pytest.mark.parametrize(
    "text",
    [
        "\n" * 400_000 + "*nat\nCOMMIT\n",  # blank lines: ^\s* ran on over them (quadratic)
        "*nat\n-A X -j ACCEPT" + " " * 100_000 + "x\n" + " " * 100_000 + "\nCOMMIT\n",
        HEAD + "1 0 0 ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0" + " " * 100_000 + "x\n",
        "Chain X (policy ACCEPT)\n" + "@" * 200_000 + "\n" + "a@:#" * 50_000 + "\n",
        "# iptables -t nat\n*nat\n# " + "iptables " * 50_000 + "\nCOMMIT\n",
        HEAD + "1 0 0 ACCEPT all -- * * 0.0.0.0/0 0.0.0.0/0 " + "/* " * 20_000 + "\n",
        "Chain X (policy ACCEPT)\ntotal rules" + " " * 200_000 + "x\n",
        "*nat\n-A X" + " -m zzz" * 9_000 + "\nCOMMIT\n",
        '*nat\n-A X -m comment --comment "' + '\\"' * 30_000 + "\nCOMMIT\n",
        "table ip nat {\n chain X {\n  " + "{" * 1_000_000 + "\n" + "}\n" * 100_000 + "}\n}\n",
        '*nat\n-A X -m comment --comment "' + "q" * 10_000_000 + '" -j ACCEPT\nCOMMIT\n',
    ],
    ids=[
        "blank-lines",
        "blanks",
        "list-blanks",
        "prompt-at",
        "prompt-table",
        "comment-opens",
        "footer",
        "modules",
        "escapes",
        "nft-braces",
        "quoted-10MB",
    ],
)
def test_pathological_lines_are_read_in_linear_time(text: str) -> None:
    for rs in _timed(text):
        assert all(len(d.text) <= EXCERPT + 2 for d in rs.diagnostics)
        assert len(rs.diagnostics) < 100


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.none(), st.integers(0, 80)), max_size=150))
def test_settle_is_list_insert(ops: list[int | None]) -> None:
    """``-A`` (None) and ``-I N`` (an index) in a row: ``order.settle`` leaves the rules
    where ``list.insert`` does, one by one."""
    expected: list[int] = []
    inserted: dict[int, int] = {}
    for i, op in enumerate(ops):
        index = i if op is None else min(op, i)
        expected.insert(index, i)
        if index < i:
            inserted[i] = index
    assert settle(list(range(len(ops))), inserted) == expected


def test_inserts_at_the_front_are_not_quadratic() -> None:
    n = 300_000  # list.insert at the front, one by one: minutes
    settled = _within(5, lambda: settle(list(range(n)), dict.fromkeys(range(n), 0)))
    assert settled == list(range(n - 1, -1, -1))
    text = "*nat\n" + "-I X 1 -j ACCEPT\n-A X -j DROP\n-I X 2 -j RETURN\n" * 3 + "COMMIT\n"
    (rs,) = _timed(text)
    rules = rs.tables["nat"].chains["X"].rules
    assert [r.number for r in rules] == list(range(1, 10))
    verdicts = [r.target.verdict.value[0] for r in rules]  # type: ignore[union-attr]
    assert verdicts == ["A", "R", "A", "R", "A", "R", "D", "D", "D"]  # as list.insert leaves them


def test_a_million_junk_lines() -> None:
    (rs,) = _timed("*nat\n" + "junk line\n" * 1_000_000 + "COMMIT\n", limit=20.0)
    assert len(rs.diagnostics) == 1_000_000


def test_an_over_long_rule_line_is_one_diagnostic() -> None:
    line = "-A X -m comment --comment x" + " y" * MAX_LINE
    (rs,) = _timed("*nat\n" + line + "\nCOMMIT\n")
    (d,) = rs.diagnostics
    assert "not read" in d.message and d.text.startswith("-A X") and d.text.endswith("…")
    assert rs.capture.gaps  # the chain has a hole there


def test_show_on_a_50_mb_single_line_is_quick(tmp_path: Path) -> None:
    """``kpsim show`` echoed the line of a diagnostic through the text renderer, which
    wrapped all 50 MB of it; now the diagnostic keeps 200 characters around its column."""
    path = tmp_path / "huge-one-line.txt"
    path.write_text("-A KUBE-SERVICES -m comment --comment x" + " y" * (25 << 20))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kpsim", "show", "-v", str(path)],
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert time.perf_counter() - start < 30
    assert done.returncode == 0, done.stderr[-500:]
    assert len(done.stdout) < 10_000 and b"not read" in done.stdout


def test_show_text_keeps_names_short_and_carets_under_their_column() -> None:
    """Names a capture gives (a 1 MB table name, a 1 MB chain name) are cut in ``show``'s
    text; a diagnostic is its 200-character excerpt on one line (rich wrapped it at 140
    columns, away from its caret, at 100 µs a diagnostic), the caret under its column."""
    from kpsim.render.text import show_text

    name = "t" * (1 << 20)
    text = f"*{name}\n-A {name} -j ACCEPT\n-A X -p tcp --dport " + "7" * 300 + "\nCOMMIT\n"
    report = fuzz_show(parse_captures(text, "f.txt"))
    lines = show_text(report, details=True, width=2 * EXCERPT).splitlines()
    assert max(map(len, lines)) <= 2 * EXCERPT
    at = next(i for i, line in enumerate(lines) if "bad port" in line)
    excerpt_line, caret_line = lines[at + 1], lines[at + 2]
    assert len(excerpt_line) > 140 and excerpt_line[caret_line.index("^")] == "7"


def fuzz_show(rulesets: tuple[Ruleset, ...]) -> ShowReport:
    """``api.show`` of one node's captures, as ``kpsim show`` builds it."""
    source = NodeSource("n", Path("f.txt"), (Path("f.txt"),))
    return api.show(
        api.Loaded(FixtureSet("s", "o", (source,)), (api.LoadedNode(source, rulesets),))
    )


# ---------------------------------------------------------------- the fuzzer's own inputs

SEEDS = fuzz.seed_texts()
POOL = fuzz.word_pool(SEEDS)


@pytest.mark.parametrize("block", range(6))
def test_mutated_real_dumps(block: int) -> None:
    """300 of ``bench/fuzz.py``'s inputs (seed 17): crashes, hangs and broken invariants
    are reported by site, as the full run reports them."""
    problems = []
    for index in range(block * 50, block * 50 + 50):
        label, text = fuzz.make_input(17, index, SEEDS, POOL)
        problems += [(index, label, p) for p in fuzz.check(text, sample_fast=index % 4 == 0)]
    assert problems == []
