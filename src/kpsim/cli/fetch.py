"""``kpsim fetch``: options → FetchRequest → api.fetch_ssm / fetch_local → summary → exit.

The only fetch module that prints or picks an exit code. Listed in cli.LAZY_COMMANDS:
imported (with boto3) only when ``kpsim fetch`` runs.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from kpsim import api, fetch
from kpsim.errors import ExitCode, KpsimError, UsageError
from kpsim.fetch import validate
from kpsim.fetch.model import FetchReport, ProgressEvent, Waits

_STAGES = {
    "send": "sending", "wait": "running", "s3": "reading S3 copy", "chunk": "reading chunk",
    "write": "writing", "done": "done", "failed": "failed",
}  # fmt: skip


@click.command("fetch")
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="ID",
    help="Instance id (i-… / mi-…); with --via kubectl, a Kubernetes node name.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fetch running instances with this EC2 tag (repeat to AND).",
)
@click.option("--cluster", help="Fetch the EKS cluster's running nodes (by their EKS tags).")
@click.option("--region", help="AWS region (else AWS_REGION, AWS_DEFAULT_REGION, the profile's).")
@click.option("--profile", help="AWS profile from ~/.aws/config.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="fixtures/iptables",
    show_default=True,
    help="Root of fixture sets.",
)
@click.option(
    "--tables",
    default="nat,filter,mangle",
    show_default=True,
    help="Comma list from raw,mangle,filter,nat,security.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in fetch.CaptureFormat]),
    default="save",
    show_default=True,
    help="save: iptables-save.txt; list: iptables-<table>.txt (-L -n -v -x); both.",
)
@click.option("--s3-bucket", help="Have SSM copy full output to this bucket (big dumps).")
@click.option("--s3-prefix", default="", help="Key prefix inside --s3-bucket.")
@click.option(
    "--document",
    default="AWS-RunShellScript",
    show_default=True,
    help="SSM document to run the fixed script with (a narrow custom one: docs/fetch.md).",
)
@click.option(
    "--timeout",
    type=int,
    default=300,
    show_default=True,
    help="Seconds to wait for each command round.",
)
@click.option(
    "--concurrency", type=int, default=8, show_default=True, help="Parallel status polls."
)
@click.option("--local", is_flag=True, help="Run the capture on this machine (needs root).")
@click.option("--netns", metavar="NAME", help="Run the capture inside this network namespace.")
@click.option(
    "--via",
    type=click.Choice(["ssm", "kubectl"]),
    default="ssm",
    show_default=True,
    help="kubectl: `kubectl debug node/NAME --profile=sysadmin` instead of SSM.",
)
@click.option(
    "--image",
    default=fetch.DEFAULT_IMAGE,
    show_default=True,
    help="Debug container image for --via kubectl.",
)
def fetch_command(
    nodes: tuple[str, ...], tags: tuple[str, ...], cluster: str | None, region: str | None,
    profile: str | None, out: str, tables: str, fmt: str, s3_bucket: str | None,
    s3_prefix: str, document: str, timeout: int, concurrency: int, local: bool,
    netns: str | None, via: str, image: str,
) -> None:  # fmt: skip
    """Pull nodes' iptables rules (SSM Run Command by default) into verified fixtures."""
    try:
        report = _run(nodes, tags, cluster, region, profile, out, tables, fmt, s3_bucket,
                      s3_prefix, document, timeout, concurrency, local, netns, via,
                      image)  # fmt: skip
    except KpsimError as exc:
        click.echo(f"kpsim: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    _summary(report)
    sys.exit(int(ExitCode.FAILURE if report.failed else ExitCode.OK))


def _run(
    nodes: tuple[str, ...], tags: tuple[str, ...], cluster: str | None, region: str | None,
    profile: str | None, out: str, tables: str, fmt: str, s3_bucket: str | None,
    s3_prefix: str, document: str, timeout: int, concurrency: int, local: bool,
    netns: str | None, via: str, image: str,
) -> FetchReport:  # fmt: skip
    """Validate every option before any call, then pick the route."""
    modes = [m for m, on in (("--local", local), ("--netns", bool(netns)),
                             ("--via kubectl", via == "kubectl")) if on]  # fmt: skip
    if len(modes) > 1:
        raise UsageError(f"choose one of {', '.join(modes)}")
    base = fetch.FetchRequest(
        cluster=validate.cluster(cluster) if cluster else None,
        out=Path(out),
        tables=validate.tables(tables),
        fmt=fetch.CaptureFormat(fmt),
        s3_bucket=validate.bucket(s3_bucket) if s3_bucket else None,
        s3_prefix=validate.prefix(s3_prefix) if s3_prefix else "",
        document=validate.document(document),
        concurrency=validate.bounded_int("--concurrency", concurrency, 1, 64),
        waits=Waits(timeout=validate.bounded_int("--timeout", timeout, 5, 7200)),
    )
    if s3_prefix and not s3_bucket:
        raise UsageError("--s3-prefix needs --s3-bucket")
    if modes:
        if tags or (cluster and via != "kubectl") or s3_bucket or region or profile:
            raise UsageError(f"{modes[0]} takes no --tag/--cluster/--s3-*/--region/--profile")
        return _run_local(base, nodes, local, netns, image)
    ids = tuple(validate.instance_id(n) for n in nodes)
    pairs = tuple(validate.tag(t) for t in tags)
    if not (ids or pairs or cluster):
        raise UsageError("say which nodes: --node ID, --tag KEY=VALUE or --cluster NAME")
    request = dataclasses.replace(base, instance_ids=ids, tags=pairs)
    clients = fetch.make_clients(
        validate.region(region) if region else None, validate.profile(profile) if profile else None
    )
    with _progress() as progress:
        return api.fetch_ssm(request, clients, progress)


def _run_local(
    base: fetch.FetchRequest, nodes: tuple[str, ...], local: bool, netns: str | None, image: str
) -> FetchReport:
    if local or netns:
        if nodes:
            raise UsageError("--node is for SSM or --via kubectl, not --local/--netns")
        target = fetch.LocalTarget("netns", validate.netns_name(netns)) if netns else (
            fetch.LocalTarget("local"))  # fmt: skip
        with _progress() as progress:
            return api.fetch_local(base, [target], progress)
    if not nodes:
        raise UsageError("--via kubectl needs --node NODE-NAME")
    targets = [
        fetch.LocalTarget("kubectl", validate.k8s_node(n), validate.image(image)) for n in nodes
    ]
    with _progress() as progress:
        return api.fetch_local(base, targets, progress)


@contextmanager
def _progress() -> Iterator[Callable[[ProgressEvent], None]]:
    """A rich progress line per node on a TTY; silent otherwise."""
    if not sys.stderr.isatty():
        yield lambda event: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    tasks: dict[str, object] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  console=Console(stderr=True), transient=True) as bar:  # fmt: skip

        def update(event: ProgressEvent) -> None:
            if not event.instance_id:
                return
            text = f"{event.instance_id}: {_STAGES.get(event.stage, event.stage)} {event.detail}"
            task = tasks.get(event.instance_id)
            if task is None:
                tasks[event.instance_id] = bar.add_task(text, total=None)
            else:
                bar.update(task, description=text)  # type: ignore[arg-type]

        yield update


def _summary(report: FetchReport) -> None:
    ok = [r for r in report.results if r.ok]
    for r in ok:
        where = ", ".join(str(p) for p in r.files)
        click.echo(f"ok      {r.instance_id}: {where} ({r.payload_bytes} bytes via {r.route})")
    for r in report.results:
        for note in r.notes:
            click.echo(f"note    {r.instance_id}: {note}", err=True)
    for r in report.failed:
        assert r.error is not None
        click.echo(f"FAILED  {r.instance_id}: [{r.error.reason.value}] {r.error.message}", err=True)
    click.echo(f"{len(ok)} of {len(report.results)} node(s) fetched, {len(report.failed)} failed")
