"""The console entry (`python -m kpsim`, the `kpsim` script) leaves with os._exit once the
command is done (cli_common.fast_exit): its output, exit codes and exit handlers must be
exactly those of an ordinary exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from _paths import REPO
from kpsim.cli.main import main
from kpsim.inputs import synth

FIXTURE = REPO / "fixtures/iptables/eks-nodeport-workshop/ip-10-11-3-14/iptables-save.txt"


def kpsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpsim", *args], capture_output=True, text=True)


def test_output_is_complete_and_exit_code_zero() -> None:
    done = kpsim("show", str(FIXTURE), "-o", "json")
    expected = CliRunner().invoke(main, ["show", str(FIXTURE), "-o", "json"]).output
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected
    assert done.stderr == ""


def test_error_exit_codes_survive() -> None:
    missing = kpsim("show", "/nonexistent/kpsim-capture.txt")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr and "Traceback" not in missing.stderr
    usage = kpsim("trace", "--port", "0", str(FIXTURE))
    assert usage.returncode == 2 and "--port 0" in usage.stderr
    unknown = kpsim("no-such-command")
    assert unknown.returncode == 2


def test_exit_handlers_run(tmp_path: Path) -> None:
    """Network-namespace cleanup is an exit handler: a fast exit must still run them."""
    marker = tmp_path / "ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "sys.argv = ['kpsim', '--help']\n"
        "from kpsim.cli.main import run\n"
        "run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "Usage" in done.stdout
    assert marker.read_text() == "yes"


def test_reader_gone_is_not_an_error(tmp_path: Path) -> None:
    """`kpsim show big | head -c 10`: exit 0 and no traceback once the reader has left."""
    cluster = synth.synth_large(400, 3, seed=1)
    dump = tmp_path / "dump.save"
    dump.write_text(synth.render_restore(cluster, cluster.nodes[0]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpsim", "show", str(dump), "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert head.startswith(b"{") and "Traceback" not in err


def test_fixture_set_named_whole_from_the_root_folder() -> None:
    """Run from ``/`` (a fresh install's samples, a container), the fixture set's path keeps
    its leading slash: relative to ``/`` it would name nothing a user can paste back."""
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "300"}
    fixtures = REPO / "fixtures/iptables"
    done = subprocess.run(
        [sys.executable, "-m", "kpsim", "trace", "--port", "30080", "--fixtures", str(fixtures)],
        capture_output=True, text=True, cwd="/", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"fixture set: {fixtures}/eks-nodeport-workshop"), first
