"""``kpsim show FILE --strict`` against the real ``iptables-restore --test`` (root only).

For the shipped iptables-save and the ways a capture gets cut (at a line boundary inside
a table, mid-line, its COMMIT removed, a table header followed by another table), kpsim
--strict exits 2 exactly when the real tool rejects the input, for each backend present
(iptables-nft-restore, iptables-legacy-restore); where both say "COMMIT expected", they
name the same line. The tool runs only inside a throw-away network namespace
``kpsim-strict-<pid>`` (kpsim.verify.netns), deleted when the module's tests end; nothing
is loaded (``--test``) and no address or traffic is involved.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import damage
from kpsim.cli.main import main
from kpsim.verify import netns

BACKENDS = [t for t in ("iptables-nft-restore", "iptables-legacy-restore") if shutil.which(t)]

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip"),
    pytest.mark.skipif(
        not BACKENDS, reason="needs iptables-nft-restore or iptables-legacy-restore"
    ),
]

TEXT = damage.shipped_text()
LINES = TEXT.splitlines(keepends=True)


def _line(prefix: str, after: int = 0) -> int:
    """The number of the first line after line ``after`` that starts with ``prefix``."""
    return next(n for n, line in enumerate(LINES, 1) if n > after and line.startswith(prefix))


NAT = _line("*nat")
NAT_COMMIT = _line("COMMIT", NAT)
FILTER = _line("*filter")
FILTER_COMMIT = _line("COMMIT", FILTER)
DNAT_70 = _line("-A KUBE-SEP-GT3XY65SJT4AIPQ2 -p tcp")


def _without_line(number: int) -> str:
    return "".join(line for n, line in enumerate(LINES, 1) if n != number)


def _mid(number: int, keep: int) -> str:
    """The first ``number - 1`` lines and ``keep`` characters of line ``number``."""
    return damage.cut_after_line(TEXT, number - 1) + LINES[number - 1][:keep]


#: name → its input text, made from the shipped fixture. None has a comment line of its
#: own: kpsim's --strict also stops at comments, which iptables-restore skips.
CASES: dict[str, Callable[[], str]] = {
    "clean": lambda: TEXT,
    "cut-in-mangle": lambda: damage.cut_after_line(TEXT, 10),
    "cut-in-filter-declarations": lambda: damage.cut_after_line(TEXT, FILTER + 3),
    "cut-in-filter-rules": lambda: damage.cut_after_line(TEXT, FILTER_COMMIT - 5),
    "cut-after-nat-header": lambda: damage.cut_after_line(TEXT, NAT),
    "cut-in-nat-declarations": lambda: damage.cut_after_line(TEXT, NAT + 10),
    "cut-in-nat-rules": lambda: damage.cut_after_line(TEXT, NAT + 60),
    "cut-before-last-commit": lambda: damage.cut_after_line(TEXT, NAT_COMMIT - 1),
    "cut-after-filter": lambda: damage.cut_after_line(TEXT, FILTER_COMMIT + 1),
    "cut-after-nat-banner": lambda: damage.cut_after_line(TEXT, NAT - 1),
    "cut-mid-dnat-address": lambda: _mid(DNAT_70, LINES[DNAT_70 - 1].index("10.11.11.70") + 7),
    "cut-mid-jump-target": lambda: _mid(DNAT_70 - 1, len(LINES[DNAT_70 - 2]) - 6),
    "cut-mid-commit": lambda: _mid(NAT_COMMIT, 5),
    "cut-in-last-comment": lambda: TEXT[:-10],
    "last-commit-without-newline": lambda: damage.cut_after_line(TEXT, NAT_COMMIT)[:-1],
    "last-commit-removed": lambda: _without_line(NAT_COMMIT),
    "filter-commit-removed": lambda: _without_line(FILTER_COMMIT),
    "header-then-header": lambda: (
        "*filter\n:INPUT ACCEPT [0:0]\n" + "\n".join(damage.section(TEXT, "nat")) + "\n"
    ),
    # unknown options and modules: iptables-restore refuses the line, so does --strict
    "unknown-core-option": lambda: _rule_added("-A KUBE-SERVICES --bogus 1 -j RETURN"),
    "unknown-tcp-option": lambda: _rule_added(
        "-A KUBE-SERVICES -p tcp -m tcp --dport 80 --frobnicate -j RETURN"
    ),
    "unknown-match-module": lambda: _rule_added("-A KUBE-SERVICES -m nosuchmodule -j RETURN"),
    "unmodelled-but-real-module": lambda: _rule_added(
        "-A KUBE-SERVICES -m limit --limit 5/sec -j RETURN"
    ),
}


def _rule_added(rule: str) -> str:
    """The shipped save with ``rule`` just before nat's COMMIT."""
    return "".join(
        (rule + "\n" + line) if n == NAT_COMMIT else line
        for n, line in enumerate(TEXT.splitlines(keepends=True), 1)
    )


#: Where a backend and kpsim are known to differ (each a kpsim finding or a backend quirk).
DIFFER: dict[tuple[str, str], str] = {
    ("last-commit-without-newline", "iptables-legacy-restore"): (
        "iptables-legacy-restore 1.8.9 rejects a last COMMIT with no newline after it "
        '("Bad argument `COMMIT\'"); iptables-nft-restore and kpsim --strict accept it'
    ),
}


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    """``kpsim-strict-<pid>``: created for this module, always deleted after it."""
    ns = netns.Namespace(f"kpsim-strict-{os.getpid()}")
    with ns:
        yield ns.name


@pytest.fixture(scope="module")
def usable(namespace: str) -> dict[str, str | None]:
    """Each backend, or why it cannot judge here (it must accept the clean save)."""
    out: dict[str, str | None] = {}
    for tool in BACKENDS:
        proc = restore_test(namespace, tool, TEXT)
        out[tool] = (
            None if proc.returncode == 0 else proc.stderr.strip() or "rejects the clean save"
        )
    return out


def restore_test(ns: str, tool: str, text: str) -> subprocess.CompletedProcess[str]:
    return netns.run(ns, [tool, "--test"], input=text, timeout=30, check=False)


def strict_show(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["show", str(path), "--strict"])
    return result.exit_code, result.stderr


def _case(name: str, tool: str) -> object:
    reason = DIFFER.get((name, tool))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, tool, marks=marks, id=f"{name}-{tool}")


@pytest.mark.parametrize(("name", "tool"), [_case(n, t) for n in CASES for t in BACKENDS])
def test_strict_rejects_exactly_when_iptables_restore_does(
    name: str, tool: str, namespace: str, usable: dict[str, str | None], tmp_path: Path
) -> None:
    if usable[tool] is not None:
        pytest.skip(f"{tool} cannot judge here: {usable[tool]}")
    text = CASES[name]()
    path = tmp_path / f"{name}.txt"
    path.write_text(text)
    proc = restore_test(namespace, tool, text)
    code, err = strict_show(path)
    assert code in (0, 2), err
    assert (code == 2) == (proc.returncode != 0), (proc.returncode, proc.stderr, err)
    said = re.search(r"COMMIT expected at line (\d+)", proc.stderr)
    if said and "COMMIT expected" in err:
        assert err.startswith(f"kpsim: {path}:{said[1]}:1: "), (proc.stderr, err)


def test_every_case_is_a_different_text() -> None:
    texts = {name: make() for name, make in CASES.items()}
    assert len(set(texts.values())) == len(texts)
    assert texts["clean"] == TEXT
    assert all(TEXT.startswith(t) and t != TEXT for n, t in texts.items() if n.startswith("cut"))


def test_the_namespace_is_gone_after_use() -> None:
    name = f"kpsim-strict-{os.getpid()}-probe"
    with netns.Namespace(name):
        assert name in _namespaces()
    assert name not in _namespaces()


def _namespaces() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
