"""Which nodes to fetch, and whether SSM can reach them — before any command is sent.

    --node / --tag / --cluster ─ ec2:DescribeInstances ─▶ Target…
    Target… ─ ssm:DescribeInstanceInformation ─▶ reachable Target… + NodeError…

AccessDenied here stops the whole fetch: no node could be fetched without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from kpsim.errors import FetchError
from kpsim.fetch.aws import describe, is_aws_error
from kpsim.fetch.model import Failure, FetchRequest, NodeError, Target

BATCH = 50  # SendCommand and the InstanceIds filters take at most 50 ids
MAX_PAGES = 1000

BOTTLEROCKET_HELP = (
    "Bottlerocket node: SSM commands run in its control container, which has no iptables. "
    "Enable the admin container (apiclient set host-containers.admin.enabled=true), open it "
    "with `apiclient exec admin sheltie`, and run iptables-save there; or use "
    "`kpsim fetch --via kubectl --node NODE-NAME`."
)


def batches(items: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _instances(ec2: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every instance DescribeInstances returns, following NextToken (bounded)."""
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = ec2.describe_instances(**kwargs, **({"NextToken": token} if token else {}))
        for reservation in page.get("Reservations", []):
            yield from reservation.get("Instances", [])
        token = page.get("NextToken")
        if not token:
            return
    raise FetchError("ec2:DescribeInstances kept paging; narrow --tag or --cluster")


def _target(instance: dict[str, Any]) -> Target:
    ips = [
        str(a["PrivateIpAddress"])
        for eni in instance.get("NetworkInterfaces", [])
        for a in eni.get("PrivateIpAddresses", [])
        if a.get("PrivateIpAddress")
    ]
    if not ips and instance.get("PrivateIpAddress"):
        ips = [str(instance["PrivateIpAddress"])]
    return Target(
        instance_id=str(instance["InstanceId"]),
        availability_zone=instance.get("Placement", {}).get("AvailabilityZone"),
        private_ips=tuple(dict.fromkeys(ips)),
    )


def _queries(request: FetchRequest) -> list[list[dict[str, Any]]]:
    """EC2 filter sets to union: the cluster's two EKS tag styles, each ANDed with --tag."""
    base = [{"Name": "instance-state-name", "Values": ["running"]}]
    base += [{"Name": f"tag:{k}", "Values": [v]} for k, v in request.tags]
    if request.cluster:
        name = request.cluster
        return [
            [*base, {"Name": "tag:eks:cluster-name", "Values": [name]}],
            [*base, {"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{name}"]}],
        ]
    return [base] if request.tags else []


def resolve_targets(ec2: Any, request: FetchRequest) -> list[Target]:
    """Explicit ids (in order) then tag/cluster matches, each instance once."""
    found: dict[str, Target] = {}
    try:
        ec2_ids = [i for i in request.instance_ids if i.startswith("i-")]
        for chunk in batches(ec2_ids, 200):
            flt = [{"Name": "instance-id", "Values": chunk}]
            for inst in _instances(ec2, Filters=flt):
                found[str(inst["InstanceId"])] = _target(inst)
        matched: dict[str, Target] = {}
        for filters in _queries(request):
            for inst in _instances(ec2, Filters=filters):
                matched.setdefault(str(inst["InstanceId"]), _target(inst))
    except Exception as exc:
        if is_aws_error(exc):
            raise FetchError(describe(exc, "describe_instances")) from exc
        raise
    targets = [found.get(i, Target(i)) for i in dict.fromkeys(request.instance_ids)]
    seen = {t.instance_id for t in targets}
    targets += [t for i, t in sorted(matched.items()) if i not in seen]
    if not targets:
        what = f"cluster {request.cluster!r}" if request.cluster else "the given tags"
        raise FetchError(f"no running EC2 instances matched {what}")
    return targets


def _information(ssm: Any, ids: list[str]) -> Iterator[dict[str, Any]]:
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": ids}],
            MaxResults=50,
            **({"NextToken": token} if token else {}),
        )
        yield from page.get("InstanceInformationList", [])
        token = page.get("NextToken")
        if not token:
            return
    raise FetchError("ssm:DescribeInstanceInformation kept paging")


def check_managed(ssm: Any, targets: Iterable[Target]) -> tuple[list[Target], list[NodeError]]:
    """Split targets into SSM-reachable ones and clear per-node errors."""
    targets = list(targets)
    info: dict[str, dict[str, Any]] = {}
    try:
        for chunk in batches([t.instance_id for t in targets]):
            for item in _information(ssm, chunk):
                info[str(item.get("InstanceId"))] = item
    except Exception as exc:
        if is_aws_error(exc):
            raise FetchError(describe(exc, "describe_instance_information")) from exc
        raise
    ok: list[Target] = []
    errors: list[NodeError] = []
    for t in targets:
        problem = _problem(t.instance_id, info.get(t.instance_id))
        if problem is None:
            ok.append(t)
        else:
            errors.append(problem)
    return ok, errors


def _problem(iid: str, item: dict[str, Any] | None) -> NodeError | None:
    if item is None:
        return NodeError(
            iid,
            Failure.NOT_MANAGED,
            "not managed by SSM: no agent registered (start amazon-ssm-agent, give the "
            "instance role AmazonSSMManagedInstanceCore, or add VPC endpoints for ssm, "
            "ssmmessages and ec2messages); also check --region",
        )
    platform = str(item.get("PlatformName", ""))
    if "bottlerocket" in platform.lower():
        return NodeError(iid, Failure.BOTTLEROCKET, BOTTLEROCKET_HELP)
    if item.get("PlatformType", "Linux") != "Linux":
        return NodeError(iid, Failure.FAILED, f"not a Linux node ({item.get('PlatformType')})")
    ping = str(item.get("PingStatus", "Online"))
    if ping != "Online":
        last = item.get("LastPingDateTime", "unknown")
        return NodeError(
            iid,
            Failure.OFFLINE,
            f"SSM agent is {ping} (last ping {last}): the instance may be stopped or "
            "its agent cannot reach SSM",
        )
    return None
