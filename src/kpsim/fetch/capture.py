"""What one node printed, as typed fields, and the fixture files made from it.

    sections ─ node_capture ─▶ NodeCapture ─ fixture_files ─▶ (FixtureFile, …)

Texts stay exactly as the node printed them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kpsim.fetch.model import Target
from kpsim.fetch.payload import FrameError
from kpsim.formats.common import meta_line

SCHEMA = "kpsim/fixture/v1"
_VERSION_RE = re.compile(r"iptables v(\d+(?:\.\d+)*)(?: \((nf_tables|legacy)\))?")
_INET_RE = re.compile(r"\binet (\d{1,3}(?:\.\d{1,3}){3}/\d{1,2})\b")
_MODE_RE = re.compile(r"^[a-z]{1,20}$")
_SHORT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class NodeCapture:
    """The parsed sections of one capture (texts exactly as the node printed them)."""

    hostname: str
    iptables_version: str
    iptables_backend: str
    local_addresses: tuple[str, ...]
    kube_proxy_mode: str
    save_text: str | None
    listings: Mapping[str, str]
    save_stderr: str
    legacy_save: str | None
    os_id: str
    nft_ruleset: str | None = None  # kube-proxy in nftables mode: ``nft list ruleset``
    #: ``ip -j addr/route/rule`` as JSON lists (formats/iproute.py reads them); empty
    #: when the node has no ``ip`` or printed something that is not ip's JSON.
    ip: Mapping[str, list[object]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FixtureFile:
    """One file of a node folder: its name and full text (meta line included)."""

    name: str
    text: str


def node_capture(sections: Mapping[str, str]) -> NodeCapture:
    """Type the sections; refuse a capture without any rules text."""
    version = _VERSION_RE.search(sections.get("iptables-version", ""))
    addrs = sorted(set(_INET_RE.findall(sections.get("ip-addr", ""))), key=_addr_key)
    mode = sections.get("proxy-mode", "").strip()
    save = sections.get("iptables-save")
    listings = {k[5:]: v for k, v in sections.items() if k.startswith("list-")}
    stderr = sections.get("save-stderr", "")
    if save is not None and "*" not in save:
        raise FrameError(f"the node printed no iptables-save output: {stderr.strip()[:300]!r}")
    if save is None and not listings:
        raise FrameError("the capture holds neither iptables-save text nor listings")
    return NodeCapture(
        hostname=sections.get("hostname", "").strip(),
        iptables_version=version.group(1) if version else "unknown",
        iptables_backend=(version.group(2) or "legacy") if version else "unknown",
        local_addresses=tuple(addrs),
        kube_proxy_mode=mode if _MODE_RE.fullmatch(mode) else "unknown",
        save_text=save,
        listings=listings,
        save_stderr=stderr,
        legacy_save=sections.get("iptables-legacy-save"),
        os_id=sections.get("os-release-id", "").strip(),
        nft_ruleset=sections.get("nft-ruleset"),
        ip=_ip_json(sections),
    )


def _ip_json(sections: Mapping[str, str]) -> dict[str, list[object]]:
    """The ``ip -j`` sections that hold a JSON list of objects (others are left out:
    an old ``ip`` without ``-j`` prints text, and the trace then infers routes)."""
    out: dict[str, list[object]] = {}
    for name in ("addr", "route", "rule"):
        text = sections.get(f"ip-json-{name}", "").strip()
        try:
            value = json.loads(text) if text else None
        except (ValueError, RecursionError):
            continue
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            out[name] = value
    return out


def _addr_key(cidr: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.split(r"[./]", cidr))


def short_name(capture: NodeCapture, instance_id: str) -> str:
    """The node folder name: hostname's first label, else the instance id (path-safe)."""
    label = capture.hostname.split(".", 1)[0]
    return label if _SHORT_RE.fullmatch(label) else instance_id


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def capture_time(now: datetime) -> str:
    return now.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata(
    capture: NodeCapture, target: Target, body: str, now: datetime, source: str
) -> dict[str, object]:
    """The ``# kpsim:meta`` dict; ``sha256`` covers the text after the meta line."""
    meta: dict[str, object] = {
        "schema": SCHEMA,
        "node": capture.hostname,
        "instance_id": target.instance_id,
        "availability_zone": target.availability_zone,
        "private_ips": list(target.private_ips),
        "local_addresses": list(capture.local_addresses),
        "iptables_version": capture.iptables_version,
        "iptables_backend": capture.iptables_backend,
        "kube_proxy_mode": capture.kube_proxy_mode,
        "capture_time": capture_time(now),
        "sha256": sha256_text(body),
        "source": source,
    }
    if capture.ip:
        meta["ip"] = dict(capture.ip)
    return meta


def fixture_files(
    capture: NodeCapture, target: Target, now: datetime, source: str
) -> tuple[FixtureFile, ...]:
    """iptables-save.txt, iptables-<table>.txt listings, iptables-legacy-save.txt, and
    ruleset.nft when kube-proxy's nftables table is on the node."""
    bodies: list[tuple[str, str]] = []
    if capture.save_text is not None:
        bodies.append(("iptables-save.txt", capture.save_text))
    bodies += [(f"iptables-{t}.txt", text) for t, text in capture.listings.items()]
    if capture.legacy_save is not None:
        bodies.append(("iptables-legacy-save.txt", capture.legacy_save))
    if capture.nft_ruleset is not None:  # the node's primary capture (fixtures.PRIMARY_NAMES)
        bodies.append(("ruleset.nft", capture.nft_ruleset))
    return tuple(
        FixtureFile(name, meta_line(metadata(capture, target, body, now, source)) + "\n" + body)
        for name, body in bodies
    )
