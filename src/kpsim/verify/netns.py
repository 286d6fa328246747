"""A small, careful harness for running iptables against the real kernel.

Everything happens inside throw-away network namespaces named ``kpsim-<pid>-<rand>``;
the root namespace is never modified.  Every created namespace is deleted on every
exit path (context manager, atexit, SIGINT/SIGTERM/SIGHUP), and every subprocess call
is bounded by a timeout. What a SIGKILLed process left, ``cleanup_stale`` removes: only names
``kpsim-<pid>-<8 hex>`` whose ``<pid>`` no longer runs.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "ALLOWED_NET",
    "PREFIX",
    "Namespace",
    "NetnsError",
    "add_address",
    "available",
    "cleanup_created",
    "cleanup_stale",
    "create",
    "delete",
    "link_up",
    "list_nat",
    "list_table",
    "load_rules",
    "netns_session",
    "new_name",
    "restore_test",
    "run",
    "save",
    "veth",
]

PREFIX = "kpsim-"
ALLOWED_NET = ipaddress.IPv4Network("198.18.0.0/15")
"""RFC 2544 benchmarking range: the only addresses the harness will configure."""

_NAME_RE = re.compile(r"kpsim-(\d{1,7})-[0-9a-f]{8}")  # exactly what new_name makes
DEFAULT_TIMEOUT = 30.0
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_created: set[str] = set()
_lock = threading.RLock()  # re-entrant: a signal handler may clean up while it is held
_handlers_installed = False
_signals_handled: set[int] = set()


class NetnsError(RuntimeError):
    """A namespace operation failed; the message carries the command's stderr."""


def available() -> bool:
    """True when we are root and `ip`, `iptables`, `iptables-save/restore` exist."""
    if os.geteuid() != 0:
        return False
    tools = ("ip", "iptables", "iptables-save", "iptables-restore")
    return all(shutil.which(t) for t in tools)


def new_name() -> str:
    """A unique namespace name tied to this process, so stale ones are recognisable."""
    return f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def _exec(
    argv: Sequence[str], input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run argv (never via a shell) with a hard timeout."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise NetnsError(
            f"command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}"
        )
    return proc


def _install_handlers() -> None:
    """Register cleanup: atexit once, and per signal (SIGINT, SIGTERM, SIGHUP) a handler
    that deletes, then chains to the prior one. A signal that is ignored (nohup) or whose
    handler unwinds instead (marked ``kpsim_unwinds``, see verify.run) is left alone."""
    global _handlers_installed
    if not _handlers_installed:
        _handlers_installed = True
        atexit.register(cleanup_created)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in set(TERMINATING) - _signals_handled:
        previous = signal.getsignal(sig)
        if previous == signal.SIG_IGN or getattr(previous, "kpsim_unwinds", False):
            continue

        def handler(signum: int, frame: FrameType | None, _prev: Any = previous) -> None:
            cleanup_created()
            if callable(_prev):
                _prev(signum, frame)
            elif _prev in (signal.SIG_DFL, None):
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)
        _signals_handled.add(sig)


def cleanup_created() -> list[str]:
    """Delete every namespace this process created and has not yet deleted; returns those
    that would not go."""
    with _lock:
        names = sorted(_created)
    for name in names:
        with suppress(NetnsError):
            delete(name)
    return sorted(_created)


_cleanup_created = cleanup_created  # its former name


def _etc_dir(name: str) -> Path:
    return NETNS_ETC / name


def _write_resolver(name: str, hosts: Mapping[str, str]) -> None:
    """Namespace-local nsswitch/hosts so `iptables -L` name lookups are fast and fixed."""
    d = _etc_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "nsswitch.conf").write_text(
        "hosts: files\nnetworks: files\nprotocols: files\nservices: files\n"
    )
    lines = ["127.0.0.1\tlocalhost"] + [f"{ip}\t{host}" for ip, host in hosts.items()]
    (d / "hosts").write_text("\n".join(lines) + "\n")
    (d / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def _remove_resolver(name: str) -> None:
    d = _etc_dir(name)
    if d.is_dir():
        shutil.rmtree(d, ignore_errors=True)
    with suppress(OSError):
        NETNS_ETC.rmdir()  # only succeeds when nothing else lives there


def create(name: str | None = None, hosts: Mapping[str, str] | None = None) -> str:
    """Create an empty namespace (optionally with a fixed hosts table) and track it."""
    ns = name or new_name()
    if not ns.startswith(PREFIX):
        raise NetnsError(f"namespace names must start with {PREFIX!r}: {ns!r}")
    _install_handlers()
    with _lock:
        _created.add(ns)
    try:
        _exec(["ip", "netns", "add", ns], timeout=10)
        if hosts is not None:
            _write_resolver(ns, hosts)
    except BaseException:
        delete(ns)
        raise
    return ns


def delete(name: str) -> None:
    """Delete a kpsim namespace and its /etc/netns files; missing is not an error."""
    if not name.startswith(PREFIX):
        raise NetnsError(f"refusing to delete non-kpsim namespace {name!r}")
    _remove_resolver(name)
    proc = _exec(["ip", "netns", "del", name], timeout=10, check=False)
    if proc.returncode != 0 and name in _list_names():
        raise NetnsError(f"could not delete namespace {name}: {proc.stderr.strip()}")
    with _lock:
        _created.discard(name)


def _list_names() -> list[str]:
    out = _exec(["ip", "netns", "list"], timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, from /proc); None: unknown."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
        boot = re.search(r"^btime (\d+)$", Path("/proc/stat").read_text(), re.MULTILINE)
        return int(boot[1]) + ticks / os.sysconf("SC_CLK_TCK") if boot else None
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(name: str) -> bool:
    """Whether the process encoded in `kpsim-<pid>-<hex>` still runs (or it isn't ours).
    A pid running a process that started after the namespace was made was reused: dead."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return True  # not a harness name: never touch it
    pid = int(m.group(1))
    if pid == os.getpid():
        return name in _created
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started, made = _started(pid), None
    with suppress(OSError):
        made = (NETNS_RUN / name).stat().st_mtime  # when `ip netns add` made it
    return started is None or made is None or started <= made + 2  # btime has 1 s steps


def cleanup_stale() -> list[str]:
    """Remove the namespaces (and /etc/netns folders) that kpsim processes which are gone
    left behind (SIGKILL, a crash, ``--keep``): only names ``kpsim-<pid>-<8 hex>`` whose
    ``<pid>`` no longer runs. Returns the names removed; raises NetnsError naming those it
    could not remove, after trying every one."""
    names = _list_names()
    removed, failed = [], []
    for name in names:
        if not _owner_alive(name):
            try:
                delete(name)
                removed.append(name)
            except NetnsError as exc:
                failed.append(str(exc))
    leftovers = sorted(NETNS_ETC.iterdir()) if NETNS_ETC.is_dir() else []
    for d in leftovers:
        if d.name not in names and not _owner_alive(d.name):
            _remove_resolver(d.name)
    if failed:
        done = f" (removed {', '.join(removed)})" if removed else ""
        raise NetnsError("; ".join(failed) + done)
    return removed


def run(
    ns: str, argv: Sequence[str], input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run argv inside namespace `ns` via `ip netns exec`."""
    if not ns.startswith(PREFIX):
        raise NetnsError(f"refusing to run in non-kpsim namespace {ns!r}")
    return _exec(["ip", "netns", "exec", ns, *argv], input=input, timeout=timeout, check=check)


def load_rules(ns: str, text: str) -> None:
    """Load iptables-restore input (flushing the tables it names)."""
    proc = run(ns, ["iptables-restore"], input=text, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"iptables-restore failed in {ns}:\n{proc.stderr.strip()}")


def restore_test(ns: str, text: str) -> None:
    """Parse-check restore input with `iptables-restore --test` (nothing is committed)."""
    proc = run(ns, ["iptables-restore", "--test"], input=text, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"iptables-restore --test failed:\n{proc.stderr.strip()}")


def save(ns: str, tables: Sequence[str] | None = None, counters: bool = False) -> str:
    """`iptables-save` output for the given tables (all loaded tables when None)."""
    flags = ["-c"] if counters else []
    if not tables:
        return run(ns, ["iptables-save", *flags]).stdout
    return "".join(run(ns, ["iptables-save", *flags, "-t", t]).stdout for t in tables)


def list_table(
    ns: str, table: str = "nat", numeric: bool = True, verbose: bool = True,
    line_numbers: bool = True, extra: Sequence[str] = (),
) -> str:  # fmt: skip
    """Generic `iptables -t TABLE -L` with the usual flags."""
    argv = ["iptables", "-t", table, "-L"]
    argv += ["-n"] if numeric else []
    argv += ["-v"] if verbose else []
    argv += ["--line-numbers"] if line_numbers else []
    return run(ns, [*argv, *extra]).stdout


def list_nat(ns: str, numeric: bool = True, verbose: bool = True, line_numbers: bool = True) -> str:
    """`iptables -t nat -L` listing."""
    return list_table(ns, "nat", numeric=numeric, verbose=verbose, line_numbers=line_numbers)


def _check_iface(name: str) -> None:
    if not name or len(name) > 15 or "/" in name or name.startswith("-"):
        raise NetnsError(f"bad interface name {name!r}")


def veth(ns_a: str, ns_b: str, name_a: str = "kpa0", name_b: str = "kpb0") -> None:
    """Create a veth pair with one end in each namespace, never touching the root one."""
    for n in (name_a, name_b):
        _check_iface(n)
    for ns in (ns_a, ns_b):
        if not ns.startswith(PREFIX):
            raise NetnsError(f"refusing non-kpsim namespace {ns!r}")
    _exec(
        ["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
         "netns", ns_b],
        timeout=10,
    )  # fmt: skip


def add_address(ns: str, dev: str, cidr: str) -> None:
    """Assign an address inside `ns`; only 198.18.0.0/15 is allowed."""
    iface = ipaddress.ip_interface(cidr)
    if not isinstance(iface, ipaddress.IPv4Interface) or not iface.network.subnet_of(ALLOWED_NET):
        raise NetnsError(f"refusing address {cidr}: outside {ALLOWED_NET}")
    _check_iface(dev)
    if not ns.startswith(PREFIX):
        raise NetnsError(f"refusing non-kpsim namespace {ns!r}")
    _exec(["ip", "-n", ns, "addr", "add", str(iface), "dev", dev], timeout=10)


def link_up(ns: str, dev: str) -> None:
    """Bring an interface up inside `ns`."""
    _check_iface(dev)
    if not ns.startswith(PREFIX):
        raise NetnsError(f"refusing non-kpsim namespace {ns!r}")
    _exec(["ip", "-n", ns, "link", "set", dev, "up"], timeout=10)


class Namespace:
    """Context manager owning one namespace; methods wrap the module functions."""

    def __init__(self, name: str | None = None, hosts: Mapping[str, str] | None = None) -> None:
        self.name = name or new_name()
        self._hosts = hosts
        self._active = False

    def __enter__(self) -> Namespace:
        create(self.name, self._hosts)
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the namespace (idempotent)."""
        if self._active:
            self._active = False
            delete(self.name)

    def run(
        self, argv: Sequence[str], input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run argv inside this namespace."""
        return run(self.name, argv, input=input, timeout=timeout, check=check)

    def load_rules(self, text: str) -> None:
        """iptables-restore `text`."""
        load_rules(self.name, text)

    def restore_test(self, text: str) -> None:
        """iptables-restore --test `text`."""
        restore_test(self.name, text)

    def save(self, tables: Sequence[str] | None = None, counters: bool = False) -> str:
        """iptables-save."""
        return save(self.name, tables, counters)

    def list_nat(
        self, numeric: bool = True, verbose: bool = True, line_numbers: bool = True
    ) -> str:
        """iptables -t nat -L."""
        return list_nat(self.name, numeric, verbose, line_numbers)


@contextmanager
def netns_session(hosts: Mapping[str, str] | None = None) -> Iterator[Namespace]:
    """`with netns_session() as ns:` — a fresh namespace, always deleted afterwards."""
    ns = Namespace(hosts=hosts)
    try:
        yield ns.__enter__()
    finally:
        ns.close()
