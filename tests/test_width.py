"""Text output fits the terminal: every command, at 80 and 120 columns, on the shipped
fixtures, corpus dumps and a damaged capture — no line longer than the width; and the
default answers for the seed lab fit one screen (≤ 25 lines). Machine formats (JSON,
DOT, Mermaid, GraphML) are not laid out for people and are not checked here."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from _paths import CORPUS, needs_corpus
from kpsim.cli.main import main
from kpsim.render.width import DEFAULT, detect, ellipsize, fold, short_node, short_nodes
from kpsim.verify import netns

REPO = Path(__file__).resolve().parents[1]
DUMPS = [
    str(CORPUS / "003-docker-desktop-xlb-list-verbose.txt"),
    str(CORPUS / "007-kube-fw-loadbalancer-save-fragment-annotated.txt"),
    str(CORPUS / "030-calico-selfmanaged-chainwise-list-resolved-markdown.txt"),
    str(REPO / "fixtures/damaged/cut-mid-line.txt"),
]
SEED_COMMANDS = [
    ["show"],
    ["show", "-v"],
    ["show", "--chains"],
    ["trace", "--port", "30080"],
    ["trace", "--port", "30080", "-v"],
    ["trace", "--port", "30082", "--tree"],
    ["trace", "--port", "30083", "--node", "ip-10-11-3-14"],
    ["simulate", "-n", "3000", "--seed", "1"],
    ["simulate", "-n", "3000", "--seed", "1", "-v"],
    ["simulate", "-n", "3000", "--seed", "1", "--port", "30082"],
    ["verify", "--help"],
    ["fetch", "--help"],
    ["graph", "--help"],
    ["--help"],
]
DUMP_COMMANDS = [
    ["show"],
    ["show", "-v"],
    ["trace", "--port", "30080", "-v"],
    ["simulate", "-n", "500", "--seed", "1", "-v"],
]
COUNTERS = "tests/data/counters"
SNAPSHOTS = "tests/data/snapshots"
#: The commands that came after the width work: analysis of captures, counters, causes.
ANALYSIS_COMMANDS = [
    ["lint"],
    ["lint", "--fail-on", "never", str(REPO / "fixtures/damaged/cut-mid-line.txt")],
    ["diff", f"{SNAPSHOTS}/before", f"{SNAPSHOTS}/after"],
    ["diff", "fixtures/iptables/eks-nodeport-workshop/ip-10-11-28-53/iptables-save.txt",
     "fixtures/damaged/cut-mid-line.txt"],
    ["diff", "--nodes", f"{SNAPSHOTS}/after"],
    ["diff", "--nodes", f"{SNAPSHOTS}/before"],
    ["counters"],
    ["lint", "fixtures/nftables/eks-nodeport-workshop"],  # kube-proxy's nftables mode
    ["why", "fixtures/nftables/eks-nodeport-workshop", "--port", "30082", "-v"],
    ["diff", "fixtures/iptables/eks-nodeport-workshop", "fixtures/nftables/eks-nodeport-workshop"],
    ["counters", f"{COUNTERS}/after.txt"],
    ["counters", f"{COUNTERS}/after-nat-L.txt"],
    ["counters", f"{COUNTERS}/before.txt", f"{COUNTERS}/after.txt"],
    ["why", "--port", "30080"],
    ["why", "--port", "30080", "-v"],
    ["why", "--port", "30082"],
    ["why", "--port", "30082", "-v"],
    ["why", "--port", "53"],  # kube-dns: UDP, stale conntrack judged
    ["why", "--port", "53", "-v"],
    ["why", "--port", "30080", "--observed", f"{COUNTERS}/observed-keepalive.csv"],
    ["why", f"{COUNTERS}/after.txt", "--port", "30081", "-v"],
    ["simulate", "-n", "1000", "--seed", "1", "--port", "30080",
     "--observed", f"{COUNTERS}/observed.json"],
    ["simulate", "-n", "1000", "--seed", "1", "--port", "30080",
     "--observed", f"{COUNTERS}/observed-keepalive.csv"],
]  # fmt: skip
#: A dump's own NodePort where it has no 30080.
PORTS = {"007-kube-fw-loadbalancer-save-fragment-annotated.txt": "30938"}


def run(args: list[str], width: int) -> str:
    result = CliRunner().invoke(main, args, env={"COLUMNS": str(width), "KPSIM_FIXTURES": None})
    assert result.exit_code in (0, 1), (args, result.output)
    return result.output


def too_long(text: str, width: int) -> list[str]:
    """Lines over the width; a link alone on its line may be (a cut link leads nowhere)."""
    return [
        line
        for line in text.splitlines()
        if cell_len(line) > width and not (line.startswith("https://") and " " not in line)
    ]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("args", SEED_COMMANDS, ids=" ".join)
def test_seed_lab_fits(args: list[str], width: int) -> None:
    out = run(args, width)
    assert out.strip()
    assert too_long(out, width) == []


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("args", ANALYSIS_COMMANDS, ids=" ".join)
def test_analysis_commands_fit(args: list[str], width: int) -> None:
    out = run(args, width)
    assert out.strip()
    assert too_long(out, width) == []


@pytest.mark.parametrize("width", [80, 120])
def test_folding_keeps_locations_whole(width: int) -> None:
    """lint and diff fold their sentences, never a ``file:line``: each location printed
    is one whole word on some line, so an editor or a shell can take it back."""
    lint = run(["lint"], width)
    for node in ("ip-10-11-28-53", "ip-10-11-3-14", "ip-10-11-40-87"):
        where = f"fixtures/iptables/eks-nodeport-workshop/{node}/iptables-save.txt:41:"
        assert where in lint.split()
        assert f"node {node}" in lint.splitlines()  # the short name --node takes back
    diff = run(["diff", f"{SNAPSHOTS}/before", f"{SNAPSHOTS}/after"], width)
    assert (
        f"{SNAPSHOTS}/after/ip-10-11-28-53/iptables-save.txt:163"
        in diff.replace("(", " ").replace(")", " ").split()
    )
    why = run(["why", "--port", "30080"], width)
    assert (
        "fixtures/iptables/eks-nodeport-workshop/ip-10-11-3-14/iptables-save.txt:103,"
        in why.split()
    )


def test_fold_cuts_only_what_cannot_fit() -> None:
    path = "fixtures/iptables/eks-nodeport-workshop/ip-10-11-28-53/iptables-save.txt:41:"
    lines = fold(f"{path} warning KP001 a message of several words", 80, "  ", "    ")
    assert lines[0] == "  " + path and lines[1].startswith("    warning KP001")
    narrow = fold(f"{path} warning", 40, "  ", "    ")
    assert narrow[0].startswith("  …") and narrow[0].endswith("iptables-save.txt:41:")
    assert all(cell_len(x) <= 40 for x in narrow)


@needs_corpus
@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("dump", DUMPS, ids=lambda p: Path(p).name)
@pytest.mark.parametrize("args", DUMP_COMMANDS, ids=" ".join)
def test_dumps_fit(args: list[str], dump: str, width: int) -> None:
    port = PORTS.get(Path(dump).name, "30080")
    out = run([args[0], dump, *(port if a == "30080" else a for a in args[1:])], width)
    assert too_long(out, width) == []


@pytest.mark.parametrize(
    "args",
    [
        ["show"],
        ["trace", "--port", "30080"],
        ["simulate", "-n", "10000", "--seed", "1"],
        ["lint"],
        ["counters"],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("width", [80, 120])
def test_default_answer_is_one_screen(args: list[str], width: int) -> None:
    out = run(args, width)
    assert len(out.splitlines()) <= 25, out


@pytest.mark.parametrize("port", ["30080", "30082"])
def test_why_keeps_ruled_out_causes_to_a_line(port: str) -> None:
    """why's default: each ruled-out cause on one line, no links; -v has both."""
    short, full = run(["why", "--port", port], 80), run(["why", "--port", port, "-v"], 80)
    ruled = [x for x in short.splitlines() if "[RULED OUT]" in x]
    assert ruled and "https://" not in short and "look up:" not in short
    assert "https://kubernetes.io/" in full and "look up:" in full
    assert len(short.splitlines()) < len(full.splitlines())
    for line in ruled:  # the title is the line; its reason follows only with -v
        after = full.splitlines()[full.splitlines().index(line) + 1]
        assert after.startswith("     ") and "[" not in after[:8]


def test_counters_put_idle_services_on_one_line() -> None:
    """A capture after traffic to two NodePorts: their tables by default; the seven
    services that counted nothing (every jump and DNAT rule at 0) on one line, tables
    with -v, or when asked for by --port."""
    short = run(["counters", f"{COUNTERS}/after.txt"], 80)
    full = run(["counters", f"{COUNTERS}/after.txt", "-v"], 80)
    asked = run(["counters", f"{COUNTERS}/after.txt", "--port", "30082"], 80)
    assert "n = 1200 connections" in short and "n = 900 connections" in short
    assert short.count("n = 0 connections") == 0 and full.count("n = 0 connections") == 7
    words = " ".join(short.split())
    assert "0 connections counted (every jump and DNAT rule at 0; tables: -v):" in words
    assert "kube-system/kube-dns:dns (cluster)" in words
    assert "0 connections counted" not in asked and "n = 0 connections" in asked


def test_details_are_behind_v() -> None:
    short, full = run(["trace", "--port", "30080"], 80), run(["trace", "--port", "30080", "-v"], 80)
    assert "KUBE-SVC-6FADE4ADMXCZ7ACT #1" not in short and "KUBE-SVC-6FADE4ADMXCZ7ACT #1" in full
    assert ":162" in full  # the tree keeps file:line when it shortens the rule


def test_width_comes_from_columns_then_terminal_then_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "132")
    assert detect() == 132
    monkeypatch.delenv("COLUMNS")

    class Pipe:
        def isatty(self) -> bool:
            return False

    assert detect(Pipe()) == DEFAULT == 80  # type: ignore[arg-type]


def test_helpers() -> None:
    assert ellipsize("abcdef", 4) == "abc…" and ellipsize("abc", 4) == "abc"
    assert cell_len(ellipsize("日本語のテキスト", 7)) <= 7
    assert short_node("ip-10-11-3-14.ap-northeast-2.compute.internal") == "ip-10-11-3-14"
    assert short_node("10.0.0.7") == "10.0.0.7"  # an address is not cut at its first dot
    names = ["ip-10-11-3-14.ec2.internal", "ip-10-11-40-87.ec2.internal"]
    said = "served on ip-10-11-3-14.ec2.internal, see /c/ip-10-11-40-87.ec2.internal/save.txt:4"
    assert short_nodes(said, names) == (
        "served on ip-10-11-3-14, see /c/ip-10-11-40-87.ec2.internal/save.txt:4"
    )  # a name alone is shortened, a path is left as given
    assert short_nodes("a.x and a.y", ["a.x", "a.y"]) == "a.x and a.y"  # "a" would be ambiguous


@pytest.mark.kernel
@pytest.mark.skipif(not netns.available(), reason="needs root plus ip/iptables tools")
@pytest.mark.parametrize("width", [80, 120])
def test_verify_fits(width: int) -> None:
    """verify's report (real connections in throw-away namespaces) fits the width too;
    exit 1 would be a disagreement, which test_verify.py judges — here only the layout."""
    out = run(["verify", "--port", "30080", "-n", "30"], width)
    assert "AGREE" in out or "DISAGREE" in out
    assert too_long(out, width) == []
