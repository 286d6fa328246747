"""Input validation, the fixed scripts, the frame format, atomic storage and local modes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from kpsim.cli.fetch import fetch_command
from kpsim.errors import ExitCode, FetchError, UsageError
from kpsim.fetch import FetchRequest, LocalTarget, fetch_local, validate
from kpsim.fetch.capture import FixtureFile
from kpsim.fetch.local import argv_for
from kpsim.fetch.payload import (
    TRUNCATION_MARK,
    ChecksumError,
    FrameError,
    read_frame,
    split_sections,
)
from kpsim.fetch.script import ScriptSpec, capture_script, chunk_script, cleanup_script
from kpsim.fetch.store import write_node
from kpsim.formats.common import meta_line
from kpsim.inputs import synth
from kpsim.verify import netns

kernel = pytest.mark.skipif(not netns.available(), reason="needs root, ip, iptables")


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["i-0a3f5c27", "i-0a3f5c27e91b04d68", "mi-0123456789abcdef0"])
def test_instance_ids_accepted(good: str) -> None:
    assert validate.instance_id(good) == good


@pytest.mark.parametrize(
    "bad", ["i-0A3F5C27", "i-123", "i-0a3f5c27e91b04d68a", "x-0a3f5c27", "i-0a3f5c27;id", ""]
)
def test_instance_ids_refused_naming_the_value(bad: str) -> None:
    with pytest.raises(UsageError, match="--node") as info:
        validate.instance_id(bad)
    assert repr(bad) in str(info.value)
    assert info.value.exit_code is ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    ("func", "value"),
    [
        (validate.tag, "novalue"), (validate.tag, "k=v*"), (validate.tag, "k=$(id)"),
        (validate.cluster, "-bad"), (validate.cluster, "a b"),
        (validate.bucket, "Upper"), (validate.bucket, "a..b"), (validate.bucket, "10.0.0.1"),
        (validate.prefix, "../x"), (validate.prefix, "a b"), (validate.prefix, "a//b"),
        (validate.region, "mars"), (validate.tables, "nat,broute"), (validate.tables, ""),
        (validate.netns_name, "-x"), (validate.k8s_node, "Node_1"),
    ],
)  # fmt: skip
def test_bad_values_are_usage_errors(func: object, value: str) -> None:
    with pytest.raises(UsageError):
        func(value)  # type: ignore[operator]


def test_tables_come_back_in_save_order() -> None:
    assert validate.tables("nat,filter,nat,mangle") == ("mangle", "filter", "nat")
    assert validate.prefix("/runs/a/") == "runs/a"
    key = "kubernetes.io/cluster/demo"
    assert validate.tag(f"{key}=owned") == (key, "owned")


# -- the fixed scripts -----------------------------------------------------------------


def test_scripts_refuse_anything_but_allow_listed_tables_and_ints() -> None:
    with pytest.raises(ValueError):
        capture_script(ScriptSpec(tables=("nat; rm -rf /",)))
    for bad in ("1; reboot", True, -1, 2**63, 1.5):
        with pytest.raises(ValueError):
            chunk_script(bad, 0)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            chunk_script(1, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            cleanup_script(bad)  # type: ignore[arg-type]


def test_scripts_are_deterministic_and_read_only() -> None:
    spec = ScriptSpec(("nat", "filter"), True, True, 7)
    text = capture_script(spec)
    assert text == capture_script(spec)
    for word in ("iptables-restore", "iptables -A", "iptables -D", "iptables -F", " -I ", "nft "):
        assert word not in text
    assert "iptables-save -t" in text and "iptables -t nat -L -n -v -x --line-numbers" in text


@pytest.mark.skipif(shutil.which("dash") is None, reason="needs dash")
@pytest.mark.parametrize(
    "script",
    [capture_script(ScriptSpec()), capture_script(ScriptSpec(("nat",), True, True, 9)),
     chunk_script(9, 3), cleanup_script(9)],
)  # fmt: skip
def test_scripts_parse_under_dash(script: str) -> None:
    proc = subprocess.run(["dash", "-n", "-c", script], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr


# -- the frame ---------------------------------------------------------------------------


def frame(sections: dict[str, str]) -> bytes:
    payload = "".join(f"==kpsim:section {k}==\n{v}\n" for k, v in sections.items()).encode()
    h = hashlib.sha256(payload).hexdigest()
    return (f"==kpsim:begin v=1 bytes={len(payload)} sha256={h} spool=1 gz=9==\n".encode()
            + payload + f"==kpsim:end bytes={len(payload)} sha256={h}==\n".encode())  # fmt: skip


_body = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200).filter(
    lambda s: "==kpsim:" not in s
)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), _body,
                       min_size=1, max_size=5))  # fmt: skip
def test_sections_round_trip_exactly(sections: dict[str, str]) -> None:
    got = read_frame(frame(sections))
    assert got.payload is not None
    assert split_sections(got.payload) == sections


def test_cut_output_is_detected_not_trusted() -> None:
    data = frame({"iptables-save": "*nat\n" + "-A X -j ACCEPT\n" * 3000})
    cut = data[:24_000].decode() + "\n" + TRUNCATION_MARK
    got = read_frame(cut)
    assert got.payload is None and got.truncated_mark and got.header.spool
    with pytest.raises(FrameError):  # short, no SSM mark: something else went wrong
        read_frame(data[:500])
    with pytest.raises(ChecksumError):
        read_frame(data.replace(b"ACCEPT", b"ACCEPU", 1))


# -- atomic storage ----------------------------------------------------------------------


def fixture(body: str, sha: str | None = None) -> FixtureFile:
    digest = sha or hashlib.sha256(body.encode()).hexdigest()
    return FixtureFile("iptables-save.txt", meta_line({"sha256": digest}) + "\n" + body)


def test_write_is_atomic_and_never_touches_a_good_fixture(tmp_path: Path) -> None:
    good = tmp_path / "iptables-save.txt"
    good.write_text("good\n")
    with pytest.raises(FetchError, match="sha256"):
        write_node(tmp_path, [fixture("*nat\nCOMMIT\n", sha="0" * 64)])
    assert good.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["iptables-save.txt"]
    (path,) = write_node(tmp_path, [fixture("*nat\nCOMMIT\n")])
    assert path.read_text().endswith("\n*nat\nCOMMIT\n")
    assert os.listdir(tmp_path) == ["iptables-save.txt"]


# -- local modes -------------------------------------------------------------------------


def test_kubectl_argv_and_missing_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = argv_for(LocalTarget("kubectl", "ip-10-0-0-1.ec2.internal", "busybox"), "SCRIPT")
    assert argv[:4] == ["kubectl", "debug", "node/ip-10-0-0-1.ec2.internal", "--profile=sysadmin"]
    assert argv[-5:] == ["chroot", "/host", "sh", "-c", "SCRIPT"]
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FetchError, match="kubectl"):
        fetch_local(FetchRequest(), LocalTarget("kubectl", "node-1"))


def test_kubectl_route_with_a_fake_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kpsim.fetch.local.preflight", lambda target: None)
    printed = frame(
        {
            "hostname": "ip-10-0-0-9.ec2.internal",
            "iptables-version": "iptables v1.8.9 (nf_tables)",
            "iptables-save": "*nat\nCOMMIT\n",
        }
    )

    def runner(argv: Sequence[str], timeout: float) -> tuple[int, bytes, str]:
        assert argv[0] == "kubectl"
        return 0, printed, ""

    report = fetch_local(FetchRequest(out=tmp_path), LocalTarget("kubectl", "node-9"),
                         runner=runner)  # fmt: skip
    (result,) = report.results
    assert result.ok
    assert result.files == (tmp_path / "fetched" / "ip-10-0-0-9" / "iptables-save.txt",)


@kernel
@pytest.mark.kernel
def test_netns_mode_against_real_rules(tmp_path: Path) -> None:
    cluster = synth.seed_workshop()
    with netns.Namespace() as ns:
        ns.load_rules(synth.render_restore(cluster, cluster.nodes[1]))
        request = FetchRequest(out=tmp_path, tables=("nat",))
        (result,) = fetch_local(request, LocalTarget("netns", ns.name)).results
        assert result.ok, result.error
        body = result.files[0].read_text().partition("\n")[2]
        assert body.startswith("# Generated by iptables-save") and "*nat\n" in body
        assert "*filter" not in body
        assert result.files[0].parent.name == ns.name


# -- the command -------------------------------------------------------------------------


def cli(*args: str) -> click.testing.Result:
    group = click.Group("kpsim")
    group.add_command(fetch_command)
    return CliRunner().invoke(group, ["fetch", *args])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--node", "i-xyz"], "'i-xyz'"),
        (["--tag", "env"], "'env'"),
        (["--cluster", "bad name"], "'bad name'"),
        (["--node", "i-0a3f5c27", "--s3-bucket", "Bad_Bucket"], "'Bad_Bucket'"),
        (["--node", "i-0a3f5c27", "--s3-bucket", "ok-bucket", "--s3-prefix", "../up"], "../up"),
        (["--node", "i-0a3f5c27", "--tables", "nat,nope"], "nat,nope"),
        (["--node", "i-0a3f5c27", "--region", "moon-1"], "'moon-1'"),
        ([], "--node ID"),
        (["--local", "--netns", "x"], "choose one"),
    ],
)
def test_usage_errors_exit_2_before_any_call(args: list[str], words: str) -> None:
    result = cli(*args)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert words in result.output
