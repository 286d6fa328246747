"""boto3 clients and botocore errors, imported lazily so the rest of kpsim never needs them.

Turns a botocore exception into one sentence a user can act on (the IAM action to
grant, the agent to start), so no botocore traceback reaches the CLI.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
_USERINFO_RE = re.compile(r"(//)[^/@\s]+@")  # http://user:secret@host → http://***@host
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_EC2",
                  "AWS_ENDPOINT_URL_S3")  # fmt: skip
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                "AWS_ACCESS_KEY_ID")  # fmt: skip

#: Every call: botocore's standard retry mode, bounded. An endpoint that never answers a
#: connect fails within ATTEMPTS × CONNECT_S + the backoff (≤ 1 + 2 s): about 17 s.
ATTEMPTS = 3
CONNECT_S = 5.0
READ_S = 15.0


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The three clients a fetch uses; tests pass clients aimed at moto or stubbed."""

    ssm: Any
    ec2: Any
    s3: Any | None = None


def scrub(text: str) -> str:
    """``text`` without anything secret: no credential value from the environment, no
    user info in a URL. Every message about AWS passes through here."""
    for var in _SECRET_VARS:
        value = os.environ.get(var, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return _USERINFO_RE.sub(r"\1***@", text)


def make_clients(
    region: str | None = None, profile: str | None = None, endpoint_url: str | None = None
) -> AwsClients:
    """Clients from boto3's standard chain (profile, env, SSO, instance role,
    ``AWS_ENDPOINT_URL``) with standard-mode retries and bounded timeouts. A profile,
    region or credentials that cannot work are a UsageError (exit 2) naming what is wrong,
    before any call; nothing secret is ever in the message."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError as exc:  # pragma: no cover - boto3 is a declared dependency
        raise FetchError("kpsim fetch needs boto3: pip install boto3") from exc
    env_region = os.environ.get("AWS_REGION") or None  # as the AWS CLI: it comes before
    from_where = "--region" if region else "AWS_REGION" if env_region else "the configured region"
    region = region or env_region  # AWS_DEFAULT_REGION and the profile's, which boto3 reads
    for name, url in [
        ("endpoint_url", endpoint_url),
        *((v, os.environ.get(v)) for v in _ENDPOINT_VARS),
    ]:
        if url and not _is_endpoint(url):  # never echoed: user info may hold a secret
            raise UsageError(f"{name} is not an endpoint URL (http[s]://host[:port][/path])")
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except BotoCoreError as exc:  # e.g. no such profile
        where = "--profile" if profile else "AWS_PROFILE"
        raise UsageError(f"{where}: {scrub(str(exc))}") from exc
    _check_region(session, from_where)
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # partial keys, a failing credential_process, SSO expired
        raise UsageError(f"AWS credentials unusable: {scrub(str(exc))}") from exc
    if credentials is None:
        raise UsageError(
            "no AWS credentials found: use --profile, AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, `aws sso login`, or an instance role"
        )
    config = Config(
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
        connect_timeout=CONNECT_S,
        read_timeout=READ_S,
        user_agent_extra="kpsim-fetch",
    )
    kw: dict[str, Any] = {"config": config}
    if endpoint_url:
        kw["endpoint_url"] = endpoint_url
    try:
        return AwsClients(
            ssm=session.client("ssm", **kw),
            ec2=session.client("ec2", **kw),
            s3=session.client("s3", **kw),
        )
    except (BotoCoreError, ValueError) as exc:  # e.g. AWS_ENDPOINT_URL is not a URL
        raise UsageError(f"cannot set up the AWS clients: {scrub(str(exc))}") from exc


def _is_endpoint(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError when the port (or what looks like one) is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_region(session: Any, where: str) -> None:
    """No region, or one every AWS partition would refuse (``mars-east-1``), is a usage
    error; a region newer than this botocore is not."""
    region = session.region_name
    if not region:
        raise UsageError(
            "no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or set "
            "region in the profile"
        )
    try:
        loader = session._session.get_component("data_loader")
        partitions = loader.load_data("endpoints")["partitions"]
        known = {r for p in partitions for r in p.get("regions", {})}
        patterns = [str(p["regionRegex"]) for p in partitions if p.get("regionRegex")]
    except Exception:  # botocore moved its data: let the endpoint decide
        return
    if region not in known and not any(re.match(x, region) for x in patterns):
        raise UsageError(f"{where} {region!r}: not an AWS region (e.g. eu-west-1)")


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
    return scrub(_describe(exc, operation))


def _describe(exc: BaseException, operation: str) -> str:
    code = error_code(exc)
    if code in _DENIED:
        named = _ACTION_RE.search(str(exc))
        action = named.group(1) if named else PERMISSIONS.get(operation, operation)
        return f"AccessDenied: your AWS identity lacks {action} (see docs/fetch.md for the policy)"
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found (use --profile, env vars, SSO login or an instance role)"
    if {c.__name__ for c in type(exc).__mro__} & {"ConnectionError", "HTTPClientError"}:
        return (
            f"cannot reach the AWS endpoint for {operation} ({ATTEMPTS} attempts): {exc}; "
            "check --region, the network (VPC endpoints, proxy) or AWS_ENDPOINT_URL"
        )
    if code:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
        return f"{operation} failed: {code}: {message}".rstrip(": ")
    return f"{operation} failed: {exc}"
