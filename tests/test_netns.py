"""Tests for the real-kernel namespace harness (kpsim.verify.netns)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpsim.verify import netns

ROOT = Path(__file__).resolve().parents[1]

kernel = pytest.mark.skipif(
    not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
)


def ns_names() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_names_are_unique_and_tagged() -> None:
    a, b = netns.new_name(), netns.new_name()
    assert a != b
    assert re.fullmatch(rf"kpsim-{os.getpid()}-[0-9a-f]{{8}}", a)


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "198.20.0.1/24", "198.17.255.1/24", "0.0.0.0/0"])
def test_add_address_refuses_outside_benchmark_range(cidr: str) -> None:
    with pytest.raises(netns.NetnsError, match=r"outside 198\.18\.0\.0/15"):
        netns.add_address("kpsim-0-deadbeef", "kpa0", cidr)


def test_refuses_foreign_namespaces() -> None:
    with pytest.raises(netns.NetnsError):
        netns.run("default", ["true"])
    with pytest.raises(netns.NetnsError):
        netns.delete("not-ours")


def test_available_is_bool() -> None:
    assert isinstance(netns.available(), bool)


@kernel
@pytest.mark.kernel
def test_session_deletes_namespace_even_on_error() -> None:
    name = ""
    with pytest.raises(RuntimeError, match="boom"), netns.netns_session() as ns:
        name = ns.name
        assert name in ns_names()
        raise RuntimeError("boom")
    assert name and name not in ns_names()


@kernel
@pytest.mark.kernel
def test_load_save_list_and_errors() -> None:
    rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:KPSIM-T - [0:0]\n-A PREROUTING -j KPSIM-T\nCOMMIT\n"
    with netns.netns_session(hosts={}) as ns:
        ns.restore_test(rules)
        assert "KPSIM-T" not in ns.save()  # --test commits nothing
        ns.load_rules(rules)
        assert "-A PREROUTING -j KPSIM-T" in ns.save(tables=["nat"])
        listing = ns.list_nat()
        assert listing.startswith("Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)")
        assert "num   pkts bytes target" in listing
        with pytest.raises(netns.NetnsError, match="iptables-restore failed"):
            ns.load_rules("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n")
        assert Path("/etc/netns", ns.name, "hosts").is_file()
    assert not Path("/etc/netns", ns.name).exists()


@kernel
@pytest.mark.kernel
def test_veth_lives_only_inside_namespaces() -> None:
    with netns.netns_session() as a, netns.netns_session() as b:
        netns.veth(a.name, b.name, "kpa0", "kpb0")
        netns.add_address(a.name, "kpa0", "198.18.0.1/30")
        netns.add_address(b.name, "kpb0", "198.18.0.2/30")
        netns.link_up(a.name, "kpa0")
        netns.link_up(b.name, "kpb0")
        assert "198.18.0.1/30" in a.run(["ip", "-4", "addr", "show", "kpa0"]).stdout
        assert "kpb0" in b.run(["ip", "link", "show", "kpb0"]).stdout
        for dev in ("kpa0", "kpb0"):
            root = subprocess.run(
                ["ip", "link", "show", dev], capture_output=True, text=True, timeout=10, check=False
            )
            assert root.returncode != 0, f"{dev} leaked into the root namespace"
    assert a.name not in ns_names() and b.name not in ns_names()


@kernel
@pytest.mark.kernel
def test_cleanup_stale_removes_dead_owner_only() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    stale = f"kpsim-{dead.pid}-0badc0de"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        with netns.netns_session() as live:
            removed = netns.cleanup_stale()
            assert stale in removed
            assert live.name not in removed and live.name in ns_names()
        assert stale not in ns_names()
    finally:
        subprocess.run(["ip", "netns", "del", stale], timeout=10, check=False)


@kernel
@pytest.mark.kernel
def test_sigterm_cleans_up() -> None:
    code = (
        "import sys, time\n"
        "from kpsim.verify import netns\n"
        "name = netns.create()\n"
        "print(name, flush=True)\n"
        "time.sleep(30)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name in ns_names()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while name in ns_names() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert name not in ns_names()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
