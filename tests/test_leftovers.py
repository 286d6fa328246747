"""Issue #17, "no leftovers": what kpsim makes on this machine or on a node, it removes —
on every exit path it can see, and on the next run for the one it cannot (SIGKILL).

    verify: a real ``python -m kpsim verify`` subprocess, SIGKILLed → its namespaces stay;
            ``verify --cleanup`` or the next run removes them (and nothing else);
            SIGINT / SIGTERM / SIGHUP → namespaces and processes gone, exit 130 / 143 / 129
    fetch:  the real capture script under bash and dash in a throw-away namespace, slowed
            by a shimmed ``iptables-save`` and interrupted → its spool is gone; the next
            capture removes stale folders of kpsim's own naming, and only those

Kernel tests: root, ``ip``, iptables; every address in 198.18.0.0/15 (none is needed
here), every wait bounded, and each test deletes what it made even when it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from kpsim.fetch.script import STALE_MINUTES, ScriptSpec, capture_script
from kpsim.verify import netns

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "fixtures/iptables/eks-nodeport-workshop"
DROP_NODE = "ip-10-11-3-14"  # 30082 (externalTrafficPolicy Local) drops here: slow on purpose
#: ~100 s of DROPs (bounded by verify's own budget): long enough to be caught mid-run.
LONG_RUN = ("--port", "30082", "--node", DROP_NODE, "-n", "200", "--connect-timeout", "0.5")
SHORT_RUN = ("--port", "30080", "--node", DROP_NODE, "-n", "20")
WAIT_S = 20.0

KERNEL = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
    ),
]


def kernel(test: Callable[..., None]) -> Callable[..., None]:
    for mark in KERNEL:
        test = mark(test)
    return test


def ns_names() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespaces_of(pid: int) -> list[str]:
    return sorted(n for n in ns_names() if n.startswith(f"kpsim-{pid}-"))


def pids_in(names: list[str]) -> set[int]:
    """Every process living in these namespaces (responders, the traffic client)."""
    pids: set[int] = set()
    for name in names:
        out = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10
        ).stdout
        pids |= {int(p) for p in out.split()}
    return pids


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


def until(check: Callable[[], bool], seconds: float = WAIT_S) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class Tracker:
    """What a test starts or makes; removed at teardown whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.names: list[str] = []  # namespaces made by hand

    def verify(self, *args: str) -> subprocess.Popen[str]:
        env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
        argv = [sys.executable, "-m", "kpsim", "verify", *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT, start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def running_verify(self) -> tuple[subprocess.Popen[str], list[str], set[int]]:
        """A long verify run, once its three namespaces exist and processes run in them."""
        proc = self.verify(str(SEED), *LONG_RUN)
        ready = until(
            lambda: len(namespaces_of(proc.pid)) == 3 and bool(pids_in(namespaces_of(proc.pid)))
        )
        assert ready, f"verify never set up: {proc.poll()} {namespaces_of(proc.pid)}"
        time.sleep(0.3)  # into the probe
        names = namespaces_of(proc.pid)
        return proc, names, pids_in(names)

    def add(self, name: str) -> str:
        self.names.append(name)
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
        return name

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
        ours = set(ns_names()) & {
            *self.names,
            *(n for p in self.procs for n in namespaces_of(p.pid)),
        }
        for pid in pids_in(sorted(ours)):  # what a failed run left running in them
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for name in ours:
            subprocess.run(["ip", "netns", "del", name], timeout=10, check=False)


@pytest.fixture
def track() -> Iterator[Tracker]:
    tracker = Tracker()
    try:
        yield tracker
    finally:
        tracker.close()


def kpsim_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "kpsim", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip


# ---------------------------------------------------------------- verify


def test_cleanup_and_port_usage_without_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """What needs no root: --port is still required for a run, --cleanup takes no run's
    options, and --cleanup without root says what is missing (exit 2)."""
    from click.testing import CliRunner

    from kpsim.cli.verify import verify_command
    from kpsim.verify import run as verification

    def verify(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(verify_command, list(args))
        return result.exit_code, result.output

    assert verify("--cleanup", "--port", "30080") == (
        2, "kpsim: --cleanup takes no PATH and no --port: it only removes leftovers\n")  # fmt: skip
    assert verify(str(SEED)) == (2, "kpsim: --port is required (or --cleanup)\n")
    monkeypatch.setattr(verification, "missing_requirements", lambda: ["root (run as root)"])
    code, out = verify("--cleanup")
    assert (code, out) == (2, "kpsim: verify replays the rules in the real kernel and needs "
                              "root (run as root)\n")  # fmt: skip


@kernel
def test_sigkill_leaves_namespaces_that_cleanup_removes_and_nothing_else(track: Tracker) -> None:
    proc, names, pids = track.running_verify()
    proc.kill()
    proc.communicate(timeout=10)
    assert namespaces_of(proc.pid) == names, "SIGKILL runs no cleanup: the namespaces stay"
    # the processes inside do not outlive kpsim (responders: parent-death signal; the
    # traffic client: notices its parent is gone)
    assert until(lambda: not any(running(p) for p in pids), 5), pids
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = track.add(f"kpsim-{sleeper.pid}-0badc0de")  # a live process's
        foreign = track.add(f"kpsim-{proc.pid}-keepme")  # not a name kpsim makes
        done = kpsim_cli("verify", "--cleanup")
        assert done.returncode == 0, done.stderr
        *each, total = done.stdout.splitlines()
        # (another kpsim verify starting on this machine meanwhile may have taken some)
        assert set(each) <= {f"removed {n}" for n in names} and each, done.stdout
        assert total == f"removed {len(each)} namespace(s) left by verify runs that are gone"
        assert not set(names) & set(ns_names())
        assert live in ns_names() and foreign in ns_names()
        again = kpsim_cli("verify", "--cleanup", "-o", "json")
        assert again.returncode == 0 and '"removed": []' in again.stdout
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


@kernel
def test_next_run_removes_what_a_killed_run_left(track: Tracker) -> None:
    proc, names, _ = track.running_verify()
    proc.kill()
    proc.communicate(timeout=10)
    assert namespaces_of(proc.pid) == names
    nxt = track.verify(str(SEED), *SHORT_RUN)
    out, err = nxt.communicate(timeout=60)
    assert nxt.returncode == 0, err
    assert namespaces_of(proc.pid) == []
    (note,) = [line for line in err.splitlines() if "of gone runs" in line]
    assert note.startswith("kpsim: note: removed ")
    assert all(n in names for n in note.partition("gone runs: ")[2].split(", ")), note
    assert namespaces_of(nxt.pid) == []
    assert "AGREE" in out


@kernel
@pytest.mark.parametrize(
    ("sig", "group", "status"),
    [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130), (signal.SIGHUP, False, 129)],
)
def test_signal_removes_the_runs_namespaces_and_exits_128_plus_signal(
    track: Tracker, sig: signal.Signals, group: bool, status: int
) -> None:
    """SIGINT as Ctrl-C sends it (to the whole process group); the others to kpsim alone."""
    proc, names, pids = track.running_verify()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert err.splitlines() == [
        f"kpsim: verify interrupted by {sig.name}; its network namespaces were removed"
    ]
    assert out == ""
    assert namespaces_of(proc.pid) == [] and not set(names) & set(ns_names())
    assert until(lambda: not any(running(p) for p in pids), 5), pids


# ---------------------------------------------------------------- fetch: the node's script

NONCE = 4242


def real(tool: str) -> str:
    found = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert found
    return found


@pytest.fixture(scope="module")
def node_ns() -> Iterator[str]:
    if not netns.available():
        pytest.skip("needs root plus ip/iptables")
    with netns.Namespace() as ns:
        ns.load_rules("*nat\n:PREROUTING ACCEPT [0:0]\n:KPSIM-T - [0:0]\nCOMMIT\n")
        yield ns.name


def run_script(
    ns: str, shell: str, script: str, tmpdir: Path, local: Path | None = None
) -> subprocess.Popen[bytes]:
    """The script as a node runs it, in ``ns``; with ``local``, that folder is mounted over
    /usr/local in a mount namespace of its own (the script's PATH starts there)."""
    wrapper = '[ -z "$1" ] || mount --bind "$1" /usr/local || exit 99; exec "$2" -c "$3"'
    argv = ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
            "sh", "-c", wrapper, "x", str(local or ""), real(shell), script]  # fmt: skip
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": str(tmpdir)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)  # fmt: skip


needs_shells = pytest.mark.skipif(
    not (shutil.which("dash") and shutil.which("bash") and shutil.which("unshare"))
    or not Path("/usr/local").is_dir(),
    reason="needs dash, bash, unshare and /usr/local",
)


@kernel
@needs_shells
@pytest.mark.parametrize("shell", ["bash", "dash"])
@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_interrupted_capture_removes_its_spool(
    node_ns: str, tmp_path: Path, shell: str, sig: signal.Signals, status: int
) -> None:
    sbin = tmp_path / "local" / "sbin"
    sbin.mkdir(parents=True)
    shim = sbin / "iptables-save"
    shim.write_text(f'#!/bin/sh\nsleep 20\nexec {real("iptables-save")} "$@"\n')
    shim.chmod(0o755)
    spooldir = tmp_path / "tmp"
    spooldir.mkdir()
    spool = spooldir / f"kpsim-{NONCE}"
    proc = run_script(node_ns, shell, capture_script(ScriptSpec(nonce=NONCE)), spooldir,
                      tmp_path / "local")  # fmt: skip
    try:
        assert until(lambda: (spool / "save").exists() or proc.poll() is not None, 10)
        assert proc.poll() is None and spool.is_dir(), proc.communicate(timeout=10)
        os.killpg(proc.pid, sig)  # as a terminal or a killed session does
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == status, err
    assert list(spooldir.iterdir()) == [], "the interrupted capture left its spool"


def age(path: Path, minutes: float) -> None:
    then = time.time() - minutes * 60
    os.utime(path, (then, then), follow_symlinks=False)


@kernel
@needs_shells
@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_capture_removes_only_its_own_stale_folders(
    node_ns: str, tmp_path: Path, shell: str
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious").write_text("keep\n")
    old = STALE_MINUTES + 5
    made = {
        "kpsim-111": (True, old),  # an interrupted fetch's spool: gone
        "kpsim.Ab3dEf9h": (True, old),  # an interrupted custom-document capture: gone
        "kpsim-222": (True, 1),  # a fetch running now: kept
        "kpsim-12x": (True, old),  # not kpsim's naming
        "kpsim-node-a": (True, old),
        "kpsim.short": (True, old),
        "other": (True, old),
        "kpsim-333": (False, old),  # a file, not a folder
    }
    for name, (folder, minutes) in made.items():
        path = tmp / name
        if folder:
            path.mkdir()
            (path / "payload.gz").write_bytes(b"x")
        else:
            path.write_text("x")
        age(path, minutes)
    (tmp / "kpsim-444").symlink_to(target)  # a link: never followed, never removed
    age(tmp / "kpsim-444", old)
    foreign = tmp / "kpsim-555"  # someone else's folder
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    age(foreign, old)
    proc = run_script(node_ns, shell, capture_script(ScriptSpec(nonce=NONCE)), tmp)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert b"==kpsim:end" in out and b"spool=0" in out  # small: no spool kept
    left = sorted(p.name for p in tmp.iterdir())
    kept = ["kpsim-12x", "kpsim-222", "kpsim-333", "kpsim-444", "kpsim-555", "kpsim-node-a",
            "kpsim.short", "other"]  # fmt: skip
    assert left == kept
    assert (target / "precious").read_text() == "keep\n"
