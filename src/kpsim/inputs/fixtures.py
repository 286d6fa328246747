"""Where a command's input comes from: files, node folders, cluster folders.

    fixtures/iptables/                       a root of fixture sets
      eks-nodeport-workshop/                 a fixture set = one cluster
        ip-10-11-28-53/                      a node folder
          iptables-save.txt                  the node's rules (primary: complete, exact)
          iptables-nat.txt                   other captures of the same state
          iptables-nat-L.txt

With no PATH: ``--fixtures DIR``, else ``$KPSIM_FIXTURES``, else ``./fixtures/iptables``,
else the samples packaged inside kpsim, so a fresh install answers at once.

``-`` reads standard input (``iptables-save | kpsim trace - --port 30080``), named
``<stdin>``; a pipe, FIFO or ``<(iptables-save)`` is read as given. Each is read once,
here, into ``NodeSource.text``: a stream cannot be read twice.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kpsim.errors import UsageError

#: The file a node folder's rules are read from when several captures sit together:
#: iptables-save is complete (all tables, policies, exact options); listings lose detail.
#: ``ruleset.nft`` first: a node in kube-proxy's nftables mode (fetch writes it only there)
#: keeps its service rules in it; its iptables-save shows only kubelet's and the CNI's.
PRIMARY_NAMES = (
    "ruleset.nft",
    "iptables-save.txt",
    "iptables-save",
    "rules.save",
    "ip6tables-save.txt",
)
CAPTURE_SUFFIXES = (".txt", ".save", ".rules", ".log", ".md", ".nft", "")
#: ``-``: standard input, named ``<stdin>`` in messages and labels.
STDIN, STDIN_NAME = "-", "<stdin>"
#: A stream longer than this is not a capture (``/dev/zero``); 10,000 services: 16 MB.
MAX_STREAM = 1 << 30
#: How deep below the folder given captures are looked for (fixture sets: root/set/node).
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class NodeSource:
    """One node's captures: ``primary`` feeds trace/simulate, all feed ``show``.

    ``text``: a stream's content (stdin, a pipe, ``<(iptables-save)``), read once here
    because it cannot be read again; ``primary`` is then only its name in messages."""

    name: str
    primary: Path
    files: tuple[Path, ...]
    text: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class FixtureSet:
    """The nodes one command looks at, and how they were chosen (shown to the user)."""

    label: str
    origin: str
    nodes: tuple[NodeSource, ...]


class _Walk:
    """One folder, walked: a folder is a node folder, a cluster folder of node folders,
    or a root of sets (module doc).

    Symlinked folders are not followed (a loop cannot recur, a link cannot lead out of
    or around the root); a symlinked file is read when it resolves inside the root.
    Each folder is listed and judged once, and at most ``MAX_DEPTH`` levels down."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.listings: dict[Path, tuple[tuple[Path, ...], tuple[Path, ...]]] = {}
        self.judged: dict[tuple[int, int], tuple[NodeSource, ...] | UsageError] = {}

    def listing(self, path: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """(capture files, subfolders) of ``path``, by name, hidden ones left out."""
        if path not in self.listings:
            try:
                with os.scandir(path) as found:
                    entries = sorted(found, key=lambda e: e.name)
            except OSError as exc:
                raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
            files, dirs = [], []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(path / entry.name)
                elif self._is_capture(entry):
                    files.append(path / entry.name)
            self.listings[path] = (tuple(files), tuple(dirs))
        return self.listings[path]

    def _is_capture(self, entry: os.DirEntry[str]) -> bool:
        if Path(entry.name).suffix not in CAPTURE_SUFFIXES or not entry.is_file():
            return False  # a FIFO or socket in a folder is not read: it could block
        if not entry.is_symlink():
            return True
        target = os.path.realpath(entry.path)
        return os.path.commonpath([self.root, target]) == self.root

    def node(self, path: Path) -> NodeSource | None:
        files = self.listing(path)[0]
        if not files:
            return None
        primary = next((f for n in PRIMARY_NAMES for f in files if f.name == n), files[0])
        return NodeSource(path.name, primary, files)

    def nodes_in(self, path: Path, depth: int = 0) -> tuple[NodeSource, ...]:
        try:
            st = path.stat()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        key = (st.st_dev, st.st_ino)
        if key not in self.judged:
            self.judged[key] = ()  # a folder met again below itself (a bind mount): empty
            try:
                self.judged[key] = self._judge(path, depth)
            except UsageError as exc:
                self.judged[key] = exc
        judged = self.judged[key]
        if isinstance(judged, UsageError):
            raise judged
        return judged

    def _judge(self, path: Path, depth: int) -> tuple[NodeSource, ...]:
        own = self.node(path)
        subdirs = self.listing(path)[1]
        if own is not None and not subdirs:
            return (own,)
        nodes = tuple(n for n in (self.node(d) for d in subdirs) if n is not None)
        if nodes:
            return nodes
        clusters = [d for d in subdirs if depth < MAX_DEPTH and self._holds(d, depth + 1)]
        if len(clusters) == 1:
            return self.nodes_in(clusters[0], depth + 1)
        if len(clusters) > 1:
            names = ", ".join(str(c) for c in clusters)
            raise UsageError(f"{path} holds several fixture sets ({names}): pass one of them")
        return (own,) if own is not None else ()

    def _holds(self, path: Path, depth: int) -> bool:
        try:
            return bool(self.nodes_in(path, depth))
        except UsageError:
            return True


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _read_stream(binary: BinaryIO, name: str) -> str:
    """All of a stream, decoded as ``formats.read_text`` decodes a file; a terminal is
    refused (it would wait for typing), and so is an endless one (``/dev/zero``)."""
    if binary.isatty():
        raise UsageError(
            f"{name}: a terminal, not a capture (pipe one in: iptables-save | kpsim … -)"
        )
    # one read(2) a call: Ctrl-C between two is seen at once, not after the next block
    read = getattr(binary, "read1", binary.read)
    chunks, size = [], 0
    while chunk := read(1 << 20):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_STREAM:
            raise UsageError(f"{name}: more than {MAX_STREAM >> 20} MiB: not a capture")
    return b"".join(chunks).decode("utf-8", errors="replace")


def _stdin() -> str:
    stream = sys.stdin
    if stream is None:
        raise UsageError(f"{STDIN_NAME}: standard input is closed")
    binary = getattr(stream, "buffer", None)
    try:
        if binary is None:  # a notebook's text-only stdin
            return _read_stream(io.BytesIO(stream.read().encode()), STDIN_NAME)
        return _read_stream(binary, STDIN_NAME)
    except OSError as exc:
        raise UsageError(f"{STDIN_NAME}: cannot read: {exc.strerror or exc}") from exc


def _stdin_key() -> object:
    """fd 0's file, so that ``- /dev/stdin`` is seen as stdin twice."""
    try:
        st = os.fstat(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # closed, or not a file (a test's)
        return STDIN
    return (st.st_dev, st.st_ino)


def _stream(path: Path) -> str:
    """A FIFO, ``/dev/fd/N`` (process substitution) or other file that is not a regular
    one: read once, now (opening a FIFO waits for its writer, as ``cat`` does)."""
    try:
        with path.open("rb", buffering=0) as binary:
            return _read_stream(binary, str(path))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def resolve_paths(paths: Sequence[str]) -> FixtureSet:
    """Files become one node each; folders expand as described in the module doc;
    ``-`` is standard input, read once, as is any stream (a pipe, ``<(…)``)."""
    nodes: list[NodeSource] = []
    streams: set[object] = set()
    for raw in paths:
        if raw == STDIN:
            if {STDIN, _stdin_key()} & streams:
                raise UsageError("-: standard input given twice (it can be read only once)")
            streams |= {STDIN, _stdin_key()}
            named = Path(STDIN_NAME)
            nodes.append(NodeSource("stdin", named, (named,), _stdin()))
            continue
        path = Path(raw)
        st = _stat(path)
        if stat.S_ISREG(st.st_mode):
            nodes.append(NodeSource(path.stem, path, (path,)))
        elif stat.S_ISDIR(st.st_mode):
            found = _Walk(path).nodes_in(path)
            if not found:
                raise UsageError(f"{path}: no rule captures found in this folder")
            nodes.extend(found)
        else:
            key = (st.st_dev, st.st_ino)
            if key in streams:
                raise UsageError(f"{path}: given twice (a stream can be read only once)")
            streams.add(key)
            nodes.append(NodeSource(path.stem or path.name, path, (path,), _stream(path)))
    label = ", ".join(STDIN_NAME if p == STDIN else p for p in paths)
    return FixtureSet(label, "paths given", tuple(nodes))


def packaged_fixtures() -> Path:
    """The sample fixtures inside the installed package (or the source tree)."""
    package = Path(__file__).resolve().parents[1]  # kpsim/, this module is kpsim/inputs/
    for candidate in (package / "_fixtures", package.parents[1] / "fixtures" / "iptables"):
        if candidate.is_dir():
            return candidate
    raise UsageError("kpsim's packaged sample fixtures are missing: reinstall kpsim")


def default_set(
    fixtures_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> FixtureSet:
    """The fixture set used when no PATH is given (see module doc for the order)."""
    env = os.environ if env is None else env
    here = Path() if cwd is None else cwd  # relative paths read better in every message
    if fixtures_dir:
        root, origin = Path(fixtures_dir), "--fixtures"
    elif env.get("KPSIM_FIXTURES"):
        root, origin = Path(env["KPSIM_FIXTURES"]), "$KPSIM_FIXTURES"
    elif (here / "fixtures" / "iptables").is_dir():
        root, origin = here / "fixtures" / "iptables", "./fixtures/iptables"
    else:
        root, origin = packaged_fixtures(), "kpsim's packaged samples"
    try:
        found = stat.S_ISDIR(_stat(root).st_mode)
    except UsageError as exc:
        raise UsageError(f"{exc} ({origin})") from exc
    if not found:
        raise UsageError(f"{root}: fixture folder not found ({origin})")
    nodes = _Walk(root).nodes_in(root)
    if not nodes:
        raise UsageError(f"{root}: no rule captures found ({origin})")
    common = os.path.commonpath([str(n.primary.parent) for n in nodes])
    return FixtureSet(_display(Path(common)), origin, nodes)


def _display(path: Path) -> str:
    """Relative to the working folder when under it (as a user would type it), else
    absolute: from ``/`` a relative form would lose the leading slash and name nothing."""
    cwd = Path.cwd()
    if cwd == Path(cwd.anchor):
        return str(path)
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def select(paths: Sequence[str], fixtures_dir: str | None = None) -> FixtureSet:
    return resolve_paths(paths) if paths else default_set(fixtures_dir)
