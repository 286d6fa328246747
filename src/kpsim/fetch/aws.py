"""boto3 clients and botocore errors, imported lazily so the rest of kpsim never needs them.

Turns a botocore exception into one sentence a user can act on (the IAM action to
grant, the agent to start), so no botocore traceback reaches the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kpsim.errors import FetchError, UsageError

#: The IAM action each API call needs, named when AWS answers AccessDenied.
PERMISSIONS = {
    "send_command": "ssm:SendCommand",
    "get_command_invocation": "ssm:GetCommandInvocation",
    "describe_instance_information": "ssm:DescribeInstanceInformation",
    "describe_instances": "ec2:DescribeInstances",
    "get_object": "s3:GetObject",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_ACTION_RE = re.compile(r"perform: ([a-z0-9-]+:[A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The three clients a fetch uses; tests pass clients aimed at moto or stubbed."""

    ssm: Any
    ec2: Any
    s3: Any | None = None


def make_clients(
    region: str | None = None, profile: str | None = None, endpoint_url: str | None = None
) -> AwsClients:
    """Clients from boto3's standard chain (profile, env, SSO, instance role,
    ``AWS_ENDPOINT_URL``) with standard-mode retries set explicitly."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError as exc:  # pragma: no cover - boto3 is a declared dependency
        raise FetchError("kpsim fetch needs boto3: pip install boto3") from exc
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:
        raise UsageError(f"--profile {profile!r}: {exc}") from exc
    if not session.region_name:
        raise UsageError("no AWS region: pass --region, set AWS_REGION, or set one in the profile")
    config = Config(
        retries={"mode": "standard", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="kpsim-fetch",
    )
    kw: dict[str, Any] = {"config": config}
    if endpoint_url:
        kw["endpoint_url"] = endpoint_url
    return AwsClients(
        ssm=session.client("ssm", **kw),
        ec2=session.client("ec2", **kw),
        s3=session.client("s3", **kw),
    )


def is_aws_error(exc: BaseException) -> bool:
    """A botocore exception (ClientError or a transport/credential error)."""
    return type(exc).__module__.startswith(("botocore", "boto3"))


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_denied(exc: BaseException) -> bool:
    return error_code(exc) in _DENIED


def describe(exc: BaseException, operation: str) -> str:
    """One actionable sentence for a failed call; never includes credentials."""
    code = error_code(exc)
    if code in _DENIED:
        named = _ACTION_RE.search(str(exc))
        action = named.group(1) if named else PERMISSIONS.get(operation, operation)
        return f"AccessDenied: your AWS identity lacks {action} (see docs/fetch.md for the policy)"
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found (use --profile, env vars, SSO login or an instance role)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return f"cannot reach the AWS endpoint for {operation}: {exc}"
    if code:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
        return f"{operation} failed: {code}: {message}".rstrip(": ")
    return f"{operation} failed: {exc}"
