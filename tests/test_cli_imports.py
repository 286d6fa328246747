"""Startup: `kpsim show -o json` and `from kpsim import api` import only what they need
(no numpy, boto3, networkx, … — see cli.LAZY_COMMANDS), and the lazy commands are still
listed, with their own short help, and still run.

Each check runs a fresh interpreter (this one has imported everything already) and reads
the modules it ended with. Timing belongs in bench/, not here.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from _paths import REPO
from kpsim.cli.main import LAZY_COMMANDS, main

FIXTURE = REPO / "fixtures/iptables/eks-nodeport-workshop/ip-10-11-3-14/iptables-save.txt"

#: Third-party packages no show/help/api import may pull in.
HEAVY = ("numpy", "scipy", "boto3", "botocore", "networkx", "matplotlib")
#: kpsim modules only other commands need.
OTHER_COMMANDS = (
    "kpsim.simulate",
    "kpsim.verify",
    "kpsim.fetch",
    "kpsim.verify.replay",
    "kpsim.cli.fetch",
    "kpsim.cli.graph",
    "kpsim.cli.simulate",
    "kpsim.cli.verify",
)

# Runs `python -m kpsim ARGS` (or executes CODE) and writes the modules loaded to OUT,
# whatever the exit code. An exit handler: the console entry leaves with os._exit once
# exit handlers have run (cli_common.fast_exit), so a `finally` would never run.
_WRAPPER = """
import atexit, json, runpy, sys
out, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]

def dump():
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)

atexit.register(dump)
if mode == "-m":
    sys.argv = ["kpsim", *rest]
    runpy.run_module("kpsim", run_name="__main__", alter_sys=True)
else:
    exec(rest[0], {})
"""


def modules_after(tmp_path: Path, mode: str, *args: str) -> tuple[set[str], str]:
    """(modules loaded, stdout) of a fresh interpreter running kpsim with ``args``."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("KPSIM_FIXTURES", None)
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(out), mode, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(out.read_text())), proc.stdout


def loaded_of(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or modules, with their submodules) were loaded."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_show_json_imports_only_what_it_needs(tmp_path: Path) -> None:
    modules, out = modules_after(tmp_path, "-m", "show", str(FIXTURE), "-o", "json")
    assert json.loads(out)["inputs"], "show -o json printed no inputs"
    assert loaded_of(modules, HEAVY) == []
    assert loaded_of(modules, OTHER_COMMANDS) == []
    # the JSON path draws no tables, and the tokenizer's pyparsing reference is for tests
    assert loaded_of(modules, ("rich", "pyparsing", "kpsim.render.text")) == []


def test_help_lists_every_command(tmp_path: Path) -> None:
    _, out = modules_after(tmp_path, "-m", "--help")
    listed = {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == {
        "show", "trace", "simulate", "graph", "fetch", "verify", "lint", "diff", "counters", "why"
    }  # fmt: skip
    assert "Replay each node's rules in the real kernel" in out  # verify's own short help


def test_api_import_is_light(tmp_path: Path) -> None:
    modules, _ = modules_after(tmp_path, "-c", "from kpsim import api")
    assert loaded_of(modules, HEAVY) == []
    assert loaded_of(modules, OTHER_COMMANDS) == []
    assert loaded_of(modules, ("kpsim.kube", "kpsim.engine", "kpsim.graph", "pyparsing")) == []


def test_lazy_commands_load_once() -> None:
    ctx = click.Context(main, info_name="kpsim")
    for name, where in LAZY_COMMANDS.items():
        module, _, attr = where.partition(":")
        command = main.get_command(ctx, name)
        assert command is getattr(importlib.import_module(module), attr)
        assert command.name == name and main.get_command(ctx, name) is command
    assert main.list_commands(ctx) == [
        "counters", "diff", "fetch", "graph", "lint", "show", "simulate", "trace", "verify", "why",
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_lazy_commands_run(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"], prog_name="kpsim")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: kpsim {name} ")


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
