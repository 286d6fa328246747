"""Sample outputs in README.md and docs/*.md are what the commands print today.

A sample is a ```console block right after a ``<!-- sample: … -->`` line; its first line is
``$ kpsim ARGS``, the rest is the output at 80 columns (run from the repository's folder).
Rewrite every sample after a reviewed change:
``KPSIM_UPDATE_DOCS=1 pytest tests/test_doc_samples.py``.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from kpsim.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SAMPLE = re.compile(r"(<!-- sample:[^\n]*-->\n```console\n\$ kpsim ([^\n]*)\n)(.*?)(```)", re.S)


def run(args: str) -> str:
    env = {"COLUMNS": "80", "KPSIM_FIXTURES": None}
    result = CliRunner().invoke(main, shlex.split(args), env=env)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def samples() -> list[tuple[Path, str, str]]:
    return [
        (path, m.group(2), m.group(3))
        for path in DOCS
        for m in SAMPLE.finditer(path.read_text(encoding="utf-8"))
    ]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def test_there_are_samples() -> None:
    found = samples()
    assert any(p.name == "README.md" for p, _, _ in found)
    assert {"show", "trace --port 30080"} <= {args for _, args, _ in found}


@pytest.mark.parametrize(
    ("path", "args", "shown"), samples(), ids=lambda x: x.name if isinstance(x, Path) else None
)
def test_sample_is_current(path: Path, args: str, shown: str) -> None:
    out = run(args)
    if os.environ.get("KPSIM_UPDATE_DOCS"):
        text = path.read_text(encoding="utf-8")
        text = SAMPLE.sub(
            lambda m: m.group(1) + run(m.group(2)) + m.group(4) if m.group(2) == args else m[0],
            text,
        )
        path.write_text(text, encoding="utf-8")
        return
    assert out == shown, f"{path.name}: `kpsim {args}` prints something else now"


EXAMPLE = re.compile(r"<!-- example -->\n```python\n(.*?)```", re.S)


@pytest.mark.parametrize(
    "code", [m.group(1) for m in EXAMPLE.finditer((REPO / "docs/api.md").read_text())]
)
def test_api_examples_run(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, "docs/api.md", "exec"), {})  # our own documentation
    assert capsys.readouterr().out.strip()
