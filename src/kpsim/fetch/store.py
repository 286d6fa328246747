"""Write a node's fixture files atomically, only after every file verifies.

    temp files (same folder) ─ fsync ─ re-read + check meta sha256 ─ os.replace each

A failed fetch leaves no partial file and never touches an existing good fixture.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from kpsim.errors import FetchError
from kpsim.fetch.capture import FixtureFile, sha256_text
from kpsim.formats.common import parse_meta


def check_fixture_text(text: str, name: str) -> None:
    """A fixture's first line is meta whose sha256 matches the rest of the file."""
    head, sep, body = text.partition("\n")
    meta = parse_meta(head)
    if meta is None or not sep:
        raise FetchError(f"{name}: first line is not a '# kpsim:meta' line")
    if meta.get("sha256") != sha256_text(body):
        raise FetchError(f"{name}: contents do not match the sha256 in its metadata")


def write_node(folder: Path, files: Sequence[FixtureFile]) -> tuple[Path, ...]:
    """Write ``files`` into ``folder``: all verified temps first, then ``os.replace``."""
    for f in files:
        if "/" in f.name or f.name.startswith("."):
            raise FetchError(f"refusing fixture file name {f.name!r}")
        check_fixture_text(f.text, f.name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    temps: list[tuple[Path, Path]] = []
    try:
        for f in files:
            temps.append((_write_temp(folder, f), folder / f.name))
        for tmp, final in temps:
            check_fixture_text(tmp.read_text(encoding="utf-8"), final.name)
        for tmp, final in temps:
            os.replace(tmp, final)
    except OSError as exc:
        raise FetchError(f"cannot write into {folder}: {exc.strerror or exc}") from exc
    finally:
        for tmp, _ in temps:
            with suppress(FileNotFoundError):
                tmp.unlink()
    return tuple(final for _, final in temps)


def _write_temp(folder: Path, f: FixtureFile) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{f.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(f.text)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return Path(name)
