"""Which captures a command reads when given paths, folders, or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpsim.errors import UsageError
from kpsim.inputs import fixtures

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "iptables" / "eks-nodeport-workshop"


def _touch(path: Path, text: str = "*nat\nCOMMIT\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cluster_folder_gives_one_node_per_subfolder_with_save_as_primary() -> None:
    chosen = fixtures.resolve_paths([str(SEED)])
    assert [n.name for n in chosen.nodes] == ["ip-10-11-28-53", "ip-10-11-3-14", "ip-10-11-40-87"]
    for node in chosen.nodes:
        assert node.primary.name == "iptables-save.txt"
        assert {f.name for f in node.files} == {
            "iptables-save.txt",
            "iptables-nat.txt",
            "iptables-nat-L.txt",
        }


def test_a_file_is_one_node() -> None:
    path = SEED / "ip-10-11-3-14" / "iptables-nat.txt"
    chosen = fixtures.resolve_paths([str(path)])
    assert len(chosen.nodes) == 1 and chosen.nodes[0].primary == path


def test_missing_path_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no such file"):
        fixtures.resolve_paths(["/nonexistent/kpsim"])


def test_default_order_flag_then_env_then_cwd_then_packaged(tmp_path: Path) -> None:
    flag = _touch(tmp_path / "flag" / "n1" / "iptables-save.txt").parents[1]
    env = _touch(tmp_path / "env" / "n2" / "iptables-save.txt").parents[1]
    cwd = tmp_path / "cwd"
    _touch(cwd / "fixtures" / "iptables" / "c" / "n3" / "iptables-save.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    got = fixtures.default_set(str(flag), {"KPSIM_FIXTURES": str(env)}, cwd)
    assert (got.origin, got.nodes[0].name) == ("--fixtures", "n1")
    got = fixtures.default_set(None, {"KPSIM_FIXTURES": str(env)}, cwd)
    assert (got.origin, got.nodes[0].name) == ("$KPSIM_FIXTURES", "n2")
    got = fixtures.default_set(None, {}, cwd)
    assert (got.origin, got.nodes[0].name) == ("./fixtures/iptables", "n3")
    got = fixtures.default_set(None, {}, empty)
    assert got.origin == "kpsim's packaged samples"
    assert len(got.nodes) == 3


def test_several_fixture_sets_must_be_chosen(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "n1" / "iptables-save.txt")
    _touch(tmp_path / "b" / "n2" / "iptables-save.txt")
    with pytest.raises(UsageError, match="several fixture sets"):
        fixtures.default_set(str(tmp_path), {}, tmp_path)
