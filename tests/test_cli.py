"""The CLI contract: outputs (golden files), exit codes, and messages — via click's runner.

Regenerate goldens after a reviewed change: ``KPSIM_UPDATE_GOLDEN=1 pytest tests/test_cli.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from _paths import CORPUS
from kpsim.cli.main import main

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
SEED = "fixtures/iptables/eks-nodeport-workshop"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # not a terminal: 80 columns (docs)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("KPSIM_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden {path}: run with KPSIM_UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("show-seed.json", ["show", SEED, "-o", "json"]),
        ("show-seed-node.txt", ["show", f"{SEED}/ip-10-11-28-53", "-v"]),
        ("show-seed.txt", ["show", SEED]),
        ("trace-30080.json", ["trace", "--port", "30080", "-o", "json"]),
        ("trace-30080.txt", ["trace", "--port", "30080"]),
        ("trace-30080-details.txt", ["trace", "--port", "30080", "-v"]),
        ("trace-30082-local.txt", ["trace", "--port", "30082", "--tree"]),
    ],
)
def test_golden_outputs(name: str, args: list[str]) -> None:
    code, out, err = run(*args)
    assert code == 0, err
    golden(name, out)


def test_same_input_gives_byte_identical_output() -> None:
    first = run("show", SEED, "-o", "json")[1]
    assert first == run("show", SEED, "-o", "json")[1]


def test_show_without_path_names_the_fixture_set_it_used() -> None:
    code, out, _ = run("show")
    assert code == 0
    assert out.startswith(f"fixture set: {SEED} (./fixtures/iptables)")


def test_trace_answers_the_seed_question() -> None:
    code, out, _ = run("trace", "--port", "30080", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "kpsim/trace/v2"
    assert [n["node"].split(".")[0] for n in doc["nodes"]] == [
        "ip-10-11-28-53",
        "ip-10-11-3-14",
        "ip-10-11-40-87",
    ]
    for node in doc["nodes"]:
        shares = {o["destination"]: o["probability_exact"] for o in node["outcomes"]}
        assert shares == {
            "10.11.11.70:80": "715827883/2147483648",
            "10.11.16.79:80": "1431655765/4294967296",
            "10.11.41.25:80": "1431655765/4294967296",
        }
        assert all(o["masquerade"] for o in node["outcomes"])
        assert all(o["service"] == "node-test-01/node-test-01-svc" for o in node["outcomes"])
    # two pods of three run on another node than the one curled
    assert doc["summary"]["cross_node_share"] == pytest.approx(2 / 3)


def test_unknown_nodeport_lists_the_ones_that_exist() -> None:
    code, _, err = run("trace", "--port", "31999")
    assert code == 2
    assert "no NodePort 31999" in err and "30080" in err and "30081" in err


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "--port", "30080", "--dest", "not-an-ip"],
        ["trace", "--port", "70000"],
        ["trace", "--port", "30080", "--assume", "bogus"],
        ["trace", "--port", "30080", "--node", "no-such-node"],
        ["show", "/nonexistent/kpsim"],
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str]) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert err.startswith("kpsim: ") and "Traceback" not in err


def test_strict_stops_at_the_first_bad_line_with_a_caret(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_text("root@node:~# iptables-save -t nat\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    code, _, err = run("show", str(dump), "--strict")
    assert code == 2
    assert f"{dump}:1:1:" in err and "^" in err
    code, out, _ = run("show", str(dump))
    assert code == 0 and "1 line(s) skipped or doubted" in out
    code, out, _ = run("show", "-v", str(dump))
    assert code == 0 and "1 diagnostic" in out


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_every_corpus_file_loads_leniently_and_finds_rules() -> None:
    files = sorted(p for p in CORPUS.iterdir() if p.name[0].isdigit())
    assert len(files) >= 10
    for path in files:
        code, out, err = run("show", str(path), "-o", "json")
        assert code == 0, (path, err)
        (doc,) = json.loads(out)["inputs"]
        rules = sum(t["rules"] for t in doc["tables"].values())
        assert rules > 0, path
        if path.name.startswith("008"):
            assert doc["format"] == "nft" and any("nft" in n for n in doc["notes"])
        if path.name.startswith("028"):
            assert doc["ipvs"] is True


def test_trace_dot_renders_with_graphviz(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("dot") is None:
        pytest.skip("graphviz not installed")
    code, out, err = run("trace", "--port", "30080", "-o", "dot")
    assert code == 0, err
    svg = subprocess.run(["dot", "-Tsvg"], input=out, capture_output=True, text=True, check=True)
    assert "KUBE&#45;NODEPORTS" in svg.stdout or "KUBE-NODEPORTS" in svg.stdout
