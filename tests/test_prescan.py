"""The one pass made ahead in a child process (``formats.iptables.prescan``) is the pass
the lazy reader makes itself: the same items on every shipped capture and generated
dumps, the same rulesets; every way the child can fail (killed, garbled, late, another
text) falls back to the reader's own pass with the same answer; no child outlives its
use; and the console entry, which starts it, prints byte for byte what the CLI prints.
"""

from __future__ import annotations

import marshal
import mmap
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from _paths import REPO
from kpsim.cli import entry
from kpsim.cli.entry import SMALLEST, big_input
from kpsim.formats import parse_captures, read_text
from kpsim.formats.iptables import (
    lazy,
    lazy_source,
    prescan,
    prescan_child,
    prescan_messages,
    sketch,
)
from kpsim.formats.iptables.lazy_scan import (
    BLOCK,
    JUMP_TARGET,
    Lines,
    Runs,
    marks,
    repeats,
    scan,
    table_spans,
    unruled,
)
from kpsim.formats.iptables.line_shapes import columns
from kpsim.formats.iptables.prescan_child import big_chains, header
from kpsim.formats.iptables.sketch import run_texts
from kpsim.formats.iptables.write import render_save
from kpsim.inputs import synth
from kpsim.model import Ruleset
from lazy_compare import model as _model

SHIPPED = sorted(p for p in (REPO / "fixtures" / "iptables").rglob("*") if p.is_file())
FIXTURE = REPO / "fixtures/iptables/eks-nodeport-workshop/ip-10-11-3-14/iptables-save.txt"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated dump in kube-proxy's order, the same as iptables-save prints it, and
    one big enough (> ``SMALLEST``) for the console entry to prescan it."""
    folder = tmp_path_factory.mktemp("dumps")
    cluster = synth.synth_large(300, 3, seed=7)
    restore = synth.render_restore(cluster, cluster.nodes[0])
    big = synth.synth_large(1200, 3, seed=3)
    texts = {
        "restore": restore,
        "save": render_save(parse_captures(restore, "g")[0]),
        "big": synth.render_restore(big, big.nodes[0]),
    }
    for name, text in texts.items():
        (folder / f"{name}.txt").write_text(text)
    return {name: folder / f"{name}.txt" for name in texts}


@pytest.fixture(autouse=True)
def no_child_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test ends with its child, if any, reaped (its /proc entry gone); a CPU to
    spare whatever else the machine runs (``test_no_spare_cpu`` aside)."""
    monkeypatch.setattr(prescan, "_spare_cpus", lambda: 1)
    pids: list[int] = []
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    os.fork = fork  # type: ignore[assignment]
    try:
        yield
    finally:
        os.fork = real
        prescan.stop()
    assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []


def _own_scan(text: str) -> tuple[int, list[str | None], list[int], list[int]]:
    order, runs = scan(text, text.index("\n"))
    return order, runs.names, runs.offsets, sorted(runs.blocks)


def _child_scan(path: Path) -> tuple[str, tuple[int, Runs] | None]:
    """The text the loader reads after ``start`` (the one read ahead) and the child's
    items for it."""
    assert prescan.start(str(path))
    text = read_text(path)
    assert text is prescan.early_text(path)
    return text, prescan.taken(text)


def _items(found: tuple[int, Runs]) -> tuple[int, list[str | None], list[int], list[int]]:
    order, runs = found
    return order, runs.names, runs.offsets, sorted(runs.blocks)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: the reader scans itself")
class TestSameItems:
    @pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
    def test_shipped(self, path: Path) -> None:
        text, found = _child_scan(path)
        assert found is not None
        assert _items(found) == _own_scan(text)

    @pytest.mark.parametrize("name", ["restore", "save", "big"])
    def test_generated(self, dumps: dict[str, Path], name: str) -> None:
        text, found = _child_scan(dumps[name])
        assert found is not None
        items = _items(found)
        assert items == _own_scan(text)
        assert len(items[1]) > 1000 and any(items[1]) and items[3]  # runs and a block

    @pytest.mark.parametrize("name", ["restore", "save"])
    def test_same_rulesets(
        self, dumps: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = dumps[name]
        alone = parse_captures(read_text(path), str(path), lazy=True)
        assert prescan.start(str(path))
        with monkeypatch.context() as patched:  # the child's items or nothing
            patched.setattr(lazy, "scan", _never)
            ahead = parse_captures(read_text(path), str(path), lazy=True)
        assert any(type(c) is lazy.LazyChain for c in ahead[0].tables["nat"].chains.values())
        assert [_model(rs) for rs in ahead] == [_model(rs) for rs in alone]

    @pytest.mark.parametrize("name", ["restore", "save", "big"])
    def test_unruled_targets(
        self, dumps: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The reader checks each table's jumps with the targets the child found that name
        no chain of the table's runs (its own findall patched to fail): exactly the
        findall in the reader's bounds less those chains; the ruleset is the one read
        alone."""
        path = dumps[name]
        alone = parse_captures(read_text(path), str(path), lazy=True)
        assert prescan.start(str(path))
        asked: list[tuple[str, int, int, list[str] | None]] = []

        def spy(text: str, lo: int, hi: int) -> list[str] | None:
            found = prescan.unruled_ahead(text, lo, hi)
            asked.append((text, lo, hi, found))
            return found

        with monkeypatch.context() as patched:
            patched.setattr(lazy, "unruled_ahead", spy)
            patched.setattr(lazy_source, "JUMP_TARGET", _NoFindall())
            ahead = parse_captures(read_text(path), str(path), lazy=True)
        assert asked
        mine = scan(asked[0][0], asked[0][0].index("\n"))[1]  # in process
        for text, lo, hi, found in asked:
            ruled = {n for n, at in zip(mine.names, mine.offsets, strict=False) if lo <= at < hi}
            assert found == sorted(set(JUMP_TARGET.findall(text, lo, hi)) - ruled)
        assert any("KUBE-MARK-MASQ" in found for *_, found in asked if found)  # rules eager
        assert [_model(rs) for rs in ahead] == [_model(rs) for rs in alone]

    def test_unruled_jump_read_whole(
        self, dumps: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A deferred jump to a chain no block declares, found by the child: the lazy
        reader gives up (the whole reader says the chain is not captured)."""
        text = dumps["restore"].read_text()
        at = text.index("\nCOMMIT", text.index("*nat"))
        path = tmp_path / "nowhere.txt"
        path.write_text(text[:at] + "\n-A KUBE-SERVICES -j KUBE-NOWHERE" + text[at:])
        assert lazy.lazy_save(path.read_text(), str(path)) is None  # read alone
        assert prescan.start(str(path))
        asked: list[list[str] | None] = []

        def spy(text: str, lo: int, hi: int) -> list[str] | None:
            asked.append(prescan.unruled_ahead(text, lo, hi))
            return asked[-1]

        with monkeypatch.context() as patched:
            patched.setattr(lazy, "unruled_ahead", spy)
            patched.setattr(lazy_source, "JUMP_TARGET", _NoFindall())
            assert lazy.lazy_save(read_text(path), str(path)) is None
        assert any(found is not None and "KUBE-NOWHERE" in found for found in asked)

    def test_unruled_of_another_text(self, dumps: dict[str, Path]) -> None:
        text, found = _child_scan(dumps["restore"])
        assert found is not None
        runs = found[1]
        lo, hi, first, end = table_spans(text, runs)[-1]
        copy = "".join(list(text))  # equal, not the same object
        assert prescan.unruled_ahead(copy, lo, hi) is None
        assert prescan.unruled_ahead(text, lo, hi - 1) is None  # other bounds
        own = unruled(text, runs, lo, hi, first, end)
        assert prescan.unruled_ahead(text, lo, hi) == own

    @pytest.mark.parametrize("name", ["restore", "save", "big"])
    def test_marks_and_repeats(self, dumps: dict[str, Path], name: str) -> None:
        """The child's line marks and chains of several runs are the text's and the
        items': given for that text and those very items only."""
        text, found = _child_scan(dumps[name])
        assert found is not None
        runs = found[1]
        lines = Lines(text)
        lines.at(len(text))
        assert prescan.marks_ahead(text) == marks(text) == lines.marks
        assert prescan.marks_ahead("".join(list(text))) is None
        several = repeats(runs.names)
        assert prescan.repeats_ahead(runs) == several
        assert prescan.repeats_ahead(Runs(list(runs.names), runs.offsets, runs.blocks)) is None
        brute = {n: [i for i, m in enumerate(runs.names) if m == n] for n in set(runs.names)}
        assert several == {n: at for n, at in brute.items() if n is not None and len(at) > 1}
        if name != "save":  # in kube-proxy's order, one run a service; iptables-save's: one
            assert len(several["KUBE-SERVICES"]) > 100

    @pytest.mark.parametrize("name", ["restore", "save"])
    def test_reader_uses_marks_and_repeats(
        self, dumps: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The reader counts no line the child counted and finds no chain's runs itself
        (its own ``repeats`` patched to fail); each chain's runs are those it finds
        alone."""
        path = dumps[name]
        alone, own = _read(read_text(path), str(path), monkeypatch)
        assert prescan.start(str(path))
        ahead, sources = _read(read_text(path), str(path), monkeypatch)
        assert sources.keys() == own.keys() and "nat" in sources
        for tname, source in sources.items():
            assert source.lines is not None and source.lines.ahead is None
            assert source.lines.marks == marks(source.text)
            with monkeypatch.context() as patched:
                patched.setattr(lazy_source, "repeats", _no_repeats)
                spans = {chain: source.spans(chain) for chain in ahead.tables[tname].chains}
            for chain, found in spans.items():
                assert found == own[tname].spans(chain), chain
        assert _model(ahead) == _model(alone)

    @pytest.mark.parametrize("name", ["restore", "save", "big"])
    def test_sketches_ahead(
        self, dumps: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The child's columns of each big chain are the ones read here off the same runs
        (``line_shapes.columns``); the reader's sketch of such a chain is made from them,
        with the same columns and rules; a chain it did not sketch is not waited for."""
        path = dumps[name]
        alone, own = _read(read_text(path), str(path), monkeypatch)
        monkeypatch.setattr(prescan_child, "BIG", 1 << 10)  # these dumps' KUBE-SERVICES too
        assert prescan.start(str(path))
        ahead, sources = _read(read_text(path), str(path), monkeypatch)
        text = sources["nat"].text
        runs = sources["nat"].runs
        assert runs is not None
        big = big_chains(text, runs, repeats(runs.names), table_spans(text, runs))
        assert "KUBE-SERVICES" in {n for *_, n, _ in big}
        read = 0
        for lo, hi, chain, _ in big:
            tname = next(t for t, s in sources.items() if s.bounds == (lo, hi))
            found = prescan.sketch_ahead(text, (lo, hi), chain)
            spans = own[tname].spans(chain)
            joined = "\n".join(run_texts(text, spans))
            assert found == columns(joined, joined.count("\n") + 1, own[tname].order)
            with monkeypatch.context() as patched:  # made from the child's columns
                patched.setattr(sketch, "columns", _no_columns)
                made = sources[tname].sketch(chain)
            other = own[tname].sketch(chain)
            assert made is not None and other is not None
            for field in ("jumps", "dsts", "protos", "dports", "modules", "stateful", "comments"):
                assert list(getattr(made, field)) == list(getattr(other, field)), field
            assert made.rule(len(made.jumps) - 1) == other.rule(len(other.jumps) - 1)
            read += 1
        assert read
        assert prescan.sketch_ahead(text, sources["nat"].bounds, "KUBE-MARK-MASQ") is None
        assert _model(ahead) == _model(alone)

    def test_later_messages_lost(
        self, dumps: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Items taken, nothing after them (the child gone): the reader counts, finds the
        targets and each chain's runs itself, with the same answers."""
        path = dumps["restore"]
        alone = lazy.lazy_save(read_text(path), str(path))
        assert prescan.start(str(path))
        text = read_text(path)
        assert prescan.taken(text) is not None
        monkeypatch.setattr(prescan, "_receive", lambda fd, seconds: None)
        monkeypatch.setattr(lazy, "taken", lambda t: prescan.taken(t) or scan(t, t.index("\n")))
        ahead = lazy.lazy_save(text, str(path))
        assert alone is not None and ahead is not None
        assert prescan.marks_ahead(text) is None and prescan.unruled_ahead(text, 0, 1) is None
        assert _model(ahead) == _model(alone)


def _no_repeats(*args: object) -> None:
    raise AssertionError("found the chains of several runs although the child had")


def _no_columns(*args: object) -> None:
    raise AssertionError("read a sketch's columns although the child had")


def _read(
    text: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Ruleset, dict[str, lazy_source.Source]]:
    """``lazy_save``'s ruleset, and its tables' deferred lines."""
    passes: list[lazy._Pass] = []
    real = lazy._Pass._finish

    def finish(self: lazy._Pass) -> Ruleset:
        passes.append(self)
        return real(self)

    with monkeypatch.context() as patched:
        patched.setattr(lazy._Pass, "_finish", finish)
        found = lazy.lazy_save(text, path)
    assert found is not None
    return found, passes[0].sources


class _NoFindall:
    def findall(self, *args: object) -> list[str]:
        raise AssertionError("found the jump targets in process although the child had")


def _never(text: str, start: int) -> tuple[int, Runs]:
    raise AssertionError("scanned in process although the child's items were there")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: the reader scans itself")
class TestFallbacks:
    """Each failure gives None from ``taken``, and the reader's own pass the same model."""

    def _same_model(self, path: Path) -> None:
        text = read_text(path)
        assert prescan.taken(text) is None
        again = parse_captures(text, str(path), lazy=True)
        alone = parse_captures(path.read_text(), str(path), lazy=True)
        assert [_model(rs) for rs in again] == [_model(rs) for rs in alone]

    def test_child_killed(self, dumps: dict[str, Path]) -> None:
        assert prescan.start(str(dumps["restore"]))
        assert prescan._child is not None
        os.kill(prescan._child.pid, signal.SIGKILL)
        self._same_model(dumps["restore"])

    def test_garbled_message(self, dumps: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        """Bytes that do not unmarshal, and a well-formed answer of the wrong shape."""
        real = marshal.dumps
        for garbled in (b"\x07not marshal", real((0, ["A"], [0], []))):
            with monkeypatch.context() as patched:  # the child's marshal only
                patched.setattr(marshal, "dumps", lambda _, g=garbled: g)
                assert prescan.start(str(dumps["restore"]))
            self._same_model(dumps["restore"])

    def test_garbled_jump_targets(self) -> None:
        """A second message without its shape gives no targets: the reader finds them."""
        shapes = ({"a": 1}, [(1, 2)], [(1, 2, ["KUBE-X", 3])], [(1, 2, "KUBE-X")],
                  [("1", 2, [])], [(1, 2, [0], [])])  # fmt: skip
        for body in (b"junk", *map(marshal.dumps, shapes)):
            assert prescan_messages.unpack_targets(body) == {}
        good = marshal.dumps([(1, 2, ["KUBE-X"])])
        assert prescan_messages.unpack_targets(good) == {(1, 2): ["KUBE-X"]}

    def test_garbled_marks_and_repeats(self) -> None:
        """Later messages without their shape give nothing: the reader makes its own."""
        text = "x" * (2 * BLOCK + 5)
        for body in (b"junk", *map(marshal.dumps, ([0, 1], [0, 1, 2, 3], [1, 1, 2], [0, 1, "2"]))):
            assert prescan_messages.unpack_marks(body, text) is None
        assert prescan_messages.unpack_marks(marshal.dumps([0, 1, 2]), text) == [0, 1, 2]
        shapes = ({"A": [1]}, ([("A", [1])], []), ({"A": [1, "2"]}, []), ({"A": (1, 2)}, []),
                  ({1: [1]}, []), ({"A": [1]}, [(1, 2)]), ({"A": [1]}, {}))  # fmt: skip
        for shape in shapes:
            assert prescan_messages.unpack_repeats(marshal.dumps(shape), text) is None
        good = marshal.dumps(({"A": [1, 5]}, [(0, 9, "A")]))
        assert prescan_messages.unpack_repeats(good, text) == ({"A": [1, 5]}, {(0, 9, "A")})
        col: list[object] = ["x"]
        bad = ([(0, 9, "A")], [(0, 9, "A", (col,) * 6)], [(0, 9, "A", (col,) * 6 + (["x", "y"],))],
               [(0, 9, "A", (col,) * 6 + (("x",),))], [("0", 9, "A", (col,) * 7)], {})  # fmt: skip
        for shape in bad:
            assert prescan_messages.unpack_sketches(marshal.dumps(shape), text) == {}
        cols = (["KUBE-X"], ["10.0.0.1/32"], ["tcp"], ["80"], ["tcp"], [False], ["a/b"])
        sketches = marshal.dumps([(0, 9, "A", cols)])
        assert prescan_messages.unpack_sketches(sketches, text) == {(0, 9, "A"): cols}

    def test_short_or_late_message(self) -> None:
        """A message shorter than its header says, none in time, or one said to be past
        the end of the map: nothing. A body in the map, or on the pipe after its header
        (no room in the map), is the message; never a byte past it is read."""
        reader, writer = os.pipe()
        shared = mmap.mmap(-1, 64)
        child = prescan._Child(os.getpid(), reader, shared, "", ())
        try:
            shared[0:5] = b"hello"
            os.write(writer, header(5, 0) + header(3, -1) + b"abc" + header(5, 60))
            assert prescan._receive(child, 0.05) == b"hello"  # in the map
            assert prescan._receive(child, 0.05) == b"abc"  # on the pipe
            assert prescan._receive(child, 0.05) is None  # past the map's end
            os.write(writer, header(100, -1) + b"x" * 10)
            assert prescan._receive(child, 0.05) is None  # late: the writer still open
            os.write(writer, header(100, -1) + b"x" * 10)
            os.close(writer)
            assert prescan._receive(child, 5.0) is None  # short: the writer gone
        finally:
            os.close(reader)
            shared.close()

    def test_no_room_in_the_map(
        self, dumps: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every message through the pipe (a map too small for any): the same answers."""
        monkeypatch.setattr(prescan, "_room", lambda text: 1)
        path = dumps["big"]
        alone, _ = _read(read_text(path), str(path), monkeypatch)
        assert prescan.start(str(path))
        ahead, sources = _read(read_text(path), str(path), monkeypatch)
        assert sources["nat"].lines.ahead is None
        with monkeypatch.context() as patched:  # the child's runs, through the pipe
            patched.setattr(lazy_source, "repeats", _no_repeats)
            assert sources["nat"].spans("KUBE-SERVICES")
        assert prescan.marks_ahead(sources["nat"].text) == marks(sources["nat"].text)
        assert _model(ahead) == _model(alone)

    def test_broken_pipe(self, dumps: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(fd: int, seconds: float) -> bytes:
            raise OSError("broken")

        monkeypatch.setattr(prescan, "_receive", broken)
        assert prescan.start(str(dumps["restore"]))
        self._same_model(dumps["restore"])

    def test_late_child(self, dumps: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(prescan, "_patience", lambda text: 0.0)
        assert prescan.start(str(dumps["restore"]))
        self._same_model(dumps["restore"])

    def test_another_text(self, dumps: dict[str, Path]) -> None:
        """An equal text that is not the object the child scans: not its items; the
        child waits for its own text (another input may come first) until ``stop``."""
        path = dumps["restore"]
        assert prescan.start(str(path))
        copy = path.read_text()
        assert copy == prescan.early_text(path) and copy is not prescan.early_text(path)
        assert prescan.taken(copy) is None
        assert prescan._child is not None
        pid = prescan._child.pid
        prescan.stop()
        assert prescan._child is None and not os.path.exists(f"/proc/{pid}")

    def test_changed_file(self, tmp_path: Path, dumps: dict[str, Path]) -> None:
        """A file changed since read ahead is read again."""
        path = tmp_path / "dump.txt"
        path.write_text(dumps["restore"].read_text())
        assert prescan.start(str(path))
        path.write_text(dumps["save"].read_text())
        text = read_text(path)
        assert text == dumps["save"].read_text()
        assert prescan.taken(text) is None

    def test_unreadable(self, tmp_path: Path) -> None:
        assert not prescan.start(str(tmp_path / "missing.txt"))
        assert not prescan.start(str(tmp_path))  # a folder: the loader says why

    def test_no_spare_cpu(self, dumps: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.undo()
        assert prescan._spare_cpus() < len(os.sched_getaffinity(0))  # this process runs
        monkeypatch.setattr(prescan, "_spare_cpus", lambda: 0)
        assert not prescan.start(str(dumps["restore"]))


def test_big_input(dumps: dict[str, Path]) -> None:
    big, small = str(dumps["big"]), str(FIXTURE)
    assert Path(big).stat().st_size >= SMALLEST > Path(small).stat().st_size
    assert big_input(["trace", big, "--port", "30000"]) == big
    assert big_input(["--debug", "show", small, big, "-o", "json"]) == big
    assert big_input(["show", small]) is None
    assert big_input(["lint", big]) is None  # reads whole: no lazy pass to save
    assert big_input(["trace", big, "-o", "dot", "--port", "1"]) is None
    assert big_input(["--help"]) is None and big_input([]) is None


def _kpsim(
    *args: str, code: str = "", entry: str = "kpsim.cli.entry"
) -> subprocess.CompletedProcess[str]:
    """``python -m kpsim ARGS`` from this tree (``entry``'s ``run``), ``code`` run first."""
    run = f"{code}\nfrom {entry} import run\nrun()"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", run, *args], capture_output=True, text=True, env=env
    )


#: Before the entry runs: a CPU to spare (whatever else runs); record the children
#: forked, and at exit (after prescan's own exit handler, registered later) write which
#: of them still have a /proc entry.
_WATCH = """
import atexit, os, sys
from kpsim.formats.iptables import prescan
prescan._spare_cpus = lambda: 1
real, forked = os.fork, []
def fork():
    pid = real()
    if pid:
        forked.append(pid)
    return pid
os.fork = fork
def report():
    alive = [p for p in forked if os.path.exists(f"/proc/{p}")]
    sys.stderr.write(f"forked={len(forked)} alive={len(alive)}\\n")
atexit.register(report)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: nothing to start")
@pytest.mark.parametrize(
    "args",
    [
        ["show", "{big}", "-o", "json"],
        ["trace", "{big}", "--port", "30000", "-o", "json"],
        ["show", "{big}", "--help"],  # the child killed unused
        ["trace", "{big}", "--port", "0"],  # a usage error
    ],
)
def test_cli_same_output(dumps: dict[str, Path], args: list[str]) -> None:
    """The console entry (prescan) prints what the CLI without it prints, exit code and
    all, and leaves no child behind."""
    words = [a.format(big=dumps["big"]) for a in args]
    done = _kpsim(*words, code=_WATCH)
    expected = _kpsim(*words, entry="kpsim.cli.main")  # no prescan
    assert (done.returncode, done.stdout) == (expected.returncode, expected.stdout)
    assert done.stderr.splitlines()[:-1] == expected.stderr.splitlines()
    assert done.stderr.splitlines()[-1] == "forked=1 alive=0"


@pytest.mark.parametrize(
    "args", [["trace", "--port", "30080", "-o", "json"], ["show", "-o", "json"]]
)
def test_cli_shipped_fixtures(args: list[str]) -> None:
    """No path: the shipped fixture set, small; no child."""
    done = _kpsim(*args, code=_WATCH)
    assert done.returncode == 0, done.stderr
    assert done.stdout == _kpsim(*args, entry="kpsim.cli.main").stdout
    assert done.stderr.splitlines()[-1] == "forked=0 alive=0"


def test_interrupted_while_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C before the CLI runs (the prescan's read, the imports): the CLI's own line
    and exit code, no traceback; with --debug the traceback."""

    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "big_input", interrupted)
    monkeypatch.setattr(sys, "argv", ["kpsim", "trace", "x"])
    with pytest.raises(SystemExit) as ended:
        entry.run()
    assert (ended.value.code, capsys.readouterr().err) == (130, "kpsim: interrupted\n")
    monkeypatch.setattr(sys, "argv", ["kpsim", "--debug", "trace", "x"])
    with pytest.raises(KeyboardInterrupt):
        entry.run()


def _nowhere(dumps: dict[str, Path], folder: Path) -> Path:
    """The big dump with a deferred jump to a chain it never declares (the whole reader
    says the chain is not captured; the lazy reader cannot vouch for it)."""
    text = dumps["big"].read_text()
    at = text.index("\nCOMMIT", text.index("*nat"))
    path = folder / "nowhere.txt"
    path.write_text(text[:at] + "\n-A KUBE-SERVICES -j KUBE-NOWHERE" + text[at:])
    return path


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: every check made at once")
class TestConfirmLater:
    """A trace's load leaves its jump check to the prescan's child and makes it after the
    walk (``api.load``'s ``confirm_later``): the same answers as every check made at
    once, the whole reader's when the check fails."""

    def _request(self) -> object:
        from kpsim.cli.main import trace_request

        return trace_request(30000, None, "tcp", None, (), None, ())

    def test_passes(self, dumps: dict[str, Path]) -> None:
        from kpsim import api
        from kpsim.render.json import trace_json

        path = str(dumps["big"])
        whole = trace_json(api.trace(api.load(path), self._request()), "x")  # type: ignore[arg-type]
        assert prescan.start(path)
        loaded = api.load(path, lazy=True, confirm_later=True)
        assert loaded.unconfirmed is not None  # left to the child
        assert api.confirmed(loaded) is loaded  # and it passes
        report = api.trace(loaded, self._request())  # type: ignore[arg-type]
        assert trace_json(report, "x") == whole

    def test_fails(self, dumps: dict[str, Path], tmp_path: Path) -> None:
        from kpsim import api
        from kpsim.render.json import trace_json

        path = str(_nowhere(dumps, tmp_path))
        whole_loaded = api.load(path)
        assert (
            whole_loaded.nodes[0].primary.capture
            != api.load(str(dumps["big"])).nodes[0].primary.capture
        )  # the whole reader notes the chain not captured
        whole = trace_json(api.trace(whole_loaded, self._request()), "x")  # type: ignore[arg-type]
        assert prescan.start(path)
        loaded = api.load(path, lazy=True, confirm_later=True)
        assert loaded.unconfirmed is not None and not loaded.unconfirmed.passed()
        assert trace_json(api.trace(loaded, self._request()), "x") == whole  # type: ignore[arg-type]
        again = api.confirmed(loaded)
        assert again is not loaded and again.unconfirmed is None
        assert again.nodes[0].primary.capture == whole_loaded.nodes[0].primary.capture
        # every other call confirms first: the whole reader's answers
        assert api.show(loaded) == api.show(whole_loaded)
        assert api.diff_nodes(loaded) == api.diff_nodes(whole_loaded)

    def test_without_a_child(self, dumps: dict[str, Path]) -> None:
        """No child finding the targets: every check made as the load reads."""
        from kpsim import api

        assert api.load(str(dumps["big"]), lazy=True, confirm_later=True).unconfirmed is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: nothing to start")
def test_cli_check_fails_later(dumps: dict[str, Path], tmp_path: Path) -> None:
    """The console entry on a capture whose jump check fails after the walk prints what
    the CLI without a prescan prints."""
    path = str(_nowhere(dumps, tmp_path))
    for output in ("json", "text"):
        args = ["trace", path, "--port", "30000", "-o", output]
        done = _kpsim(*args, code=_WATCH)
        expected = _kpsim(*args, entry="kpsim.cli.main")
        assert (done.returncode, done.stdout) == (expected.returncode, expected.stdout)
        assert "KUBE-NOWHERE" in done.stdout
        assert done.stderr.splitlines()[-1] == "forked=1 alive=0"
