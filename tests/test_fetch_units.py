"""Input validation, the fixed scripts, the frame format, atomic storage and local modes."""

from __future__ import annotations

import hashlib
import os
import re
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
    for word in ("iptables-restore", "iptables -A", "iptables -D", "iptables -F", " -I "):
        assert word not in text
    # nft only lists (kube-proxy's nftables mode): never -f, add, delete, flush, …
    assert re.findall(r"(?<!-v )\bnft (\S+)", text) == ["list", "list"]
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


# -- a bad AWS environment: one line, exit 2, nothing secret ------------------------------

KEY_ID = "AKIAKPSIMTESTKEY0001"
SECRET = "kpsimTestSecret/DoNotPrint+0001"
IID = "i-0123456789abcdef0"
#: Everything that could lend boto3 credentials, a region or a profile from this machine.
AWS_UNSET = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_SSM", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)  # fmt: skip
NO_AWS: dict[str, str | None] = {
    **dict.fromkeys(AWS_UNSET),
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role lookup leaves this machine
}
KEYS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}


def cli_env(env: dict[str, str | None], *args: str) -> click.testing.Result:
    group = click.Group("kpsim")
    group.add_command(fetch_command)
    return CliRunner().invoke(group, ["fetch", *args], env={**NO_AWS, **env})


def one_clean_line(result: click.testing.Result, code: int) -> str:
    """The whole output: a single ``kpsim: …`` line, no traceback, no credential."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    (line,) = result.output.splitlines()
    assert line.startswith("kpsim: ") and "Traceback" not in result.output
    assert KEY_ID not in result.output and SECRET not in result.output
    return line


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({}, ["--region", "eu-west-1"], "no AWS credentials found"),
        ({"AWS_ACCESS_KEY_ID": KEY_ID}, ["--region", "eu-west-1"], "missing: AWS_SECRET_ACC"),
        (KEYS, ["--profile", "nosuch", "--region", "eu-west-1"], "(nosuch) could not be found"),
        ({**KEYS, "AWS_PROFILE": "nosuch"}, ["--region", "eu-west-1"], "AWS_PROFILE: "),
        (KEYS, ["--region", "mars-1"], "--region 'mars-1'"),
        ({**KEYS, "AWS_REGION": "mars-east-1"}, [], "AWS_REGION 'mars-east-1': not an AWS"),
        ({**KEYS, "AWS_DEFAULT_REGION": "mars 1"}, [], "'mars 1': not an AWS region"),
        (KEYS, [], "no AWS region"),
        ({**KEYS, "AWS_ENDPOINT_URL": "not a url"}, ["--region", "eu-west-1"],
         "AWS_ENDPOINT_URL is not an endpoint URL"),
        ({**KEYS, "AWS_ENDPOINT_URL": f"http://kpsim:{SECRET}@127.0.0.1:1"},
         ["--region", "eu-west-1"], "AWS_ENDPOINT_URL is not an endpoint URL"),
    ],
)  # fmt: skip
def test_bad_aws_environment_is_one_line_exit_2(
    env: dict[str, str | None], args: list[str], words: str, tmp_path: Path
) -> None:
    result = cli_env(env, "--node", IID, "--out", str(tmp_path), *args)
    assert words in one_clean_line(result, ExitCode.BAD_INPUT)


def test_refused_endpoint_fails_in_one_line_within_30s(tmp_path: Path) -> None:
    """A closed local port (bound, never listening): botocore's standard retries, bounded,
    then one line naming the endpoint (its user info, a secret here, masked)."""
    import socket
    import time

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        env = {**KEYS, "AWS_ENDPOINT_URL": f"http://kpsim:{KEY_ID}@127.0.0.1:{port}"}
        start = time.monotonic()
        result = cli_env(env, "--node", IID, "--region", "eu-west-1", "--out", str(tmp_path))
        took = time.monotonic() - start
    line = one_clean_line(result, ExitCode.FAILURE)
    assert "cannot reach the AWS endpoint for describe_instances (3 attempts)" in line
    assert f"http://***@127.0.0.1:{port}/" in line
    assert took < 30


@kernel
@pytest.mark.kernel
def test_silent_endpoint_fails_in_one_line_within_30s(tmp_path: Path) -> None:
    """An endpoint that never answers a SYN (198.18.0.1:9 on lo of a throw-away namespace,
    its packets dropped there): bounded connect timeouts × standard retries < 30 s."""
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {k: v for k, v in NO_AWS.items() if v is not None} | KEYS
    env |= {"AWS_ENDPOINT_URL": "http://198.18.0.1:9",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}  # fmt: skip
    with netns.Namespace() as ns:
        netns.link_up(ns.name, "lo")
        netns.add_address(ns.name, "lo", "198.18.0.1/32")
        ns.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"])
        argv = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "kpsim", "fetch",
                "--node", IID, "--region", "eu-west-1", "--out", str(tmp_path)]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        took = time.monotonic() - start
    assert proc.returncode == ExitCode.FAILURE, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("kpsim: cannot reach the AWS endpoint for describe_instances")
    assert 'Connect timeout on endpoint URL: "http://198.18.0.1:9/"' in line
    assert proc.stdout == "" and SECRET not in line
    assert 10 < took < 30  # three 5 s connect timeouts, not one refused connection


# -- the node never keeps what a fetch left ----------------------------------------------


def test_scripts_trap_signals_and_sweep_only_their_own_folder() -> None:
    from kpsim.fetch.script import STALE_MINUTES

    text = capture_script(ScriptSpec(nonce=7))
    for trap in ("trap 'exit 129' HUP", "trap 'exit 130' INT", "trap 'exit 143' TERM",
                 "trap 'rm -rf \"$d\"' EXIT"):  # fmt: skip
        assert trap in text
    assert text.index("trap 'exit 143' TERM") < text.index('mkdir -m 700 "$d"')
    assert f"-mmin +{STALE_MINUTES}" in text and 'b="${TMPDIR:-/tmp}"' in text
    assert text.count("rm -rf") == 2  # the stale folders in $TMPDIR, its own folder
    assert 'touch "${f%/*}"' in chunk_script(7, 0)  # a spool being read is not stale
