"""Run the fixed scripts over SSM Run Command and bring every node's payload home whole.

    send_command (≤ 50 ids each) ─ poll get_command_invocation (own bounded loop)
      ├─ complete stdout, sha256 ok ─────────────────────────────▶ payload (inline)
      └─ cut at 24,000 chars ─┬─ --s3-bucket: get_object, bounded wait ▶ payload (s3)
                              └─ spool on node: chunk commands ───────▶ payload (chunks)
    then: cleanup command removes the spool; nothing is written before sha256 verifies.

Every wait is bounded (model.Waits); per-node problems become NodeError values.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kpsim.fetch.aws import AwsClients, describe, error_code, is_aws_error, is_denied
from kpsim.fetch.model import (
    Clock,
    Failure,
    FetchRequest,
    NodeError,
    Progress,
    ProgressEvent,
    Waits,
    no_progress,
)
from kpsim.fetch.payload import (
    ChecksumError,
    FrameError,
    Header,
    decode_chunk,
    join_chunks,
    marker,
    read_frame,
)
from kpsim.fetch.script import MAX_NONCE, ScriptSpec, capture_script, chunk_script, cleanup_script
from kpsim.fetch.targets import BATCH, BOTTLEROCKET_HELP, batches

DOCUMENT = "AWS-RunShellScript"
PLUGIN_DIR = "awsrunShellScript/0.awsrunShellScript"
_TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled", "Cancelling"}
_NOT_YET = {"InvocationDoesNotExist"}
#: Throttled after botocore's own retries: ask again next round (the deadline bounds it).
_THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException",
              "RequestLimitExceeded"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Invocation:
    """A finished command on one node: its stdout (or the error that ended it)."""

    command_id: str
    stdout: str = ""
    error: NodeError | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """A node's verified payload and how it came home."""

    data: bytes
    route: str
    notes: tuple[str, ...] = ()


class SsmSession:
    """One fetch run's SSM conversation; counts send_command calls for the bench."""

    def __init__(
        self,
        clients: AwsClients,
        request: FetchRequest,
        clock: Clock | None = None,
        progress: Progress = no_progress,
        nonce: int | None = None,
    ) -> None:
        self.clients = clients
        self.request = request
        self.waits: Waits = request.waits
        self.clock = clock or Clock()
        self.progress = progress
        self.nonce = nonce if nonce is not None else secrets.randbelow(MAX_NONCE - 1) + 1
        self.send_calls = 0

    # -- one command on many nodes -------------------------------------------------

    def run(
        self, script: str, ids: list[str], *, s3: bool = False, timeout: float | None = None
    ) -> dict[str, Invocation]:
        """Send ``script`` to ``ids`` (≤ 50 per call) and wait for every result."""
        limit = self.waits.timeout if timeout is None else timeout
        pending: dict[str, str] = {}
        done: dict[str, Invocation] = {}
        for chunk in batches(ids, BATCH):
            try:
                command_id = self._send(script, chunk, s3, limit)
            except Exception as exc:
                if not is_aws_error(exc):
                    raise
                reason = Failure.ACCESS_DENIED if is_denied(exc) else Failure.FAILED
                why = describe(exc, "send_command")
                for iid in chunk:
                    done[iid] = Invocation("", error=NodeError(iid, reason, why))
                continue
            pending.update(dict.fromkeys(chunk, command_id))
        done.update(self._poll(pending, limit))
        return done

    def _send(self, script: str, ids: list[str], s3: bool, timeout: float) -> str:
        kwargs: dict[str, Any] = {
            "InstanceIds": ids,
            "DocumentName": self.request.document,
            "Comment": "kpsim fetch: read-only iptables capture",
            "TimeoutSeconds": max(30, int(timeout)),
            "MaxConcurrency": str(BATCH),
            "MaxErrors": "100%",  # one failing node must not stop the others
        }
        if self.request.document == DOCUMENT:
            kwargs["Parameters"] = {"commands": [script], "executionTimeout": [str(int(timeout))]}
        # else: a custom document carries its own fixed script and takes no parameters
        if s3 and self.request.s3_bucket:
            kwargs["OutputS3BucketName"] = self.request.s3_bucket
            if self.request.s3_prefix:
                kwargs["OutputS3KeyPrefix"] = self.request.s3_prefix
        self.send_calls += 1
        response = self.clients.ssm.send_command(**kwargs)
        for iid in ids:
            self.progress(ProgressEvent(iid, "wait"))
        return str(response["Command"]["CommandId"])

    def _poll(self, pending: dict[str, str], limit: float) -> dict[str, Invocation]:
        """Own loop (not the waiter): InvocationDoesNotExist is normal for a while."""
        started = self.clock.monotonic()
        deadline = started + limit
        interval = self.waits.poll_interval
        done: dict[str, Invocation] = {}
        while pending:
            for iid, outcome in self._poll_round(pending, started):
                if outcome is not None:
                    done[iid] = outcome
                    del pending[iid]
            if not pending:
                break
            if self.clock.monotonic() >= deadline:
                for iid, command_id in pending.items():
                    msg = f"TimedOut: no result within {limit:g}s (command {command_id})"
                    done[iid] = Invocation(command_id, error=NodeError(iid, Failure.TIMED_OUT, msg))
                break
            self.clock.sleep(interval)
            interval = min(interval * 1.5, self.waits.poll_max)
        return done

    def _poll_round(
        self, pending: dict[str, str], started: float
    ) -> list[tuple[str, Invocation | None]]:
        items = sorted(pending.items())

        def one(item: tuple[str, str]) -> tuple[str, Invocation | None]:
            return item[0], self._poll_one(item[1], item[0], started)

        workers = min(self.request.concurrency, len(items))
        if workers <= 1:
            return [one(i) for i in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, items))

    def _poll_one(self, command_id: str, iid: str, started: float) -> Invocation | None:
        try:
            inv = self.clients.ssm.get_command_invocation(CommandId=command_id, InstanceId=iid)
        except Exception as exc:
            if not is_aws_error(exc):
                raise
            if error_code(exc) in _THROTTLED:
                return None
            if error_code(exc) in _NOT_YET:
                if self.clock.monotonic() - started < self.waits.invocation_grace:
                    return None
                msg = f"SSM never registered the invocation (command {command_id})"
                return Invocation(command_id, error=NodeError(iid, Failure.UNDELIVERABLE, msg))
            reason = Failure.ACCESS_DENIED if is_denied(exc) else Failure.FAILED
            err = NodeError(iid, reason, describe(exc, "get_command_invocation"))
            return Invocation(command_id, error=err)
        if inv.get("Status") not in _TERMINAL:
            return None
        return Invocation(command_id, str(inv.get("StandardOutputContent", "")), _judge(iid, inv))

    # -- the capture ---------------------------------------------------------------

    def capture(self, ids: list[str]) -> dict[str, Payload | NodeError]:
        """Run the capture everywhere; return each node's verified payload or error."""
        fmt = self.request.fmt
        spec = ScriptSpec(self.request.tables, fmt.save, fmt.listing, self.nonce)
        for iid in ids:
            self.progress(ProgressEvent(iid, "send"))
        invocations = self.run(capture_script(spec), ids, s3=True)
        results: dict[str, Payload | NodeError] = {}
        cut: dict[str, tuple[Header, str]] = {}
        for iid in ids:
            inv = invocations[iid]
            if inv.error is not None:
                results[iid] = inv.error
                continue
            try:
                frame = read_frame(inv.stdout)
            except FrameError as exc:
                results[iid] = _frame_error(iid, exc, inv.stdout)
                continue
            if frame.payload is not None:
                results[iid] = Payload(frame.payload, "inline")
            else:
                cut[iid] = (frame.header, inv.command_id)
        spooled = [iid for iid, (h, _) in cut.items() if h.spool]
        try:
            results.update(self._complete(cut))
        finally:
            notes = self._cleanup(spooled)
        for iid, note in notes.items():
            res = results.get(iid)
            if isinstance(res, Payload):
                results[iid] = Payload(res.data, res.route, (*res.notes, note))
        return results

    def _complete(self, cut: dict[str, tuple[Header, str]]) -> dict[str, Payload | NodeError]:
        """Fetch the whole payload of every cut node: S3 first if asked, else chunks."""
        results: dict[str, Payload | NodeError] = {}
        notes: dict[str, list[str]] = {iid: [] for iid in cut}
        need_chunks: dict[str, Header] = {}
        for iid, (header, command_id) in cut.items():
            if self.request.s3_bucket:
                got = self._from_s3(iid, command_id, header)
                if isinstance(got, (Payload, NodeError)):
                    results[iid] = got
                    continue
                notes[iid].append(got)
            if self.request.document != DOCUMENT:
                msg = (
                    "output was cut at 24,000 characters; with a custom --document kpsim "
                    "cannot read the spool back (that needs AWS-RunShellScript): add --s3-bucket"
                )
                results[iid] = NodeError(iid, Failure.INCOMPLETE, "; ".join([*notes[iid], msg]))
            elif not header.spool:
                msg = "output was cut at 24,000 characters and no spool was kept on the node"
                results[iid] = NodeError(iid, Failure.INCOMPLETE, "; ".join([*notes[iid], msg]))
            else:
                need_chunks[iid] = header
        for iid, got in self._from_chunks(need_chunks).items():
            if isinstance(got, Payload):
                got = Payload(got.data, got.route, tuple(notes[iid]))
            results[iid] = got
        return results

    def _from_s3(self, iid: str, command_id: str, header: Header) -> Payload | NodeError | str:
        """The full stdout from S3, or a note (str) saying why not, for the chunk fallback."""
        bucket = str(self.request.s3_bucket)
        if self.clients.s3 is None:
            return "no S3 client was given"
        parts = (self.request.s3_prefix, command_id, iid, PLUGIN_DIR, "stdout")
        key = "/".join(p for p in parts if p)
        url = f"s3://{bucket}/{key}"
        self.progress(ProgressEvent(iid, "s3", url))
        deadline = self.clock.monotonic() + self.waits.s3_wait
        while True:
            try:
                obj = self.clients.s3.get_object(Bucket=bucket, Key=key)
                data = obj["Body"].read(header.size + 65_536)
                break
            except Exception as exc:
                if not is_aws_error(exc):
                    raise
                if is_denied(exc):
                    return (
                        f"S3 copy {url} unreadable: AccessDenied (your identity lacks "
                        "s3:GetObject, or the object is missing and it lacks s3:ListBucket)"
                    )
                if error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                    return f"S3 copy {url} unreadable: {describe(exc, 'get_object')}"
            if self.clock.monotonic() >= deadline:
                return (
                    f"S3 copy {url} did not appear within {self.waits.s3_wait:g}s: the node's "
                    f"instance role probably lacks s3:PutObject on arn:aws:s3:::{bucket}/*"
                )
            self.clock.sleep(min(0.5, self.waits.s3_wait / 10))
        try:
            frame = read_frame(data)
        except FrameError as exc:
            return _frame_error(iid, exc, data)
        if frame.payload is None:
            return NodeError(iid, Failure.INCOMPLETE, f"S3 copy {url} is incomplete")
        return Payload(frame.payload, "s3")

    def _from_chunks(self, headers: dict[str, Header]) -> dict[str, Payload | NodeError]:
        """Read each spool back in base64 chunks: round k asks every node with > k chunks."""
        parts: dict[str, list[bytes]] = {iid: [] for iid in headers}
        out: dict[str, Payload | NodeError] = {}
        rounds = max((h.chunks for h in headers.values()), default=0)
        for k in range(rounds):
            ids = [iid for iid in parts if iid not in out and headers[iid].chunks > k]
            for iid in ids:
                self.progress(ProgressEvent(iid, "chunk", f"{k + 1}/{headers[iid].chunks}"))
            for iid, inv in self.run(chunk_script(self.nonce, k), ids).items():
                if inv.error is not None:
                    out[iid] = inv.error
                    continue
                try:
                    parts[iid].append(decode_chunk(inv.stdout, k, headers[iid]))
                except FrameError as exc:
                    out[iid] = NodeError(iid, Failure.INCOMPLETE, str(exc))
        for iid, header in headers.items():
            if iid in out:
                continue
            try:
                out[iid] = Payload(join_chunks(parts[iid], header), "chunks")
            except ChecksumError as exc:
                out[iid] = NodeError(iid, Failure.CHECKSUM, f"{exc}: nothing written")
        return out

    def _cleanup(self, ids: list[str]) -> dict[str, str]:
        """Remove the spools; a failure is a note, never a failed node. (A custom document's
        script manages its own temporary folder: kpsim sends nothing else through it.)"""
        if not ids or self.request.document != DOCUMENT:
            return {}
        notes: dict[str, str] = {}
        limit = self.waits.cleanup_timeout
        for iid, inv in self.run(cleanup_script(self.nonce), ids, timeout=limit).items():
            if inv.error is not None:
                where = f"${{TMPDIR:-/tmp}}/kpsim-{self.nonce}"
                notes[iid] = f"could not remove the spool {where} on the node: {inv.error.message}"
        return notes


def _judge(iid: str, inv: dict[str, Any]) -> NodeError | None:
    """None for Success; else a NodeError naming SSM's verdict and the node's stderr."""
    status = str(inv.get("Status"))
    details = str(inv.get("StatusDetails", ""))
    if status == "Success":
        return None
    stdout = str(inv.get("StandardOutputContent", ""))
    stderr = str(inv.get("StandardErrorContent", "")).strip()
    said = marker(stdout)
    if said == ("unsupported", "bottlerocket"):
        return NodeError(iid, Failure.BOTTLEROCKET, BOTTLEROCKET_HELP)
    table: dict[str, tuple[Failure, str]] = {
        "Undeliverable": (Failure.UNDELIVERABLE, "Undeliverable: the SSM agent could not be "
                          "reached (instance stopped or terminated, or the agent is not running)"),
        "DeliveryTimedOut": (Failure.TIMED_OUT, "TimedOut: the command was never delivered "
                             "(agent offline?)"),
        "ExecutionTimedOut": (Failure.TIMED_OUT, "TimedOut: the script ran past --timeout"),
        "AccessDenied": (Failure.ACCESS_DENIED, "AccessDenied: SSM refused to run the "
                         "document on this node (ssm:SendCommand condition or SCP)"),
        "InvalidPlatform": (Failure.FAILED, "the node's platform cannot run AWS-RunShellScript"),
    }  # fmt: skip
    if details in table:
        reason, message = table[details]
        return NodeError(iid, reason, message)
    if status == "TimedOut":
        return NodeError(iid, Failure.TIMED_OUT, "TimedOut: the script ran past --timeout")
    code = inv.get("ResponseCode", "?")
    tail = stderr[-600:] if stderr else (said[1] if said else "no stderr")
    return NodeError(iid, Failure.FAILED, f"{status} (exit {code}): {tail}")


def _frame_error(iid: str, exc: FrameError, stdout: str | bytes) -> NodeError:
    said = marker(stdout)
    if said == ("unsupported", "bottlerocket"):
        return NodeError(iid, Failure.BOTTLEROCKET, BOTTLEROCKET_HELP)
    if isinstance(exc, ChecksumError):
        return NodeError(iid, Failure.CHECKSUM, f"{exc}: the output was altered; nothing written")
    return NodeError(iid, Failure.BAD_OUTPUT, str(exc))
