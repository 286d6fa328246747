"""A real HTTP AWS endpoint (moto's ThreadedMotoServer) whose SSM really runs scripts.

moto executes nothing, so this harness patches its SSM responses in-process:

    send_command ─▶ for each instance: FakeNode.runner(script) → (rc, stdout, stderr)
                   ├ StandardOutputContent: first 24,000 chars + "\\n--output truncated--"
                   ├ full stdout → S3 key <prefix>/<cmd>/<iid>/awsrunShellScript/0.…/stdout
                   │   after ``s3_delay`` seconds, or never (role cannot write)
                   └ the first ``hidden_polls`` GetCommandInvocation calls: InvocationDoesNotExist
    describe_instance_information ─▶ FakeNode.ping / platform (moto lacks the API)

A node is usually a network namespace with real rules (``NetnsRunner``): the script
runs under dash via ``ip netns exec``, in its own UTS namespace with the node's hostname
and its own TMPDIR, so several nodes on one machine never share a spool.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.core.responses import ActionResult
from moto.server import ThreadedMotoServer
from moto.ssm.exceptions import SSMException
from moto.ssm.responses import SimpleSystemManagerResponse

from kpsim.fetch.aws import AwsClients
from kpsim.inputs import synth
from kpsim.verify import netns

REGION = "ap-northeast-2"
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
CUT = "\n--output truncated--"

Runner = Callable[[str], tuple[int, bytes, bytes]]


@dataclass
class FakeNode:
    """How one instance behaves when SSM sends it a command."""

    instance_id: str
    runner: Runner
    platform: str = "Amazon Linux"
    ping: str = "Online"
    s3_delay: float | None = 0.2  # None: the node role cannot write the S3 copy
    hidden_polls: int = 1
    corrupt: str | None = None  # "stdout" | "s3" | "chunk": flip one payload byte
    scripts: list[str] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)  # full stdout, before any corruption


class NetnsRunner:
    """Run scripts as root inside namespace ``ns`` under dash, as host ``hostname``."""

    def __init__(self, ns: str, hostname: str) -> None:
        self.ns = ns
        self.hostname = hostname
        self.tmpdir = tempfile.mkdtemp(prefix="kpsim-node-")

    def __call__(self, script: str) -> tuple[int, bytes, bytes]:
        shell = shutil.which("dash") or "sh"
        wrapper = 'hostname "$1" && exec "$2" -c "$3"'
        argv = ["ip", "netns", "exec", self.ns, "unshare", "--uts", shell, "-c", wrapper,
                "node", self.hostname, shell, script]  # fmt: skip
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": self.tmpdir}
        proc = subprocess.run(argv, capture_output=True, timeout=60, env=env, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def close(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class MotoSsm:
    """The endpoint plus its fake nodes; use ``with MotoSsm() as aws:``."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}
        self.calls: Counter[str] = Counter()
        self._polls: Counter[tuple[str, str]] = Counter()
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}
        self._image = ""
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> MotoSsm:
        self._patch()
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self._timers:
            t.cancel()
        self.server.stop()
        self._unpatch()

    # -- clients and instances ---------------------------------------------------

    def client(self, service: str) -> Any:
        return boto3.client(
            service, region_name=REGION, endpoint_url=self.endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip

    def clients(self) -> AwsClients:
        return AwsClients(self.client("ssm"), self.client("ec2"), self.client("s3"))

    def launch(
        self, count: int, tags: dict[str, str], az: str = f"{REGION}b", state: str = "running"
    ) -> list[str]:
        """run_instances in moto EC2; returns the generated ids (map them to FakeNodes)."""
        ec2 = self.client("ec2")
        if not self._image:
            self._image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        image = self._image
        spec = [{"ResourceType": "instance",
                 "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]  # fmt: skip
        out = ec2.run_instances(
            ImageId=image, MinCount=count, MaxCount=count,
            Placement={"AvailabilityZone": az}, TagSpecifications=spec,
        )  # fmt: skip
        ids = [i["InstanceId"] for i in out["Instances"]]
        if state == "stopped":
            ec2.stop_instances(InstanceIds=ids)
        return ids

    def add(self, node: FakeNode) -> FakeNode:
        self.nodes[node.instance_id] = node
        return node

    # -- the patched SSM API -------------------------------------------------------

    def _patch(self) -> None:
        cls = SimpleSystemManagerResponse
        self._saved = {n: cls.__dict__.get(n) for n in
                       ("send_command", "get_command_invocation",
                        "describe_instance_information")}  # fmt: skip
        harness = self
        original_send = cls.send_command
        original_get = cls.get_command_invocation

        def send_command(resp: Any) -> Any:
            original_send(resp)
            command = resp.ssm_backend._commands[-1]
            # moto adds every EC2 instance when Targets is empty: keep only the asked ones.
            asked = set(resp._get_param("InstanceIds", []))
            command.instance_ids = [i for i in command.instance_ids if i in asked]
            command.invocations = [v for v in command.invocations if v["InstanceId"] in asked]
            harness._execute(command)
            return ActionResult({"Command": command.response_object()})

        def get_command_invocation(resp: Any) -> Any:
            key = (resp._get_param("CommandId"), resp._get_param("InstanceId"))
            node = harness.nodes.get(key[1])
            with harness._lock:
                harness.calls["get_command_invocation"] += 1
                harness._polls[key] += 1
                hidden = node is not None and harness._polls[key] <= node.hidden_polls
            if hidden:
                raise SSMException("InvocationDoesNotExist", "not yet")
            return original_get(resp)

        def describe_instance_information(resp: Any) -> Any:
            harness.calls["describe_instance_information"] += 1
            wanted: set[str] | None = None
            for f in resp._get_param("Filters", []) or []:
                if f.get("Key") == "InstanceIds":
                    wanted = set(f.get("Values", []))
            items = [
                {"InstanceId": n.instance_id, "PingStatus": n.ping, "PlatformType": "Linux",
                 "PlatformName": n.platform, "AgentVersion": "3.3.0.0",
                 "LastPingDateTime": datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)}
                for n in harness.nodes.values() if wanted is None or n.instance_id in wanted
            ]  # fmt: skip
            return ActionResult({"InstanceInformationList": items})

        cls.send_command = send_command  # type: ignore[method-assign]
        cls.get_command_invocation = get_command_invocation  # type: ignore[method-assign]
        cls.describe_instance_information = describe_instance_information  # type: ignore[attr-defined]

    def _unpatch(self) -> None:
        cls = SimpleSystemManagerResponse
        for name, value in self._saved.items():
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)

    def _execute(self, command: Any) -> None:
        """Run the command's script on every targeted node (in parallel, like SSM)."""
        with self._lock:
            self.calls["send_command"] += 1
        script = command.parameters["commands"][0]
        by_id = {inv["InstanceId"]: inv for inv in command.invocations}
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda iid: self._run_one(command, script, by_id[iid]), by_id))

    def _run_one(self, command: Any, script: str, inv: dict[str, Any]) -> None:
        node = self.nodes.get(inv["InstanceId"])
        if node is None:
            inv.update(Status="Failed", StatusDetails="Undeliverable", ResponseCode=-1)
            return
        node.scripts.append(script)
        rc, out, err = node.runner(script)
        node.outputs.append(out)
        if node.corrupt == "chunk" and b"==kpsim:chunk index=0==" in out:
            out = _flip(out, len(out) // 2)  # inside the deflate stream, not the gzip header
        full = out
        if node.corrupt in ("stdout", "s3"):
            full = _flip(out, len(out) // 2)
        shown = (full if node.corrupt == "stdout" else out).decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        inv.update(
            Status="Success" if rc == 0 else "Failed",
            StatusDetails="Success" if rc == 0 else "Failed",
            ResponseCode=rc,
            StandardOutputContent=_cut(shown, STDOUT_LIMIT),
            StandardErrorContent=_cut(stderr, STDERR_LIMIT),
        )
        if command.output_s3_bucket_name and node.s3_delay is not None:
            prefix = command.output_s3_key_prefix.strip("/")
            parts = [prefix, command.command_id, node.instance_id,
                     "awsrunShellScript", "0.awsrunShellScript", "stdout"]  # fmt: skip
            key = "/".join(p for p in parts if p)
            body = full if node.corrupt == "s3" else out
            timer = threading.Timer(
                node.s3_delay, self._put, (command.output_s3_bucket_name, key, body)
            )
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def _put(self, bucket: str, key: str, body: bytes) -> None:
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def _cut(text: str, limit: int) -> str:
    """SSM's cut: the first ``limit`` characters, then a marker."""
    return text[:limit] + CUT if len(text) > limit else text


def _flip(data: bytes, at: int) -> bytes:
    """Change one byte (keeping it printable ASCII) so lengths stay equal."""
    at = max(0, min(at, len(data) - 1))
    new = b"A" if data[at : at + 1] != b"A" else b"B"
    return data[:at] + new + data[at + 1 :]


@contextmanager
def netns_node(rules: str, hostname: str, address: str = "198.18.0.10/32") -> Iterator[NetnsRunner]:
    """A namespace with ``rules`` loaded, lo up with ``address``; always deleted."""
    with netns.Namespace() as ns:
        ns.load_rules(rules)
        netns.link_up(ns.name, "lo")
        netns.add_address(ns.name, "lo", address)
        runner = NetnsRunner(ns.name, hostname)
        try:
            yield runner
        finally:
            runner.close()


def seed_rules(index: int = 0) -> tuple[str, str]:
    """(iptables-restore text, hostname) for seed-workshop node ``index``."""
    cluster = synth.seed_workshop()
    node = cluster.nodes[index]
    return synth.render_restore(cluster, node), node.name
