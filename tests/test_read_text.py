"""``read_text`` decodes from a memory map where it can, and reads whatever cannot be
mapped (an empty file, a pipe); both give what ``bytes.decode`` gives."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kpsim.errors import UsageError
from kpsim.formats import read_text

SAMPLES = [
    b"*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n",
    b"",
    b"caf\xc3\xa9 \xff\xfe half \xe2\x82",  # undecodable bytes and a cut sequence
    b"\r\n".join([b"-A X -j ACCEPT"] * 50_000),  # several pages
]


@pytest.mark.parametrize("data", SAMPLES, ids=["save", "empty", "undecodable", "big"])
def test_file_reads_as_decode_gives(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "capture.txt"
    path.write_bytes(data)
    assert read_text(path) == data.decode("utf-8", errors="replace")


def test_pipe_is_read_too(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = SAMPLES[2] * 3

    def feed() -> None:
        with fifo.open("wb") as out:
            out.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert read_text(fifo) == data.decode("utf-8", errors="replace")
    finally:
        writer.join(timeout=10)


def test_unreadable_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(UsageError, match="cannot read"):
        read_text(tmp_path)  # a directory
