"""Issue #17, the CLI's side: no crash, no hang, no leftovers (docs/errors.md).

Every expected failure is one line ``kpsim: …`` and exit 2 (usage, input) or 1; a bug is
one line naming its type and a traceback file, exit 70 (``--debug``: the traceback);
Ctrl-C is one line, exit 130. ``-``, ``/dev/stdin``, FIFOs and ``<(…)`` are captures
like files; fixture folders are walked without following symlinked folders.

Most cases run through click's CliRunner; those only a real process shows (a pipe on
fd 0, a terminal, process substitution, a signal, a permission the kernel refuses, a
walk that would never end) run ``python -m kpsim``, each under a timeout.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from _paths import REPO
from kpsim import api
from kpsim.cli.main import main
from kpsim.errors import ExitCode
from kpsim.inputs import fixtures

SEED = REPO / "fixtures/iptables/eks-nodeport-workshop"
FIXTURE = SEED / "ip-10-11-3-14/iptables-save.txt"
CAPTURE = FIXTURE.read_text()
INTERNAL = re.compile(
    r"kpsim: internal error \((\w+)\), please report it; traceback written to (\S+)\n"
)


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)
    monkeypatch.delenv("KPSIM_DEBUG", raising=False)


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def kpsim(
    *args: str, stdin: str | int | None = None, timeout: float = 30, pre: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``python -m kpsim ARGS`` in the checkout (``pre``: a command to run it under)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KPSIM_FIXTURES", "KPSIM_DEBUG")}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.run(
        [*pre, sys.executable, "-m", "kpsim", *args],
        input=stdin if isinstance(stdin, str) else None,
        stdin=stdin if isinstance(stdin, int) else None,
        capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
    )  # fmt: skip


def outcomes(doc: dict[str, object]) -> list[tuple[str, str]]:
    nodes = doc["nodes"]
    assert isinstance(nodes, list)
    return [(o["destination"], o["probability_exact"]) for n in nodes for o in n["outcomes"]]


# -- options: every hole a usage error, exit 2, before anything is read ---------------------

SIM = ("simulate", str(FIXTURE), "--port", "30080")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((*SIM, "--seed", "-1"), "--seed -1: a seed is a whole number from 0 to 2**63-1"),
        ((*SIM, "--seed", str(2**63)),
         f"--seed {2**63}: a seed is a whole number from 0 to 2**63-1"),
        ((*SIM, "--rate", "nan"), "--rate nan: connections per second, a number > 0"),
        ((*SIM, "--rate", "inf"), "--rate inf: connections per second, a number > 0"),
        ((*SIM, "--rate", "0"), "--rate 0.0: connections per second, a number > 0"),
        ((*SIM, "--rate", "-1"), "--rate -1.0: connections per second, a number > 0"),
        ((*SIM, "-n", "0"), "-n 0: simulate at least one connection"),
        ((*SIM, "-n", "-5"), "-n -5: simulate at least one connection"),
        ((*SIM, "--clients", "0"), "--clients 0: at least one client"),
        ((*SIM, "--clients", "-3"), "--clients -3: at least one client"),
        ((*SIM, "--plot", "/no/such/dir/x.png"),
         "--plot /no/such/dir/x.png: no folder /no/such/dir"),
        ((*SIM, "--plot", "chart.jpg"), "--plot chart.jpg: the file must end in .png or .svg"),
        ((*SIM, "--entry", "garbage"),
         "--entry 'garbage': expected 'uniform' or NODE=WEIGHT,… (bad part 'garbage')"),
        ((*SIM, "--entry", "a=1e400"),
         "--entry 'a=1e400': expected 'uniform' or NODE=WEIGHT,… (bad part 'a=1e400')"),
        ((*SIM, "--entry", "a=-1"),
         "--entry 'a=-1': expected 'uniform' or NODE=WEIGHT,… (bad part 'a=-1')"),
        ((*SIM, "--node-ip", "notanip"), "--node-ip: 'notanip' is not an IP address"),
        (("simulate", str(FIXTURE), "--port", "-1"), "--port -1: not a port (1-65535)"),
        (("simulate", str(FIXTURE), "--port", "65536"), "--port 65536: not a port (1-65535)"),
        (("trace", str(FIXTURE), "--port", "0"), "--port 0: not a port (1-65535)"),
        (("trace", str(FIXTURE), "--port", "-80"), "--port -80: not a port (1-65535)"),
        (("trace", str(FIXTURE), "--port", "30080", "--node-ip", "notanip"),
         "--node-ip: 'notanip' is not an IP address"),
        (("trace", str(FIXTURE), "--port", "30080", "--source", "1.2.3.4:70000"),
         "--source 1.2.3.4:70000: bad port '70000'"),
        (("graph", str(FIXTURE), "--port", "65536"), "--port 65536: not a port (1-65535)"),
        (("graph", str(FIXTURE), "--port", "30080", "--node-ip", "notanip"),
         "--node-ip: 'notanip' is not an IP address"),
    ],
)  # fmt: skip
def test_bad_option_is_one_usage_line(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert (result.exit_code, result.stderr) == (ExitCode.BAD_INPUT, f"kpsim: {message}\n")


def test_plot_that_cannot_be_written_names_the_path(tmp_path: Path) -> None:
    """Written after the run: a full disk (/dev/full) is a clean error too."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    chart = tmp_path / "chart.png"
    chart.symlink_to("/dev/full")
    result = run(*SIM, "-n", "50", "--seed", "1", "--plot", str(chart))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == f"kpsim: --plot {chart}: cannot write: No space left on device\n"


# -- the boundary: bugs, --debug, Ctrl-C, every command ---------------------------------------


def _boom(*args: object, **kwargs: object) -> None:
    raise ValueError("boom")


BUGS = {
    "show": ("kpsim.api.show", ("show", str(FIXTURE))),
    "trace": ("kpsim.api.trace", ("trace", str(FIXTURE), "--port", "30080")),
    "simulate": ("kpsim.api.simulate", (*SIM, "-n", "10")),
    "graph": ("kpsim.api.graph", ("graph", str(FIXTURE))),
    "verify": ("kpsim.verify.run.require_kernel", ("verify", str(FIXTURE), "--port", "30080")),
    # fetch has no handles_errors of its own: only the group's boundary catches this
    "fetch": ("kpsim.api.fetch_local", ("fetch", "--local", "--out", "{tmp}")),
}


@pytest.fixture
def traceback_files() -> Iterator[list[Path]]:
    written: list[Path] = []
    yield written
    for path in written:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("command", sorted(BUGS))
def test_a_bug_is_one_line_and_a_traceback_file(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    traceback_files: list[Path],
) -> None:
    target, args = BUGS[command]
    monkeypatch.setattr(target, _boom)
    result = run(*(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == ExitCode.INTERNAL == 70, result.output
    found = INTERNAL.fullmatch(result.stderr)
    assert found is not None, result.stderr
    assert found[1] == "ValueError"
    path = Path(found[2])
    traceback_files.append(path)
    text = path.read_text()
    assert "Traceback (most recent call last)" in text and "ValueError: boom" in text
    assert "_boom" in text  # the frame that raised


def test_debug_shows_the_bug_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "show", _boom)
    result = run("--debug", "show", str(FIXTURE))
    assert isinstance(result.exception, ValueError) and str(result.exception) == "boom"
    assert "internal error" not in result.stderr
    monkeypatch.setenv("KPSIM_DEBUG", "1")
    assert isinstance(run("show", str(FIXTURE)).exception, ValueError)


def test_ctrl_c_is_one_line_and_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "show", interrupted)
    result = run("show", str(FIXTURE))
    assert (result.exit_code, result.stderr) == (130, "kpsim: interrupted\n")


def test_a_bug_in_a_real_process(traceback_files: list[Path]) -> None:
    """Through the console entry (fast_exit): 70 and the file; --debug: the traceback."""
    code = (
        "import sys\nfrom kpsim import api\n"
        "def show(*a):\n    raise ZeroDivisionError('x')\n"
        "api.show = show\nsys.argv = ['kpsim', *sys.argv[1:]]\n"
        "from kpsim.cli.main import run\nrun()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("KPSIM_DEBUG", None)
    argv = [sys.executable, "-c", code]
    done = subprocess.run([*argv, "show", str(FIXTURE)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=30)  # fmt: skip
    found = INTERNAL.fullmatch(done.stderr)
    assert done.returncode == 70 and found is not None, done.stderr
    traceback_files.append(Path(found[2]))
    assert found[1] == "ZeroDivisionError" and "ZeroDivisionError: x" in Path(found[2]).read_text()
    debug = subprocess.run([*argv, "--debug", "show", str(FIXTURE)], capture_output=True,
                           text=True, env=env, cwd=REPO, timeout=30)  # fmt: skip
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().endswith("ZeroDivisionError: x")


# -- inputs that cannot be read ---------------------------------------------------------------


def test_unreadable_inputs_are_one_line(tmp_path: Path) -> None:
    """Real OSErrors, root or not: a socket (ENXIO), /proc/self/mem (EIO), a name too
    long, a symlink loop as the path given."""
    sock = tmp_path / "capture.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    long = "x" * 5000
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    cases = {
        str(sock): "No such device or address",
        "/proc/self/mem": "Input/output error",
        long: "File name too long",
        str(tmp_path / "a"): "Too many levels of symbolic links",
    }
    try:
        for path, why in cases.items():
            result = run("show", path)
            assert result.exit_code == ExitCode.BAD_INPUT, (path, result.output)
            assert result.stderr == f"kpsim: {path}: cannot read: {why}\n"
    finally:
        server.close()


def test_permission_denied_is_cannot_read(tmp_path: Path) -> None:
    """chmod 000 on a capture and on a node folder. Root reads through modes
    (CAP_DAC_OVERRIDE), so as root kpsim runs under setpriv without the two capabilities
    that let it: the kernel itself refuses the open and the folder listing."""
    pre: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: chmod 000 cannot stop the reads")
        pre = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
    capture = tmp_path / "locked.txt"
    capture.write_text(CAPTURE)
    folders = tmp_path / "set"
    for node in ("n1", "n2"):
        (folders / node).mkdir(parents=True)
        (folders / node / "iptables-save.txt").write_text(CAPTURE)
    capture.chmod(0)
    (folders / "n2").chmod(0)
    try:
        file = kpsim("show", str(capture), pre=pre)
        walk = kpsim("show", str(folders), pre=pre)
        inside = kpsim("show", str(folders / "n2" / "iptables-save.txt"), pre=pre)
    finally:
        (folders / "n2").chmod(0o755)
    assert (file.returncode, file.stderr) == (
        2,
        f"kpsim: {capture}: cannot read: Permission denied\n",
    )
    n2 = folders / "n2"
    assert (walk.returncode, walk.stderr) == (2, f"kpsim: {n2}: cannot read: Permission denied\n")
    want = f"kpsim: {n2 / 'iptables-save.txt'}: cannot read: Permission denied\n"
    assert (inside.returncode, inside.stderr) == (2, want)


# -- stdin, pipes, FIFOs, process substitution ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("show", "-"),
        ("trace", "-", "--port", "30080"),
        ("simulate", "-", "--port", "30080", "-n", "20", "--seed", "3"),
        ("graph", "-", "--port", "30080"),
    ],
)
def test_dash_reads_stdin_in_every_command(args: tuple[str, ...]) -> None:
    result = run(*args, stdin=CAPTURE)
    assert result.exit_code == 0, result.output
    if args[0] == "graph":
        assert " (<stdin>)" in result.stdout  # the graph's title: node (path)
    else:
        assert result.stdout.startswith("fixture set: <stdin> (paths given)\n")


def test_stdin_is_named_in_messages_and_read_once() -> None:
    bad = run("show", "-", "--strict", stdin="garbage\n")
    assert bad.exit_code == ExitCode.BAD_INPUT
    assert bad.stderr.startswith("kpsim: <stdin>:1:1: ")
    twice = run("show", "-", "-", stdin=CAPTURE)
    assert (twice.exit_code, twice.stderr) == (
        2,
        "kpsim: -: standard input given twice (it can be read only once)\n",
    )
    doc = json.loads(run("trace", "-", "--port", "30080", "-o", "json", stdin=CAPTURE).stdout)
    want = json.loads(run("trace", str(FIXTURE), "--port", "30080", "-o", "json").stdout)
    assert doc["fixture_set"] == "<stdin> (paths given)"
    assert outcomes(doc) == outcomes(want) and len(outcomes(doc)) == 3


def test_a_real_pipe_on_stdin() -> None:
    """`iptables-save | kpsim trace - --port 30080`, and `kpsim show /dev/stdin < pipe`."""
    want = json.loads(run("trace", str(FIXTURE), "--port", "30080", "-o", "json").stdout)
    done = kpsim("trace", "-", "--port", "30080", "-o", "json", stdin=CAPTURE)
    assert done.returncode == 0, done.stderr
    assert outcomes(json.loads(done.stdout)) == outcomes(want)
    named = kpsim("show", "/dev/stdin", stdin=CAPTURE)
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith("fixture set: /dev/stdin (paths given)\n")
    both = kpsim("show", "/dev/stdin", "-", stdin=CAPTURE)  # the same pipe twice
    want_err = "kpsim: -: standard input given twice (it can be read only once)\n"
    assert (both.returncode, both.stderr) == (2, want_err)


def test_an_endless_stream_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/zero would be read until memory ran out: a stream has a cap (1 GiB; 1 MiB
    here, fed 2 MiB so that a missing cap fails rather than hangs)."""
    monkeypatch.setattr(fixtures, "MAX_STREAM", 1 << 20)
    result = run("show", "-", stdin="x" * (2 << 20))
    assert (result.exit_code, result.stderr) == (
        2,
        "kpsim: <stdin>: more than 1 MiB: not a capture\n",
    )


def test_a_terminal_on_stdin_is_refused_not_waited_on() -> None:
    leader, follower = pty.openpty()
    try:
        done = kpsim("show", "-", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr == (
        "kpsim: <stdin>: a terminal, not a capture (pipe one in: iptables-save | kpsim … -)\n"
    )


def test_process_substitution() -> None:
    """`kpsim show <(iptables-save)`: a pipe as /dev/fd/N."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    code = f'exec "$0" -m kpsim show -o json <(cat {FIXTURE})'
    done = subprocess.run(["bash", "-c", code, sys.executable], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert re.fullmatch(r"/dev/fd/\d+", doc["fixture_set"])
    assert [i["format"] for i in doc["inputs"]] == ["save"]


def test_a_fifo_is_read_once(tmp_path: Path) -> None:
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("w") as out:  # waits for kpsim to open it
            out.write(CAPTURE)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    done = kpsim("trace", str(fifo), "--port", "30080", "-o", "json")
    writer.join(timeout=5)
    assert done.returncode == 0, done.stderr
    assert len(outcomes(json.loads(done.stdout))) == 3


def _open_writer(fifo: Path, proc: subprocess.Popen[str], seconds: float) -> int:
    """The FIFO's write end, once ``proc`` has opened it to read (ENXIO until then)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or proc.poll() is not None:
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"kpsim never opened {fifo}") from exc
            time.sleep(0.02)


def _wait_in_read(proc: subprocess.Popen[str], seconds: float) -> None:
    """Until ``proc`` sleeps in read(2) on the pipe. A SIGINT then interrupts the call;
    one that lands between two reads is seen only when the next read returns (CPython
    checks signals between bytecodes and on EINTR), which would make this test flaky."""
    wchan = Path(f"/proc/{proc.pid}/wchan")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "pipe_read" in wchan.read_text():
                return
        except OSError:
            break
        time.sleep(0.01)
    time.sleep(0.3)  # no wchan to read: give it time to get there


def test_ctrl_c_while_a_fifo_waits_is_130(tmp_path: Path) -> None:
    """A writer that never finishes: Ctrl-C ends it with one line, no traceback."""
    fifo = tmp_path / "stuck.fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpsim", "show", str(fifo)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    try:
        writer = _open_writer(fifo, proc, 20)  # kpsim has it open and waits for the rest
        try:
            _wait_in_read(proc, 10)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            os.close(writer)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (130, "kpsim: interrupted\n")


# -- folder walks ------------------------------------------------------------------------------


def _node_set(root: Path) -> Path:
    for node in ("n1", "n2"):
        (root / "set" / node).mkdir(parents=True)
        (root / "set" / node / "iptables-save.txt").write_text(CAPTURE)
    return root / "set"


def test_a_symlink_loop_in_fixtures_ends(tmp_path: Path) -> None:
    """Two links back to the root beside the set: followed, the walk branches at every
    level and never ends (it did: minutes). Not followed: the set, at once."""
    root = tmp_path / "fixtures"
    _node_set(root)
    (root / "loop").symlink_to(".")
    (root / "up").symlink_to(root)
    (root / "set" / "n1" / "back").symlink_to("../..")
    done = kpsim("show", str(root), "-o", "json", timeout=20)
    assert done.returncode == 0, done.stderr
    paths = [i["path"] for i in json.loads(done.stdout)["inputs"]]
    assert paths == [str(root / "set" / n / "iptables-save.txt") for n in ("n1", "n2")]
    default = kpsim("show", "--fixtures", str(root), "-o", "json", timeout=20)
    assert default.returncode == 0 and json.loads(default.stdout)["inputs"][0]["path"] == paths[0]


def test_a_deep_folder_is_walked_once(tmp_path: Path) -> None:
    """A set 20 single folders down: each level was walked twice (2**20 walks, minutes)."""
    deep = tmp_path.joinpath(*(f"c{i}" for i in range(20)))
    _node_set(deep)
    done = kpsim("show", str(tmp_path), "-o", "json", timeout=20)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["inputs"]) == 2


def test_symlinks_do_not_lead_out_of_the_tree(tmp_path: Path) -> None:
    """A symlinked file inside the tree is read; one to a file outside is not, and a
    symlinked folder is not walked (outside or inside)."""
    outside = tmp_path / "outside"
    (outside / "n9").mkdir(parents=True)
    (outside / "n9" / "iptables-save.txt").write_text(CAPTURE)
    (outside / "secret").write_text("root:x:0:0\n")
    folder = _node_set(tmp_path / "fixtures")
    (folder / "n2" / "extra.txt").symlink_to("../n1/iptables-save.txt")
    (folder / "n2" / "secret").symlink_to(outside / "secret")
    (folder / "n9").symlink_to(outside / "n9")
    (folder / "n1-again").symlink_to("n1")
    result = run("show", str(folder), "-o", "json")
    assert result.exit_code == 0, result.output
    paths = [i["path"] for i in json.loads(result.stdout)["inputs"]]
    assert paths == [
        str(folder / "n1" / "iptables-save.txt"),
        str(folder / "n2" / "extra.txt"),
        str(folder / "n2" / "iptables-save.txt"),
    ]
