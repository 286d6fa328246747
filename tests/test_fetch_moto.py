"""kpsim fetch against a real HTTP endpoint (moto) whose SSM runs the script in netns nodes.

Kernel-backed: needs root, iptables and network namespaces (skips with a reason otherwise).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kpsim.cli.fetch import fetch_command
from kpsim.fetch import Clock, FetchRequest, Waits, fetch_ssm
from kpsim.fetch.model import CaptureFormat, Failure
from kpsim.fetch.payload import read_frame, split_sections
from kpsim.formats import load_file
from kpsim.formats.common import parse_meta
from kpsim.inputs import synth
from kpsim.verify import netns

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not netns.available(), reason="needs root, ip, iptables, iptables-save"),
    pytest.mark.skipif(importlib.util.find_spec("moto.server") is None, reason="moto[server]"),
]

from moto_ssm import FakeNode, MotoSsm, NetnsRunner, netns_node, seed_rules  # noqa: E402

FAST = Waits(timeout=30, poll_interval=0.02, poll_max=0.1, invocation_grace=5,
             s3_wait=3, cleanup_timeout=10)  # fmt: skip
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
CLOCK = Clock(now=lambda: NOW)
META_KEYS = {
    "schema", "node", "instance_id", "availability_zone", "private_ips", "local_addresses",
    "iptables_version", "iptables_backend", "kube_proxy_mode", "capture_time", "sha256", "source",
    "ip",  # the node's ip -j addr / route / rule (the capture script collects them)
}  # fmt: skip


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoSsm]:
    with MotoSsm() as harness:
        harness.client("s3").create_bucket(
            Bucket="kpsim-out",
            CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"},
        )
        yield harness


@pytest.fixture(scope="module")
def seed_ns() -> Iterator[NetnsRunner]:
    rules, host = seed_rules(0)
    with netns_node(rules, host) as runner:
        yield runner


@pytest.fixture(scope="module")
def big_ns() -> Iterator[tuple[NetnsRunner, int]]:
    cluster = synth.synth_large(3000, 5, 1)
    rules = synth.render_restore(cluster, cluster.nodes[0])
    with netns_node(rules, cluster.nodes[0].name) as runner:
        yield runner, len(rules)


@pytest.fixture
def request_cleanup() -> Iterator[list[NetnsRunner]]:
    """Runners a test makes itself; their temp dirs are removed afterwards."""
    runners: list[NetnsRunner] = []
    yield runners
    for r in runners:
        r.close()


def node_on(aws: MotoSsm, runner: NetnsRunner, **kw: object) -> FakeNode:
    (iid,) = aws.launch(1, {"Name": "worker"})
    return aws.add(FakeNode(iid, runner, **kw))  # type: ignore[arg-type]


def body_and_meta(path: Path) -> tuple[str, dict[str, object]]:
    head, _, body = path.read_text().partition("\n")
    meta = parse_meta(head)
    assert meta is not None
    return body, meta


def printed_save(node: FakeNode) -> str:
    """The iptables-save text in the node's first (full, uncut) capture stdout."""
    frame = read_frame(node.outputs[0])
    assert frame.payload is not None
    return split_sections(frame.payload)["iptables-save"]


def strip_dates(text: str) -> list[str]:
    """Rule lines without the timestamp comments and chain counters that change between runs."""
    return [re.sub(r"\[\d+:\d+\]", "[0:0]", line)
            for line in text.splitlines() if not line.startswith("# ")]  # fmt: skip


def test_small_node_end_to_end(aws: MotoSsm, seed_ns: NetnsRunner, tmp_path: Path) -> None:
    node = node_on(aws, seed_ns, hidden_polls=2)
    request = FetchRequest(instance_ids=(node.instance_id,), out=tmp_path, waits=FAST)
    report = fetch_ssm(request, aws.clients(), clock=CLOCK)
    (result,) = report.results
    assert result.ok, result.error
    assert result.route == "inline"
    path = tmp_path / "fetched" / "ip-10-11-28-53" / "iptables-save.txt"
    assert result.files == (path,)
    body, meta = body_and_meta(path)
    assert set(meta) == META_KEYS
    ip = meta["ip"]
    assert isinstance(ip, dict) and set(ip) == {"addr", "route", "rule"}
    ec2 = aws.client("ec2").describe_instances(InstanceIds=[node.instance_id])
    inst = ec2["Reservations"][0]["Instances"][0]
    assert meta["instance_id"] == node.instance_id
    assert meta["node"] == "ip-10-11-28-53.ap-northeast-2.compute.internal"
    assert meta["availability_zone"] == "ap-northeast-2b"
    assert meta["private_ips"] == [inst["PrivateIpAddress"]]
    assert meta["local_addresses"] == ["127.0.0.1/8", "198.18.0.10/32"]
    assert (meta["iptables_version"], meta["iptables_backend"]) == ("1.8.9", "nf_tables")
    assert meta["kube_proxy_mode"] == "unknown"  # nothing listens on :10249 in the netns
    assert meta["capture_time"] == "2026-11-26T12:00:00Z"
    assert meta["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert meta["source"] == "kpsim fetch via SSM"
    assert strip_dates(body) == strip_dates(netns.save(seed_ns.ns, ["mangle", "filter", "nat"]))
    assert "-A KUBE-NODEPORTS" in body
    ruleset = load_file(path)
    assert {"nat", "filter", "mangle"} <= set(ruleset.tables)
    assert "KUBE-SERVICES" in ruleset.tables["nat"].chains

    # `kpsim trace --port 30080` works on the fetched set as on the shipped one
    from kpsim import api
    from kpsim.kube.scenario import TraceRequest

    loaded = api.load([str(tmp_path / "fetched")], all_files=False)
    (trace,) = api.trace(loaded, TraceRequest(port=30080)).nodes
    assert {o.destination for o in trace.outcomes} == {
        "10.11.11.70:80",
        "10.11.16.79:80",
        "10.11.41.25:80",
    }
    assert sum(o.outcome.probability for o in trace.outcomes) == 1


def test_cluster_resolution(
    aws: MotoSsm, seed_ns: NetnsRunner, tmp_path: Path, request_cleanup: list[NetnsRunner]
) -> None:
    a, b = aws.launch(2, {"eks:cluster-name": "demo"})
    (c,) = aws.launch(1, {"kubernetes.io/cluster/demo": "owned"})
    aws.launch(1, {"eks:cluster-name": "other"})
    aws.launch(1, {"eks:cluster-name": "demo"}, state="stopped")
    for i, iid in enumerate((a, b, c)):
        runner = NetnsRunner(seed_ns.ns, f"ip-198-18-0-{i}.ec2.internal")
        request_cleanup.append(runner)
        aws.add(FakeNode(iid, runner))
    request = FetchRequest(cluster="demo", out=tmp_path, waits=FAST, concurrency=4)
    report = fetch_ssm(request, aws.clients(), clock=CLOCK)
    assert sorted(r.instance_id for r in report.results) == sorted((a, b, c))
    assert all(r.ok for r in report.results), report.failed
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "ip-198-18-0-0", "ip-198-18-0-1", "ip-198-18-0-2",
    ]  # fmt: skip
    assert report.send_command_calls == 1


def test_five_megabytes_through_s3(
    aws: MotoSsm, big_ns: tuple[NetnsRunner, int], tmp_path: Path
) -> None:
    runner, _ = big_ns
    node = node_on(aws, runner, s3_delay=0.4)
    request = FetchRequest(instance_ids=(node.instance_id,), out=tmp_path, waits=FAST,
                           s3_bucket="kpsim-out", s3_prefix="runs/a")  # fmt: skip
    (result,) = fetch_ssm(request, aws.clients(), clock=CLOCK).results
    assert result.ok, result.error
    assert result.route == "s3"
    assert result.payload_bytes > 5_000_000
    body, meta = body_and_meta(result.files[0])
    assert body == printed_save(node)
    assert len(body) > 5_000_000
    assert meta["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert not list(Path(runner.tmpdir).glob("kpsim-*")), "spool left on the node"


def test_five_megabytes_through_chunks(
    aws: MotoSsm, big_ns: tuple[NetnsRunner, int], tmp_path: Path
) -> None:
    runner, _ = big_ns
    node = node_on(aws, runner, hidden_polls=0)
    request = FetchRequest(instance_ids=(node.instance_id,), out=tmp_path, waits=FAST)
    (result,) = fetch_ssm(request, aws.clients(), clock=CLOCK).results
    assert result.ok, result.error
    assert result.route == "chunks"
    body, _ = body_and_meta(result.files[0])
    assert body == printed_save(node)
    chunks = [s for s in node.scripts if "read back one chunk" in s]
    assert len(chunks) > 20
    assert "remove the spooled capture" in node.scripts[-1]
    assert not list(Path(runner.tmpdir).glob("kpsim-*")), "spool left on the node"


def test_s3_copy_never_appears_falls_back_to_chunks(
    aws: MotoSsm, seed_ns: NetnsRunner, tmp_path: Path
) -> None:
    node = node_on(aws, seed_ns, s3_delay=None)
    waits = Waits(timeout=30, poll_interval=0.02, poll_max=0.1, s3_wait=0.3)
    request = FetchRequest(instance_ids=(node.instance_id,), out=tmp_path, waits=waits,
                           fmt=CaptureFormat.BOTH, s3_bucket="kpsim-out")  # fmt: skip
    (result,) = fetch_ssm(request, aws.clients(), clock=CLOCK).results
    assert result.ok, result.error
    assert result.route == "chunks"
    assert any("did not appear" in n and "s3:PutObject" in n for n in result.notes)
    names = sorted(p.name for p in result.files)
    assert names == ["iptables-filter.txt", "iptables-mangle.txt", "iptables-nat.txt",
                     "iptables-save.txt"]  # fmt: skip
    nat, _ = body_and_meta(tmp_path / "fetched" / "ip-10-11-28-53" / "iptables-nat.txt")
    assert nat.startswith("Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)\nnum ")


@pytest.mark.parametrize(("corrupt", "fmt"), [("stdout", "save"), ("chunk", "both")])
def test_checksum_mismatch_writes_nothing(
    aws: MotoSsm, seed_ns: NetnsRunner, tmp_path: Path, corrupt: str, fmt: str
) -> None:
    folder = tmp_path / "fetched" / "ip-10-11-28-53"
    folder.mkdir(parents=True)
    good = folder / "iptables-save.txt"
    good.write_text("# a good fixture from yesterday\n")
    before = good.stat().st_mtime_ns
    node = node_on(aws, seed_ns, corrupt=corrupt)
    request = FetchRequest(instance_ids=(node.instance_id,), out=tmp_path, waits=FAST,
                           fmt=CaptureFormat(fmt))  # fmt: skip
    (result,) = fetch_ssm(request, aws.clients(), clock=CLOCK).results
    assert result.error is not None
    assert result.error.reason is Failure.CHECKSUM
    assert good.read_text() == "# a good fixture from yesterday\n"
    assert good.stat().st_mtime_ns == before
    assert sorted(p.name for p in folder.iterdir()) == ["iptables-save.txt"]


def test_cli_many_nodes_one_failure(aws: MotoSsm, seed_ns: NetnsRunner, tmp_path: Path) -> None:
    good = node_on(aws, seed_ns)
    (unmanaged,) = aws.launch(1, {"Name": "no-agent"})
    group = click.Group("kpsim")
    group.add_command(fetch_command)
    env = {
        "AWS_ENDPOINT_URL": aws.endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }  # fmt: skip
    args = ["fetch", "--node", good.instance_id, "--node", unmanaged, "--region",
            "ap-northeast-2", "--out", str(tmp_path), "--timeout", "30"]  # fmt: skip
    result = CliRunner().invoke(group, args, env=env)
    assert result.exit_code == 1, result.output
    assert f"ok      {good.instance_id}" in result.output
    assert f"FAILED  {unmanaged}: [not-ssm-managed]" in result.output
    assert "1 of 2 node(s) fetched, 1 failed" in result.output
    assert "testing" not in result.output  # credentials never printed


def test_interrupted_fetch_leaves_a_spool_the_retry_removes(
    aws: MotoSsm, seed_ns: NetnsRunner, tmp_path: Path, request_cleanup: list[NetnsRunner]
) -> None:
    """Ctrl-C while the capture runs: the node keeps its spool (the client never came back
    for it). A retry's capture removes it once stale — and leaves a fresh one, which may be
    another fetch's, alone; its own spool it removes as usual."""
    import time

    from kpsim.fetch.model import ProgressEvent
    from kpsim.fetch.script import STALE_MINUTES

    runner = NetnsRunner(seed_ns.ns, "ip-198-18-0-9.ec2.internal")
    request_cleanup.append(runner)
    node = aws.add(FakeNode(aws.launch(1, {"Name": "worker"})[0], runner, hidden_polls=0))
    request = FetchRequest(instance_ids=(node.instance_id,), out=tmp_path, waits=FAST,
                           fmt=CaptureFormat.BOTH)  # fmt: skip
    spools = Path(runner.tmpdir)

    def ctrl_c(event: ProgressEvent) -> None:
        if event.stage == "wait":  # the capture was sent and has run
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_ssm(request, aws.clients(), clock=CLOCK, progress=ctrl_c, nonce=111)
    assert sorted(p.name for p in spools.iterdir()) == ["kpsim-111"]
    assert (spools / "kpsim-111" / "payload.gz").is_file()
    (spools / "kpsim-222").mkdir(mode=0o700)  # a fetch running now
    (result,) = fetch_ssm(request, aws.clients(), clock=CLOCK, nonce=333).results
    assert result.ok and result.route == "chunks", result.error
    assert sorted(p.name for p in spools.iterdir()) == ["kpsim-111", "kpsim-222"]  # young
    then = time.time() - (STALE_MINUTES + 1) * 60
    os.utime(spools / "kpsim-111", (then, then))
    (result,) = fetch_ssm(request, aws.clients(), clock=CLOCK, nonce=444).results
    assert result.ok and result.route == "chunks", result.error
    assert sorted(p.name for p in spools.iterdir()) == ["kpsim-222"]
