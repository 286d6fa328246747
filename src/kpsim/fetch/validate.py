"""Check every user-supplied value before any AWS call or subprocess.

Bad values raise ``UsageError`` (exit 2) naming the value, so nothing unchecked ever
reaches an API filter, an S3 key or (never) the remote script.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from kpsim.errors import UsageError

#: iptables tables the script may dump, in iptables-save's own order.
TABLES = ("raw", "mangle", "filter", "nat", "security")

INSTANCE_ID_RE = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")
# EC2 tag characters: letters, digits, spaces and _ . : / = + - @ (no filter wildcards).
_TAG_KEY_RE = re.compile(r"^[\w .:/=+@-]{1,128}$", re.ASCII)
_TAG_VALUE_RE = re.compile(r"^[\w .:/=+@-]{0,256}$", re.ASCII)
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]{1,400}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.+=,@:/-]{1,128}$")
_NETNS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_K8S_NODE_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
# SSM document names (or a document ARN): letters, digits, _ - . and, for ARNs, : /
_DOCUMENT_RE = re.compile(
    r"^(arn:aws[a-z-]*:ssm:[a-z0-9-]*:\d{0,12}:document/)?[A-Za-z0-9_.-]{3,128}$"
)
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


def document(value: str) -> str:
    if not _DOCUMENT_RE.fullmatch(value):
        raise UsageError(f"--document {value!r}: not an SSM document name or ARN")
    return value


def instance_id(value: str) -> str:
    if not INSTANCE_ID_RE.fullmatch(value):
        raise UsageError(f"--node {value!r}: not an instance id (i-… or mi-…, 8–17 hex digits)")
    return value


def tag(value: str) -> tuple[str, str]:
    """``KEY=VALUE`` (split at the first ``=``) with EC2's tag character set."""
    key, sep, val = value.partition("=")
    if not sep or not _TAG_KEY_RE.fullmatch(key) or not _TAG_VALUE_RE.fullmatch(val):
        raise UsageError(
            f"--tag {value!r}: expected KEY=VALUE using letters, digits, spaces and _.:/=+-@"
        )
    return key, val


def cluster(value: str) -> str:
    if not _CLUSTER_RE.fullmatch(value):
        raise UsageError(f"--cluster {value!r}: not an EKS cluster name ([A-Za-z0-9_-], ≤100)")
    return value


def bucket(value: str) -> str:
    bad = ".." in value or value.startswith("xn--") or value.endswith("-s3alias")
    if not _BUCKET_RE.fullmatch(value) or bad or _is_ip(value):
        raise UsageError(f"--s3-bucket {value!r}: not a valid S3 bucket name")
    return value


def prefix(value: str) -> str:
    """An S3 key prefix, returned without leading/trailing slashes."""
    trimmed = value.strip("/")
    if not trimmed:
        return ""
    parts = trimmed.split("/")
    if not _PREFIX_RE.fullmatch(trimmed) or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"--s3-prefix {value!r}: use letters, digits and !_.*'()-/ only")
    return trimmed


def region(value: str) -> str:
    if not _REGION_RE.fullmatch(value):
        raise UsageError(f"--region {value!r}: not an AWS region name (e.g. eu-west-1)")
    return value


def profile(value: str) -> str:
    if not _PROFILE_RE.fullmatch(value):
        raise UsageError(f"--profile {value!r}: not a profile name")
    return value


def tables(value: str | Iterable[str]) -> tuple[str, ...]:
    """Comma list → allow-listed table names in iptables-save order (duplicates dropped)."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    bad = [n for n in names if n not in TABLES]
    if bad or not names:
        raise UsageError(f"--tables {','.join(names)!r}: choose from {','.join(TABLES)}")
    return tuple(t for t in TABLES if t in names)


def netns_name(value: str) -> str:
    if not _NETNS_RE.fullmatch(value):
        raise UsageError(f"--netns {value!r}: not a network namespace name")
    return value


def k8s_node(value: str) -> str:
    if not _K8S_NODE_RE.fullmatch(value):
        raise UsageError(f"--node {value!r}: not a Kubernetes node name")
    return value


def image(value: str) -> str:
    if not _IMAGE_RE.fullmatch(value):
        raise UsageError(f"--image {value!r}: not a container image reference")
    return value


def bounded_int(name: str, value: int, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise UsageError(f"{name} {value!r}: must be an integer from {low} to {high}")
    return value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
