"""The SSM polling state machine and each fault, with botocore's Stubber (no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from kpsim.errors import FetchError
from kpsim.fetch import AwsClients, Clock, FetchReport, FetchRequest, Waits, fetch_ssm
from kpsim.fetch.model import Failure

IID = "i-0a3f5c27e91b04d68"
WAITS = Waits(timeout=60, poll_interval=1, poll_max=5, invocation_grace=10, s3_wait=5)


class FakeTime:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def framed(save: str = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") -> str:
    """What the capture script prints, built in Python (mirrors script.py's frame)."""
    sections = {
        "os-release-id": "amzn", "hostname": "ip-10-0-0-1.ec2.internal",
        "iptables-version": "iptables v1.8.8 (legacy)",
        "ip-addr": "2: eth0    inet 10.0.0.1/20 brd 10.0.15.255 scope global eth0",
        "proxy-mode": "iptables", "iptables-save": save, "save-stderr": "",
    }  # fmt: skip
    payload = "".join(f"==kpsim:section {k}==\n{v}\n" for k, v in sections.items()).encode()
    digest = hashlib.sha256(payload).hexdigest()
    head = f"==kpsim:begin v=1 bytes={len(payload)} sha256={digest} spool=0 gz=0==\n"
    return head + payload.decode() + f"==kpsim:end bytes={len(payload)} sha256={digest}==\n"


class Aws:
    """Three real clients, each wrapped in a Stubber."""

    def __init__(self) -> None:
        kw: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "x",
                              "aws_secret_access_key": "y"}  # fmt: skip
        self.clients = AwsClients(boto3.client("ssm", **kw), boto3.client("ec2", **kw),
                                  boto3.client("s3", **kw))  # fmt: skip
        self.ssm = Stubber(self.clients.ssm)
        self.ec2 = Stubber(self.clients.ec2)
        self.time = FakeTime()

    def instances(self, ids: list[str]) -> None:
        insts = [{"InstanceId": i, "Placement": {"AvailabilityZone": "us-east-1a"},
                  "PrivateIpAddress": "10.0.0.1"} for i in ids]  # fmt: skip
        self.ec2.add_response("describe_instances", {"Reservations": [{"Instances": insts}]}, None)

    def managed(self, ids: list[str], **extra: str) -> None:
        info = [{"InstanceId": i, "PingStatus": "Online", "PlatformType": "Linux",
                 "PlatformName": "Amazon Linux", **extra} for i in ids]  # fmt: skip
        self.ssm.add_response(
            "describe_instance_information", {"InstanceInformationList": info}, None
        )

    def sent(self, n: int = 0) -> None:
        command_id = f"{n:08d}-0000-4000-8000-000000000000"  # SSM command ids are UUIDs
        self.ssm.add_response("send_command", {"Command": {"CommandId": command_id}}, None)

    def invocation(self, status: str, details: str = "", stdout: str = "", **kw: Any) -> None:
        body = {"Status": status, "StatusDetails": details or status,
                "StandardOutputContent": stdout, **kw}  # fmt: skip
        self.ssm.add_response("get_command_invocation", body, None)

    def not_yet(self) -> None:
        self.ssm.add_client_error("get_command_invocation", "InvocationDoesNotExist")

    def fetch(self, tmp_path: Path, ids: tuple[str, ...] = (IID,), **kw: Any) -> FetchReport:
        clock = Clock(monotonic=self.time.monotonic, sleep=self.time.sleep)
        request = FetchRequest(instance_ids=ids, out=tmp_path, waits=WAITS, concurrency=1, **kw)
        with self.ssm, self.ec2:
            report = fetch_ssm(request, self.clients, clock=clock, nonce=42)
            self.ssm.assert_no_pending_responses()
        return report


@pytest.fixture
def aws() -> Aws:
    return Aws()


def one_error(report: FetchReport) -> tuple[Failure, str]:
    (result,) = report.results
    assert result.error is not None
    return result.error.reason, result.error.message


def test_invocation_does_not_exist_then_success(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    aws.not_yet()
    aws.not_yet()
    aws.invocation("InProgress")
    aws.invocation("Success", stdout=framed())
    report = aws.fetch(tmp_path)
    (result,) = report.results
    assert result.ok and result.route == "inline"
    assert aws.time.sleeps == [1, 1.5, 2.25]  # bounded backoff between polls
    text = (tmp_path / "fetched" / "ip-10-0-0-1" / "iptables-save.txt").read_text()
    assert '"iptables_backend": "legacy"' in text and '"kube_proxy_mode": "iptables"' in text


def test_invocation_never_registered_is_bounded(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    for _ in range(6):  # 0, 1, 2.5, 4.75, 8.125, 13.19 s: the last is past the 10 s grace
        aws.not_yet()
    reason, message = one_error(aws.fetch(tmp_path))
    assert reason is Failure.UNDELIVERABLE and "never registered" in message


def test_access_denied_names_the_permission(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.ssm.add_client_error(
        "send_command", "AccessDeniedException",
        "User: arn:aws:iam::1:user/x is not authorized to perform: ssm:SendCommand on ...",
    )  # fmt: skip
    reason, message = one_error(aws.fetch(tmp_path))
    assert reason is Failure.ACCESS_DENIED and "ssm:SendCommand" in message


def test_access_denied_on_describe_stops_everything(aws: Aws, tmp_path: Path) -> None:
    aws.ec2.add_client_error("describe_instances", "UnauthorizedOperation", "denied")
    with pytest.raises(FetchError, match="ec2:DescribeInstances"):
        aws.fetch(tmp_path)


@pytest.mark.parametrize(
    ("status", "details", "reason", "words"),
    [
        ("Failed", "Undeliverable", Failure.UNDELIVERABLE, "Undeliverable"),
        ("TimedOut", "ExecutionTimedOut", Failure.TIMED_OUT, "TimedOut"),
        ("TimedOut", "DeliveryTimedOut", Failure.TIMED_OUT, "never delivered"),
    ],
)
def test_terminal_faults(
    aws: Aws, tmp_path: Path, status: str, details: str, reason: Failure, words: str
) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    aws.invocation(status, details)
    got, message = one_error(aws.fetch(tmp_path))
    assert got is reason and words in message


def test_failed_carries_the_nodes_stderr(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    aws.invocation("Failed", stdout="==kpsim:error missing command: iptables-save==\n",
                   StandardErrorContent="kpsim: missing command: iptables-save\n",
                   ResponseCode=4)  # fmt: skip
    reason, message = one_error(aws.fetch(tmp_path))
    assert reason is Failure.FAILED
    assert "exit 4" in message and "missing command: iptables-save" in message


def test_own_deadline_times_out_a_stuck_command(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    for _ in range(16):  # polls at 0, 1, 2.5, 4.75, 8.125, then every 5 s up to 63.125
        aws.invocation("InProgress")
    reason, message = one_error(aws.fetch(tmp_path))
    assert reason is Failure.TIMED_OUT and "no result within 60s" in message
    assert aws.time.t == 63.125


@pytest.mark.parametrize(
    ("info", "reason", "words"),
    [
        (None, Failure.NOT_MANAGED, "not managed by SSM"),
        ({"PingStatus": "ConnectionLost"}, Failure.OFFLINE, "ConnectionLost"),
        ({"PlatformName": "Bottlerocket"}, Failure.BOTTLEROCKET, "admin container"),
    ],
)
def test_unreachable_nodes_are_not_sent_anything(
    aws: Aws, tmp_path: Path, info: dict[str, str] | None, reason: Failure, words: str
) -> None:
    aws.instances([IID])
    if info is None:
        aws.managed([])
    else:
        aws.managed([IID], **info)
    got, message = one_error(aws.fetch(tmp_path))  # no send_command stubbed: none made
    assert got is reason and words in message


def test_bottlerocket_detected_by_the_script(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    aws.invocation("Failed", stdout="==kpsim:unsupported bottlerocket==\n", ResponseCode=3)
    reason, message = one_error(aws.fetch(tmp_path))
    assert reason is Failure.BOTTLEROCKET and "apiclient exec admin sheltie" in message


def test_one_failure_does_not_stop_the_others(aws: Aws, tmp_path: Path) -> None:
    other = "i-07c1e94b2d6a83f15"
    aws.instances([IID, other])
    aws.managed([IID, other])
    aws.sent()
    aws.invocation("Success", stdout=framed())  # polled in id order: other first
    aws.invocation("Failed", "Undeliverable")
    report = aws.fetch(tmp_path, ids=(IID, other))
    assert [r.instance_id for r in report.results] == [IID, other]
    assert not report.results[0].ok and report.results[1].ok


def test_more_than_fifty_ids_batch_into_ceil_n_over_50_calls(aws: Aws, tmp_path: Path) -> None:
    ids = [f"i-{n:017x}" for n in range(1, 121)]
    aws.instances(ids)
    for chunk in (ids[:50], ids[50:100], ids[100:]):
        aws.managed(chunk)
    for n in range(3):
        aws.sent(n)
    for _ in ids:
        aws.invocation("Success", stdout=framed())
    report = aws.fetch(tmp_path, ids=tuple(ids))
    assert report.send_command_calls == 3
    assert len(report.results) == 120 and not report.failed
    assert len(list((tmp_path / "fetched").iterdir())) == 120  # same hostname: kept apart


def test_checksum_mismatch_inline_is_refused(aws: Aws, tmp_path: Path) -> None:
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    aws.invocation("Success", stdout=framed().replace("PREROUTING", "PREROUTINH"))
    reason, _ = one_error(aws.fetch(tmp_path))
    assert reason is Failure.CHECKSUM
    assert not (tmp_path / "fetched").exists()


def test_send_command_parameters(aws: Aws, tmp_path: Path) -> None:
    """Fixed document, the script as the only command, no early stop after an error, S3."""
    aws.instances([IID])
    aws.managed([IID])
    expected = {
        "InstanceIds": [IID], "DocumentName": "AWS-RunShellScript", "Comment": ANY,
        "Parameters": {"commands": [ANY], "executionTimeout": ["60"]}, "TimeoutSeconds": 60,
        "MaxConcurrency": "50", "MaxErrors": "100%", "OutputS3BucketName": "my-bucket",
        "OutputS3KeyPrefix": "kpsim/runs",
    }  # fmt: skip
    command_id = "00000000-0000-4000-8000-000000000000"
    aws.ssm.add_response("send_command", {"Command": {"CommandId": command_id}}, expected)
    aws.invocation("Success", stdout=framed())
    report = aws.fetch(tmp_path, s3_bucket="my-bucket", s3_prefix="kpsim/runs")
    assert report.results[0].ok


def test_custom_document_is_sent_by_name(aws: Aws, tmp_path: Path) -> None:
    """A narrow custom document (docs/fetch.md) replaces AWS-RunShellScript; it carries
    its own fixed script, so no parameters are sent."""
    aws.instances([IID])
    aws.managed([IID])
    expected = {
        "InstanceIds": [IID], "DocumentName": "kpsim-capture", "Comment": ANY,
        "TimeoutSeconds": 60, "MaxConcurrency": "50", "MaxErrors": "100%",
    }  # fmt: skip
    command_id = "00000000-0000-4000-8000-000000000001"
    aws.ssm.add_response("send_command", {"Command": {"CommandId": command_id}}, expected)
    aws.invocation("Success", stdout=framed())
    report = aws.fetch(tmp_path, document="kpsim-capture")
    assert report.results[0].ok


@pytest.mark.parametrize("bad", ["x", "doc name", "doc;rm", "a" * 200])
def test_bad_document_names_are_refused(bad: str) -> None:
    from kpsim.errors import UsageError
    from kpsim.fetch import validate

    with pytest.raises(UsageError, match="--document"):
        validate.document(bad)


class NoRetryAws(Aws):
    """Stubbed clients that never retry on their own: each stubbed error reaches kpsim."""

    def __init__(self) -> None:
        from botocore.config import Config

        kw: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "x",
                              "aws_secret_access_key": "y",
                              "config": Config(retries={"total_max_attempts": 1})}  # fmt: skip
        self.clients = AwsClients(boto3.client("ssm", **kw), boto3.client("ec2", **kw),
                                  boto3.client("s3", **kw))  # fmt: skip
        self.ssm = Stubber(self.clients.ssm)
        self.ec2 = Stubber(self.clients.ec2)
        self.time = FakeTime()


def test_throttled_polls_are_asked_again_not_failed(tmp_path: Path) -> None:
    """botocore's bounded retries ran out on a throttled poll: the node is still pending,
    and the next round (own deadline) asks again."""
    aws = NoRetryAws()
    aws.instances([IID])
    aws.managed([IID])
    aws.sent()
    aws.ssm.add_client_error("get_command_invocation", "ThrottlingException", "Rate exceeded")
    aws.ssm.add_client_error("get_command_invocation", "ThrottlingException", "Rate exceeded")
    aws.invocation("Success", stdout=framed())
    (result,) = aws.fetch(tmp_path).results
    assert result.ok, result.error
    assert aws.time.sleeps == [1, 1.5]


class Unreachable:
    """A client whose every call fails as botocore does when the endpoint never answers."""

    def __getattr__(self, operation: str) -> Any:
        from botocore.exceptions import ConnectTimeoutError

        def call(**kwargs: Any) -> Any:
            raise ConnectTimeoutError(endpoint_url="https://ec2.eu-west-1.amazonaws.com/")

        return call


def test_unreachable_endpoint_is_one_fetch_error(tmp_path: Path) -> None:
    clients = AwsClients(Unreachable(), Unreachable())
    request = FetchRequest(instance_ids=(IID,), out=tmp_path, waits=WAITS)
    with pytest.raises(FetchError) as info:
        fetch_ssm(request, clients)
    message = str(info.value)
    assert message.startswith("cannot reach the AWS endpoint for describe_instances (3 attempts)")
    assert "Connect timeout" in message and "\n" not in message
