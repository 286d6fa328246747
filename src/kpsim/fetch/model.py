"""The data a fetch passes between its stages: what to fetch, where, and what happened.

    FetchRequest ─ resolve ─▶ Target… ─ run script ─▶ NodeCapture ─ store ─▶ NodeResult

All frozen; the CLI turns a FetchReport into output and an exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path


class CaptureFormat(str, Enum):
    """Which captures to write: iptables-save text, `iptables -L` listings, or both."""

    SAVE = "save"
    LIST = "list"
    BOTH = "both"

    @property
    def save(self) -> bool:
        return self is not CaptureFormat.LIST

    @property
    def listing(self) -> bool:
        return self is not CaptureFormat.SAVE


class Failure(str, Enum):
    """Why one node could not be fetched (closed set; docs/fetch.md explains each)."""

    NOT_MANAGED = "not-ssm-managed"
    OFFLINE = "ssm-agent-offline"
    BOTTLEROCKET = "bottlerocket"
    ACCESS_DENIED = "access-denied"
    UNDELIVERABLE = "undeliverable"
    TIMED_OUT = "timed-out"
    FAILED = "failed"
    INCOMPLETE = "incomplete-output"
    CHECKSUM = "checksum-mismatch"
    BAD_OUTPUT = "bad-output"
    WRITE = "write-failed"


@dataclass(frozen=True, slots=True)
class Clock:
    """Injected time: wall clock for capture_time, monotonic + sleep for bounded waits."""

    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True, slots=True)
class Waits:
    """Every wait is bounded; tests shrink these."""

    timeout: float = 300.0  # per command round: send → terminal status
    poll_interval: float = 1.0  # first poll gap; grows ×1.5 up to poll_max
    poll_max: float = 5.0
    invocation_grace: float = 30.0  # InvocationDoesNotExist is normal this long after send
    s3_wait: float = 30.0  # the S3 copy may land a little after Success
    cleanup_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Validated options of one `kpsim fetch` over SSM."""

    instance_ids: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    cluster: str | None = None
    out: Path = Path("fixtures/iptables")
    tables: tuple[str, ...] = ("nat", "filter", "mangle")
    fmt: CaptureFormat = CaptureFormat.SAVE
    s3_bucket: str | None = None
    s3_prefix: str = ""
    document: str = "AWS-RunShellScript"  # or a narrow custom document (docs/fetch.md)
    concurrency: int = 8
    waits: Waits = Waits()

    @property
    def set_name(self) -> str:
        """Fixture-set folder: the cluster name, else ``fetched``."""
        return self.cluster or "fetched"


@dataclass(frozen=True, slots=True)
class Target:
    """One node to fetch, with what EC2 knows about it (for the fixture metadata)."""

    instance_id: str
    availability_zone: str | None = None
    private_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeError:
    """A per-node failure: the reason code and a message that says what to do."""

    instance_id: str
    reason: Failure
    message: str


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One node's outcome: written files (ok) or an error; notes are warnings either way."""

    instance_id: str
    files: tuple[Path, ...] = ()
    error: NodeError | None = None
    route: str = ""  # inline | s3 | chunks | local
    payload_bytes: int = 0
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class FetchReport:
    """Everything a fetch did, for the CLI to render; ``send_command_calls`` for the bench."""

    results: tuple[NodeResult, ...]
    send_command_calls: int = 0

    @property
    def failed(self) -> tuple[NodeResult, ...]:
        return tuple(r for r in self.results if not r.ok)


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """A stage change for one node (``instance_id`` empty for run-wide events)."""

    instance_id: str
    stage: str  # resolve | send | wait | s3 | chunk | write | done | failed
    detail: str = ""


Progress = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """Default progress sink: nothing below the CLI prints."""
