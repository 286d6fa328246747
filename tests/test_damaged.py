"""The shipped fixture damaged each way a real capture is damaged (fixtures/damaged/, made by
tests/damage.py): every answer is what the kernel would do, or explicitly uncertain with
its reason and the line of the capture behind it — through the library and the CLI.

Each committed file is first checked to be exactly what its damage makes of the shipped
fixture today (``list-no-v.txt``, made by the real ``iptables``, only as root).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import damage
from kpsim import api
from kpsim.cli.main import main
from kpsim.engine.unseen import POSTROUTING_UNSEEN
from kpsim.formats import load_file, parse_text
from kpsim.kube.mode import ProxyMode, proxy_mode
from kpsim.kube.scenario import NodeInput, NodeTrace, TraceRequest, trace_nodes
from kpsim.model import Dnat, Family, Format, GapKind, Rule, Ruleset
from kpsim.verify import netns

DAMAGED = damage.DAMAGED_DIR
CUT_FILE = DAMAGED / "cut-mid-line.txt"
#: The line the cut leaves unfinished (the file's last, with no newline after it).
CUT_LINE = CUT_FILE.read_text().count("\n") + 1
CLUSTER_IP = ("172.20.177.168", 8080)  # node-test-01-svc, the service of NodePort 30080
#: The first endpoint's exact share in KUBE-SVC-6FADE4ADMXCZ7ACT (715827883/2^31).
FIRST_SHARE = Fraction(715827883, 2**31)
MODES = {
    "ipvs-mode.txt": (ProxyMode.IPVS, "IPVS"),
    "userspace-mode.txt": (ProxyMode.USERSPACE, "userspace"),
}  # nftables-mode.nft is traced now: tests/test_nft_kube_proxy.py

Key = tuple[str, str]  # (verdict, destination)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(damage.REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)


# ---------------------------------------------------------------- helpers


@cache
def shipped() -> str:
    return damage.shipped_text()


@cache
def clean() -> Ruleset:
    return parse_text(shipped(), str(damage.SHIPPED))


@cache
def damaged(name: str) -> Ruleset:
    return load_file(DAMAGED / name)


def node_trace(rs: Ruleset, port: int = 30080, dest: str | None = None) -> NodeTrace:
    report = trace_nodes([NodeInput(damage.NODE, rs)], TraceRequest(port=port, dest=dest))
    (node,) = report.nodes
    return node


def shares(node: NodeTrace) -> dict[Key, Fraction]:
    out: dict[Key, Fraction] = {}
    for o in node.outcomes:
        key = (o.outcome.verdict.value, o.destination)
        out[key] = out.get(key, Fraction(0)) + o.outcome.probability
    return out


def answers(node: NodeTrace) -> list[tuple[str, str, Fraction, bool | None]]:
    """What a user reads of each outcome: verdict, destination, share, masquerade."""
    return sorted(
        (o.outcome.verdict.value, o.destination, o.outcome.probability, o.outcome.masquerade)
        for o in node.outcomes
    )


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def trace_json(path: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run("trace", str(path), "--port", "30080", "-o", "json", *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def words(text: str) -> str:
    """Text with rich's wrapping undone (any run of blanks is one space)."""
    return " ".join(text.split())


def dnat_addresses(rs: Ruleset) -> set[str]:
    return {
        rng.addr_lo
        for rule in rules_of(rs)
        if isinstance(rule.target, Dnat)
        for rng in rule.target.to
        if rng.addr_lo is not None
    }


def rules_of(rs: Ruleset) -> Iterator[Rule]:
    for table in rs.tables.values():
        for chain in table.chains.values():
            yield from chain.rules


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the only line of ``path`` that holds ``needle``."""
    (number,) = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return number


# ---------------------------------------------------------------- the files do not drift


@pytest.mark.parametrize("made", [d for d in damage.DAMAGED if not d.kernel], ids=lambda d: d.name)
def test_committed_file_is_what_its_damage_makes(made: damage.Damage) -> None:
    assert (DAMAGED / made.name).read_bytes() == made.make(shipped()).encode()


def test_readme_has_one_row_per_file() -> None:
    readme = (DAMAGED / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|", readme, re.M)
    files = sorted(p.name for p in DAMAGED.iterdir() if p.name != "README.md")
    assert sorted(rows) == files


def _iptables_version_here() -> str | None:
    try:
        return damage.iptables_version()
    except (OSError, subprocess.SubprocessError):
        return None


@pytest.mark.kernel
@pytest.mark.skipif(not netns.available(), reason="needs root plus ip/iptables/iptables-restore")
def test_list_no_v_is_what_the_real_iptables_prints() -> None:
    """Made once by the real tool (python3 tests/damage.py --list); compared only where the
    same iptables version runs, since another prints the listing a little differently."""
    text = (DAMAGED / "list-no-v.txt").read_text()
    version = _iptables_version_here()
    if version is None or f"listed there by {version}." not in text.splitlines()[1]:
        pytest.skip(f"list-no-v.txt was made by another iptables than {version!r}")
    assert damage.make_list_no_v(shipped()) == text


@pytest.mark.kernel
@pytest.mark.skipif(
    not netns.available() or shutil.which("ip6tables-restore") is None,
    reason="needs root plus ip/ip6tables-restore/ip6tables-save",
)
def test_ipv6_block_is_what_ip6tables_save_prints_back() -> None:
    with netns.Namespace(f"kpsim-damage-{os.getpid()}") as ns:
        ns.run(["ip6tables-restore"], input=damage.IPV6_NAT)
        back = ns.run(["ip6tables-save", "-t", "nat"]).stdout

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert body(back) == body(damage.IPV6_NAT)


@pytest.mark.kernel
@pytest.mark.skipif(not netns.available(), reason="needs root plus ip/iptables/iptables-restore")
def test_markdown_blocks_are_what_iptables_dash_s_prints() -> None:
    with netns.Namespace(f"kpsim-damage-{os.getpid()}") as ns:
        ns.load_rules(shipped())
        for table in ("filter", "nat"):
            printed = ns.run(["iptables", "-t", table, "-S"]).stdout.splitlines()
            assert printed == damage.as_dash_s(damage.section(shipped(), table))


@pytest.mark.parametrize(
    "name",
    [
        "cut-mid-line.txt",  # '# … iptables-save … --to-destination …': once read as '-t o'
        "chain-removed.txt",  # '# … iptables-save … node-test-01 …': once read as '-t est'
        "postrouting-removed.txt",
        "nodeports-jump-removed.txt",
        "unquoted-comments.txt",
        "v4-v6.txt",
    ],
)
def test_header_comments_name_no_table(name: str) -> None:
    """A ``#`` line is a comment to iptables-restore: it adds no table."""
    assert damaged(name).capture.tables == ("mangle", "filter", "nat")


# ---------------------------------------------------------------- cut mid-line


def test_cut_mid_line_never_uses_the_cut_address() -> None:
    rs = damaged("cut-mid-line.txt")
    assert rs.capture.cut_at == CUT_LINE
    (gap,) = [g for g in rs.capture.gaps if g.kind is GapKind.TRUNCATED]
    assert gap.line == CUT_LINE and gap.table == "nat"
    assert damage.CUT_KEEP not in dnat_addresses(rs)
    assert damage.CUT_ENDPOINT not in dnat_addresses(rs)
    sep = rs.chain("nat", "KUBE-SEP-GT3XY65SJT4AIPQ2")
    assert sep is not None and len(sep.rules) == 1  # its -j KUBE-MARK-MASQ rule only
    # the chains declared but not reached before the cut may have lost their rules
    assert rs.capture.limit("nat", "KUBE-SERVICES") == 0
    assert rs.capture.limit("nat", "KUBE-SEP-GT3XY65SJT4AIPQ2") == 1


@pytest.mark.parametrize(("port", "dest"), [(30080, None), (CLUSTER_IP[1], CLUSTER_IP[0])])
def test_cut_mid_line_traces_are_unknown_naming_the_line(port: int, dest: str | None) -> None:
    node = node_trace(damaged("cut-mid-line.txt"), port, dest)
    assert sum(o.outcome.probability for o in node.outcomes) == 1
    for o in node.outcomes:
        assert o.outcome.verdict.value == "UNKNOWN", o
        assert not o.destination.startswith(damage.CUT_KEEP + ":")
        assert o.outcome.masquerade is None
        assert o.outcome.reason is not None and f"line {CUT_LINE}" in o.outcome.reason


def test_cut_mid_line_makes_no_confident_remark() -> None:
    """KUBE-SERVICES was cut: its missing last rule is no reason to say "not DNATed"."""
    node = node_trace(damaged("cut-mid-line.txt"))
    assert not [r for r in node.remarks if "not DNATed" in r or "KUBE-NODEPORTS" in r]


def test_cut_mid_line_cli() -> None:
    doc = trace_json(CUT_FILE)
    (node,) = doc["nodes"]
    assert node["capture"]["cut_at"] == CUT_LINE and not node["capture"]["complete"]
    assert [g["kind"] for g in node["capture"]["gaps"]] == ["truncated"]
    assert {o["verdict"] for o in node["outcomes"]} == {"UNKNOWN"}
    assert all(o["masquerade"] is None for o in node["outcomes"])
    assert all(f"line {CUT_LINE}" in o["reason"] for o in node["outcomes"])
    assert not [e for e in doc["summary"]["endpoints"] if e["destination"].startswith("10.11.1:")]


def test_cut_mid_line_strict_names_the_line() -> None:
    for command in (["show"], ["trace", "--port", "30080"]):
        code, _, err = run(*command, str(CUT_FILE), "--strict")
        assert code == 2
        assert err.startswith(f"kpsim: {CUT_FILE}:{CUT_LINE}:1: ")
        assert "mid-line" in err and "^" in err


# ---------------------------------------------------------------- a chain removed


def test_chain_removed_is_reported() -> None:
    rs = damaged("chain-removed.txt")
    assert rs.capture.missing == (("nat", damage.REMOVED_CHAIN),)
    (gap,) = rs.capture.gaps
    assert gap.kind is GapKind.CHAIN_NOT_CAPTURED and gap.chain == damage.REMOVED_CHAIN
    assert gap.line == line_of(
        DAMAGED / "chain-removed.txt", f"-A KUBE-EXT-6FADE4ADMXCZ7ACT -j {damage.REMOVED_CHAIN}"
    )


@pytest.mark.parametrize(("port", "dest"), [(30080, None), (CLUSTER_IP[1], CLUSTER_IP[0])])
def test_chain_removed_traces_unknown_naming_the_chain(port: int, dest: str | None) -> None:
    node = node_trace(damaged("chain-removed.txt"), port, dest)
    (o,) = node.outcomes
    assert o.outcome.verdict.value == "UNKNOWN" and o.outcome.probability == 1
    assert o.outcome.masquerade is None
    reason = o.outcome.reason or ""
    assert damage.REMOVED_CHAIN in reason and "not in the capture" in reason


def test_chain_removed_other_services_stay_exact() -> None:
    rs = damaged("chain-removed.txt")
    for port in (30081, 30082):
        assert answers(node_trace(rs, port)) == answers(node_trace(clean(), port))


def test_endpoint_chain_removed_takes_only_its_share() -> None:
    """One KUBE-SEP chain missing: that endpoint's share is UNKNOWN, the others exact."""
    sep = "KUBE-SEP-GT3XY65SJT4AIPQ2"  # 10.11.11.70:80, the first of three
    rs = parse_text(damage.remove_chain(shipped(), "nat", sep), "sep-removed.txt")
    node = node_trace(rs)
    got = {(v, d): p for (v, d), p in shares(node).items()}
    want = dict(shares(node_trace(clean())))
    del want[("DNAT", "10.11.11.70:80")]
    assert {k: v for k, v in got.items() if k[0] != "UNKNOWN"} == want
    (unknown,) = [o for o in node.outcomes if o.outcome.verdict.value == "UNKNOWN"]
    assert unknown.outcome.probability == FIRST_SHARE
    assert sep in (unknown.outcome.reason or "")


def test_chain_removed_show_says_not_captured_not_no_endpoints() -> None:
    code, out, err = run("show", str(DAMAGED / "chain-removed.txt"), "-o", "json")
    assert code == 0, err
    (doc,) = json.loads(out)["inputs"]
    by_name = {s["service"]: s for s in doc["services"]}
    svc = by_name["node-test-01/node-test-01-svc"]
    assert svc["captured"] is False and svc["no_endpoints"] is False
    assert all(s["captured"] for n, s in by_name.items() if n != "node-test-01/node-test-01-svc")
    assert doc["capture"]["gaps"][0]["kind"] == "chain-not-captured"


def test_chain_removed_trace_cli() -> None:
    (node,) = trace_json(DAMAGED / "chain-removed.txt")["nodes"]
    (o,) = node["outcomes"]
    assert o["verdict"] == "UNKNOWN" and o["probability_exact"] == "1/1"
    assert o["masquerade"] is None and damage.REMOVED_CHAIN in o["reason"]


# ---------------------------------------------------------------- nat POSTROUTING removed


def test_postrouting_removed_keeps_shares_and_says_masquerade_unknown() -> None:
    rs = damaged("postrouting-removed.txt")
    assert not rs.capture.builtin_captured("nat", "POSTROUTING")
    assert [g.kind for g in rs.capture.gaps] == [GapKind.BUILTIN_NOT_CAPTURED]
    node, before = node_trace(rs), node_trace(clean())
    assert shares(node) == shares(before)
    for o in node.outcomes:
        assert o.outcome.masquerade is None and o.outcome.snat_to is None
        assert POSTROUTING_UNSEEN in o.outcome.assumptions


def test_postrouting_removed_cli() -> None:
    path = DAMAGED / "postrouting-removed.txt"
    doc = trace_json(path)
    (node,) = doc["nodes"]
    assert len(node["outcomes"]) == 3
    assert [o["masquerade"] for o in node["outcomes"]] == [None, None, None]
    assert doc["summary"]["masquerade_share"] == 0
    assert doc["summary"]["masquerade_unknown_share"] == 1
    assert all(e["masquerade"] is None for e in doc["summary"]["endpoints"])
    code, out, err = run("trace", str(path), "--port", "30080", "-v")
    assert code == 0, err
    text = words(out)
    assert "client IP kept" not in text and "MASQUERADED" not in text
    assert "client IP unknown" in text
    assert not re.search(r"│ (kept|masqueraded) +│", out)


# ---------------------------------------------------------------- other hooks not captured


def test_nat_prerouting_removed_is_unknown() -> None:
    rs = parse_text(damage.remove_chain(shipped(), "nat", "PREROUTING"), "no-prerouting.txt")
    (o,) = node_trace(rs).outcomes
    assert o.outcome.verdict.value == "UNKNOWN" and o.outcome.masquerade is None
    assert "nat PREROUTING not captured" in (o.outcome.reason or "")


def test_nat_table_not_captured_is_unknown() -> None:
    """``iptables-save -t filter``: one table, which says nothing of nat."""
    rs = parse_text("\n".join(damage.section(shipped(), "filter")) + "\n", "filter-only.txt")
    for port, dest in ((30080, "10.11.28.53"), (CLUSTER_IP[1], CLUSTER_IP[0])):
        (o,) = node_trace(rs, port, dest).outcomes
        assert o.outcome.verdict.value == "UNKNOWN" and "table nat not captured" in (
            o.outcome.reason or ""
        )


@pytest.mark.parametrize(("table", "chain"), [("filter", "FORWARD"), ("mangle", "PREROUTING")])
def test_other_hook_removed_is_an_assumption(table: str, chain: str) -> None:
    rs = parse_text(damage.remove_chain(shipped(), table, chain), "no-hook.txt")
    node = node_trace(rs)
    assert answers(node) == answers(node_trace(clean()))
    for o in node.outcomes:
        assert f"{table} {chain} not captured: assumed it lets the packet through" in (
            o.outcome.assumptions
        )


# ---------------------------------------------------------------- the NodePort jump removed

NODEPORTS_REMARK = "no rule in this capture jumps to KUBE-NODEPORTS"


def test_nodeports_jump_removed_answers_as_the_kernel_with_a_remark() -> None:
    node = node_trace(damaged("nodeports-jump-removed.txt"))
    (o,) = node.outcomes
    assert o.outcome.verdict.value == "LOCAL" and o.destination == "10.11.28.53:30080"
    (remark,) = node.remarks
    assert NODEPORTS_REMARK in remark and "30080" in remark and "KUBE-SERVICES" in remark
    assert not node_trace(clean()).remarks


def test_nodeports_jump_removed_cli() -> None:
    path = DAMAGED / "nodeports-jump-removed.txt"
    (node,) = trace_json(path)["nodes"]
    assert [o["verdict"] for o in node["outcomes"]] == ["LOCAL"]
    assert any(NODEPORTS_REMARK in r for r in node["remarks"])
    code, out, _ = run("trace", str(path), "--port", "30080")
    assert code == 0 and NODEPORTS_REMARK in words(out)


# ---------------------------------------------------------------- -L without -v

ETH1_NEEDLE = "to:198.18.0.9"


def test_list_no_v_reports_hidden_interfaces() -> None:
    rs = damaged("list-no-v.txt")
    assert rs.format is Format.LIST and not rs.capture.interfaces_known
    assert GapKind.INTERFACES_HIDDEN in {g.kind for g in rs.capture.gaps}
    rule = rs.chain("nat", "PREROUTING").rules[0]  # type: ignore[union-attr]
    assert isinstance(rule.target, Dnat) and rule.in_interface is None  # -i eth1 not shown


def test_list_no_v_trace_names_the_rule_it_assumed() -> None:
    line = line_of(DAMAGED / "list-no-v.txt", ETH1_NEEDLE)
    node = node_trace(damaged("list-no-v.txt"))
    assert node.outcomes
    for o in node.outcomes:
        hidden = [a for a in o.outcome.assumptions if "-L without -v" in a]
        assert hidden, o.outcome.assumptions
        taken = re.search(r"lines? ([\d, ]+)", hidden[0])
        assert taken is not None and str(line) in taken[1].replace(" ", "").split(",")


def test_list_no_v_cli() -> None:
    line = line_of(DAMAGED / "list-no-v.txt", ETH1_NEEDLE)
    (node,) = trace_json(DAMAGED / "list-no-v.txt")["nodes"]
    assert "interfaces-hidden" in {g["kind"] for g in node["capture"]["gaps"]}
    for o in node["outcomes"]:
        assert any("-L without -v" in a and re.search(rf"\b{line}\b", a) for a in o["assumptions"])


# ---------------------------------------------------------------- unquoted comments


def test_unquoted_comments_as_kube_proxy_writes_them_keep_the_endpoints() -> None:
    """kube-proxy's tests leave a comment unquoted when no word of it starts with '-'."""
    text = damage.unquoted_comments(shipped(), every=False)
    rs = parse_text(text, "kube-proxy-style.txt")
    assert {d.message.split(":")[0] for d in rs.diagnostics} == {
        "skipped comment",
        "unquoted multi-word comment",
    }
    for port, dest in ((30080, None), (30081, None), (CLUSTER_IP[1], CLUSTER_IP[0])):
        assert answers(node_trace(rs, port, dest)) == answers(node_trace(clean(), port, dest))


def test_every_comment_unquoted_keeps_the_endpoints() -> None:
    """Also the ``ns/svc -> ip:port`` comments, whose '->' is no option of iptables."""
    rs = damaged("unquoted-comments.txt")
    for port, dest in ((30080, None), (CLUSTER_IP[1], CLUSTER_IP[0])):
        assert answers(node_trace(rs, port, dest)) == answers(node_trace(clean(), port, dest))


def test_every_comment_unquoted_is_never_a_confident_wrong_answer() -> None:
    """Whatever kpsim makes of '->', it is UNKNOWN or the clean answer, never another."""
    before = shares(node_trace(clean()))
    for (verdict, dest), p in shares(node_trace(damaged("unquoted-comments.txt"))).items():
        assert verdict == "UNKNOWN" or p <= before.get((verdict, dest), Fraction(0))


def test_unquoted_comments_cli(tmp_path: Path) -> None:
    kube_proxy_style = tmp_path / "kube-proxy-style.txt"
    kube_proxy_style.write_text(damage.unquoted_comments(shipped(), every=False))
    want = {
        (o["destination"], o["probability_exact"], o["masquerade"])
        for o in trace_json(damage.SHIPPED)["nodes"][0]["outcomes"]
    }
    assert len(want) == 3
    for path in (DAMAGED / "unquoted-comments.txt", kube_proxy_style):
        got = {
            (o["destination"], o["probability_exact"], o["masquerade"])
            for o in trace_json(path)["nodes"][0]["outcomes"]
        }
        assert got == want, path


# ---------------------------------------------------------------- other proxy modes


@pytest.mark.parametrize("name", sorted(MODES))
def test_other_modes_are_refused_in_one_line(name: str) -> None:
    mode, word = MODES[name]
    assert proxy_mode(damaged(name)).mode is mode
    for command in ("trace", "simulate"):
        code, out, err = run(command, str(DAMAGED / name), "--port", "30080")
        assert code == 2, (command, out, err)
        assert err.endswith("\n") and "\n" not in err.rstrip("\n"), err
        assert word in err and "picks the endpoint" in err and f"{DAMAGED / name}:" in err


@pytest.mark.parametrize("name", sorted(MODES))
def test_other_modes_show_notes_it(name: str) -> None:
    mode, word = MODES[name]
    code, out, err = run("show", str(DAMAGED / name), "-o", "json")
    assert code == 0, err
    (doc,) = json.loads(out)["inputs"]
    assert doc["proxy_mode"]["mode"] == mode.value and not doc["proxy_mode"]["chooses_endpoints"]
    assert any(word in note for note in doc["notes"])


# ---------------------------------------------------------------- no node address


def test_no_node_address_traces_to_the_stand_in_and_says_so() -> None:
    text = "".join(
        line for line in shipped().splitlines(keepends=True) if not line.startswith("# kpsim:meta")
    )
    node = node_trace(parse_text(text, "no-meta.txt"))
    assert node.address == "198.51.100.10"
    assert any("198.51.100.10" in n and "no node address" in n for n in node.context_notes)
    assert {(v, d) for v, d in shares(node)} == {
        ("DNAT", d) for d in ("10.11.11.70:80", "10.11.16.79:80", "10.11.41.25:80")
    }


def test_no_node_address_takes_the_one_the_nodeports_jump_names() -> None:
    text = "".join(
        line for line in shipped().splitlines(keepends=True) if not line.startswith("# kpsim:meta")
    )
    jump = next(line for line in text.splitlines() if damage.NODEPORTS_JUMP.match(line))
    named = '-A KUBE-SERVICES -d 10.11.28.53/32 -m comment --comment "kubernetes service '
    named += 'nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS'
    node = node_trace(parse_text(text.replace(jump, named), "node-port-addresses.txt"))
    assert node.address == "10.11.28.53"
    assert any(
        "10.11.28.53" in n and "no node address" in n and "KUBE-NODEPORTS" in n
        for n in node.context_notes
    )
    assert len([o for o in node.outcomes if o.outcome.verdict.value == "DNAT"]) == 3


# ---------------------------------------------------------------- two families, markdown


def _same_rules(got: Ruleset, want: Ruleset, table: str) -> None:
    """Same chains with the same rules (``Rule`` equality ignores where a rule was read)."""
    mine, theirs = got.table(table), want.table(table)
    assert mine is not None and theirs is not None, table
    assert {n: c.rules for n, c in mine.chains.items()} == {
        n: c.rules for n, c in theirs.chains.items()
    }


def test_v4_v6_is_two_captures() -> None:
    (node,) = api.load([str(DAMAGED / "v4-v6.txt")]).nodes
    by_family = {rs.family: rs for rs in node.rulesets}
    assert sorted(f.value for f in by_family) == ["ipv4", "ipv6"]
    v4, v6 = by_family[Family.IPV4], by_family[Family.IPV6]
    for table in ("mangle", "filter", "nat"):
        _same_rules(v4, clean(), table)
    assert list(v6.tables) == ["nat"]
    assert dnat_addresses(v6) == set(damage.IPV6_PODS)
    assert v4.capture.complete and v6.capture.complete


def test_v4_v6_trace_takes_the_ipv4_capture() -> None:
    got = trace_json(DAMAGED / "v4-v6.txt")
    want = trace_json(damage.SHIPPED)
    assert [
        (o["verdict"], o["destination"], o["probability_exact"], o["masquerade"])
        for o in got["nodes"][0]["outcomes"]
    ] == [
        (o["verdict"], o["destination"], o["probability_exact"], o["masquerade"])
        for o in want["nodes"][0]["outcomes"]
    ]


def test_markdown_blocks_land_in_their_tables() -> None:
    rs = damaged("markdown-filter-nat.md")
    assert sorted(rs.tables) == ["filter", "nat"]
    for table in ("filter", "nat"):
        _same_rules(rs, clean(), table)
