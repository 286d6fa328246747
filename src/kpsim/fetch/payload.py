"""Read the framed stdout of the capture script, and the chunked read-back.

    stdout ─ read_frame ─▶ Frame(header, payload | None)   None: cut short → S3 or chunks
    chunks ─ join_chunks ─▶ payload (gunzipped, size + sha256 verified)
    payload ─ split_sections ─▶ {"hostname": …, "iptables-save": …}

Anything unexpected raises FrameError; a bad checksum raises ChecksumError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib
from dataclasses import dataclass

from kpsim.fetch.script import CHUNK_BYTES

#: What SSM appends after the first 24,000 characters of stdout.
TRUNCATION_MARK = "--output truncated--"
SSM_STDOUT_LIMIT = 24_000

_BEGIN = re.compile(
    rb"==kpsim:begin v=1 bytes=(\d{1,12}) sha256=([0-9a-f]{64}) spool=([01]) gz=(\d{1,12})==\n"
)
_END = b"==kpsim:end bytes=%d sha256=%s==\n"
_SECTION = re.compile(r"^==kpsim:section ([a-z0-9-]{1,40})==\n", re.M)
_CHUNK = re.compile(r"==kpsim:chunk index=(\d+)==\n([A-Za-z0-9+/=\s]*)==kpsim:chunk-end==")
_MARKER = re.compile(r"==kpsim:(error|unsupported) ([^=\n]{1,200})==")


class FrameError(ValueError):
    """The output is not what the fixed script prints (message says how)."""


class ChecksumError(FrameError):
    """Complete output whose sha256 or size disagrees with what the node computed."""


@dataclass(frozen=True, slots=True)
class Header:
    """The first line: the payload's size and sha256, and whether a spool was kept."""

    size: int
    sha256: str
    spool: bool
    gz_size: int

    @property
    def chunks(self) -> int:
        return -(-self.gz_size // CHUNK_BYTES)


@dataclass(frozen=True, slots=True)
class Frame:
    """Parsed stdout; ``payload`` is None when the output was cut short."""

    header: Header
    payload: bytes | None
    truncated_mark: bool


def to_bytes(stdout: str | bytes) -> bytes:
    return stdout if isinstance(stdout, bytes) else stdout.encode("utf-8", "surrogateescape")


def marker(stdout: str | bytes) -> tuple[str, str] | None:
    """A ``==kpsim:error …==`` / ``==kpsim:unsupported …==`` line the script printed."""
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    m = _MARKER.search(text)
    return (m.group(1), m.group(2)) if m else None


def read_frame(stdout: str | bytes) -> Frame:
    """Split stdout into header and payload; verify size and sha256 when complete."""
    data = to_bytes(stdout)
    m = _BEGIN.search(data)
    if m is None:
        raise FrameError("no kpsim header in the output (the capture script did not run?)")
    header = Header(int(m.group(1)), m.group(2).decode(), m.group(3) == b"1", int(m.group(4)))
    start = m.end()
    body = data[start : start + header.size]
    trailer = _END % (header.size, header.sha256.encode())
    cut = data.rstrip().endswith(TRUNCATION_MARK.encode())
    if len(body) < header.size or not data[start + header.size :].startswith(trailer):
        if not cut and len(data) < SSM_STDOUT_LIMIT:
            raise FrameError("output ends before the kpsim trailer but was not cut by SSM")
        return Frame(header, None, cut)
    verify(body, header)
    return Frame(header, body, cut)


def verify(payload: bytes, header: Header) -> None:
    if len(payload) != header.size:
        raise ChecksumError(f"payload is {len(payload)} bytes, node said {header.size}")
    digest = hashlib.sha256(payload).hexdigest()
    if digest != header.sha256:
        raise ChecksumError(f"sha256 {digest[:16]}… differs from the node's {header.sha256[:16]}…")


def decode_chunk(stdout: str | bytes, index: int, header: Header) -> bytes:
    """The raw gzip bytes of chunk ``index`` (length checked against the spool size)."""
    text = stdout.decode("ascii", "replace") if isinstance(stdout, bytes) else stdout
    m = _CHUNK.search(text)
    if m is None or int(m.group(1)) != index:
        raise FrameError(f"chunk {index}: markers missing (output cut or not the kpsim script)")
    try:
        raw = base64.b64decode("".join(m.group(2).split()), validate=True)
    except binascii.Error as exc:
        raise FrameError(f"chunk {index}: bad base64 ({exc})") from exc
    expected = min(CHUNK_BYTES, header.gz_size - index * CHUNK_BYTES)
    if len(raw) != expected:
        raise FrameError(f"chunk {index}: {len(raw)} bytes, expected {expected}")
    return raw


def join_chunks(chunks: list[bytes], header: Header) -> bytes:
    """Gunzip the spool (bounded to the announced size) and verify it."""
    gz = b"".join(chunks)
    if len(gz) != header.gz_size:
        raise ChecksumError(f"spool is {len(gz)} bytes, node said {header.gz_size}")
    inflater = zlib.decompressobj(wbits=31)
    try:
        payload = inflater.decompress(gz, header.size + 1)
    except zlib.error as exc:
        raise ChecksumError(f"spool does not gunzip: {exc}") from exc
    verify(payload, header)
    return payload


def split_sections(payload: bytes) -> dict[str, str]:
    """Section name → body exactly as the node printed it (the added newline removed)."""
    text = payload.decode("utf-8", "replace")
    marks = list(_SECTION.finditer(text))
    if not marks or marks[0].start() != 0:
        raise FrameError("payload does not start with a kpsim section")
    out: dict[str, str] = {}
    for here, nxt in zip(marks, [*marks[1:], None], strict=True):
        end = nxt.start() if nxt else len(text)
        body = text[here.end() : end]
        if not body.endswith("\n"):
            raise FrameError(f"section {here.group(1)} lacks its closing newline")
        out[here.group(1)] = body[:-1]
    return out
