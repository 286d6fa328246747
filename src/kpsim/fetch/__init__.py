"""``kpsim fetch``: pull a node's iptables rules and save them as a verified fixture.

    fetch_ssm:   targets ─ SSM checks ─ capture (inline | S3 | chunks) ─ store
    fetch_local: script here / in a netns / via kubectl debug ─ store

Nothing here prints: stages report through ``progress``; the CLI renders the report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kpsim.errors import FetchError
from kpsim.fetch.aws import AwsClients, describe, is_aws_error, make_clients
from kpsim.fetch.capture import NodeCapture, fixture_files, node_capture, short_name
from kpsim.fetch.local import DEFAULT_IMAGE, LocalTarget, Runner, run_script, subprocess_runner
from kpsim.fetch.model import (
    CaptureFormat,
    Clock,
    Failure,
    FetchReport,
    FetchRequest,
    NodeError,
    NodeResult,
    Progress,
    ProgressEvent,
    Target,
    Waits,
    no_progress,
)
from kpsim.fetch.payload import FrameError, read_frame, split_sections
from kpsim.fetch.script import ScriptSpec, capture_script
from kpsim.fetch.ssm import Payload, SsmSession
from kpsim.fetch.store import write_node
from kpsim.fetch.targets import check_managed, resolve_targets

SSM_SOURCE = "kpsim fetch via SSM"

__all__ = [
    "DEFAULT_IMAGE",
    "AwsClients",
    "CaptureFormat",
    "Clock",
    "Failure",
    "FetchReport",
    "FetchRequest",
    "LocalTarget",
    "NodeError",
    "NodeResult",
    "ProgressEvent",
    "ScriptSpec",
    "Target",
    "Waits",
    "capture_script",
    "fetch_local",
    "fetch_ssm",
    "make_clients",
]


def fetch_ssm(
    request: FetchRequest,
    clients: AwsClients,
    *,
    clock: Clock | None = None,
    progress: Progress = no_progress,
    nonce: int | None = None,
) -> FetchReport:
    """Fetch every requested node over SSM; one node's failure never stops the others.
    An AWS error that stops the whole run is a FetchError with one sentence, never a
    botocore traceback."""
    try:
        return _fetch_ssm(request, clients, clock or Clock(), progress, nonce)
    except Exception as exc:
        if is_aws_error(exc):
            raise FetchError(describe(exc, "the fetch")) from exc
        raise


def _fetch_ssm(
    request: FetchRequest, clients: AwsClients, clock: Clock, progress: Progress, nonce: int | None
) -> FetchReport:
    progress(ProgressEvent("", "resolve"))
    targets = resolve_targets(clients.ec2, request)
    reachable, errors = check_managed(clients.ssm, targets)
    session = SsmSession(clients, request, clock, progress, nonce)
    payloads = session.capture([t.instance_id for t in reachable]) if reachable else {}
    by_id = {e.instance_id: NodeResult(e.instance_id, error=e) for e in errors}
    used: set[str] = set()
    for t in reachable:
        got = payloads[t.instance_id]
        if isinstance(got, NodeError):
            by_id[t.instance_id] = NodeResult(t.instance_id, error=got)
        else:
            by_id[t.instance_id] = _store(request, t, got, clock, used, SSM_SOURCE)
    results = tuple(by_id[t.instance_id] for t in targets)
    for r in results:
        progress(ProgressEvent(r.instance_id, "done" if r.ok else "failed"))
    return FetchReport(results, session.send_calls)


def fetch_local(
    request: FetchRequest,
    target: LocalTarget,
    *,
    clock: Clock | None = None,
    progress: Progress = no_progress,
    runner: Runner = subprocess_runner,
) -> FetchReport:
    """Capture here, in a namespace or via kubectl; same script, same verified fixture."""
    clock = clock or Clock()
    label = target.name or "local"
    progress(ProgressEvent(label, "send"))
    spec = ScriptSpec(request.tables, request.fmt.save, request.fmt.listing, None)
    out = run_script(target, capture_script(spec), request.waits.timeout, runner)
    try:
        frame = read_frame(out)
    except FrameError as exc:
        raise FetchError(f"{label}: {exc}") from exc
    if frame.payload is None:
        raise FetchError(f"{label}: output ended before the kpsim trailer")
    folder = target.name if target.mode == "netns" else None
    result = _store(request, Target(""), Payload(frame.payload, target.mode), clock, set(),
                    target.source, folder)  # fmt: skip
    progress(ProgressEvent(label, "done" if result.ok else "failed"))
    return FetchReport((dataclasses.replace(result, instance_id=label),))


def _store(
    request: FetchRequest,
    target: Target,
    payload: Payload,
    clock: Clock,
    used: set[str],
    source: str,
    folder: str | None = None,
) -> NodeResult:
    """Sections → capture → fixture files → atomic write into OUT/<set>/<node>/."""
    iid = target.instance_id
    try:
        capture: NodeCapture = node_capture(split_sections(payload.data))
    except FrameError as exc:
        return NodeResult(iid, error=NodeError(iid, Failure.BAD_OUTPUT, str(exc)))
    name = folder or short_name(capture, iid or "node")
    if name in used:  # two nodes with the same hostname: keep both
        name = f"{name}-{iid}"
    used.add(name)
    files = fixture_files(capture, target, clock.now(), source)
    try:
        paths = write_node(Path(request.out) / request.set_name / name, files)
    except FetchError as exc:
        return NodeResult(iid, error=NodeError(iid, Failure.WRITE, str(exc)))
    notes = list(payload.notes)
    if capture.legacy_save is not None:
        notes.append("iptables-legacy tables present: saved iptables-legacy-save.txt too")
    return NodeResult(iid, paths, None, payload.route, len(payload.data), tuple(notes))
