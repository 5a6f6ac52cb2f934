"""Every byte the processor keeps carries its own check: a footer of magic, length and CRC-32, verified when read.

A file (a pending segment, its labelled flags, the early labels, a pinned reference) or a blob in the state
database (the checkpoint, each window) is ``seal``ed when written and ``unseal``ed when read: a truncated,
garbled, empty or foreign one raises ``Damaged`` naming what it is and why, so that recovery can say exactly what
it dropped (or refuse to start) instead of loading garbage, failing with a traceback or looping. (The journal's
records carry the same check in their files' own record headers, state/request_log.py, and are not sealed again.)

Writes are atomic (``write_sealed``: a temporary file, fsync, rename, fsync of the directory): a crash leaves the
old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

FOOTER = struct.Struct("<4sQI")
"""magic, length of what precedes, CRC-32 of it."""
MAGIC = b"OMLS"


@dataclass(frozen=True)
class Loss:
    """What recovery had to drop: ``kind`` of state (``otel_ml.state.recovered``'s label), its ``file`` (or
    where in the database), how many ``rows``, and what that means (the log line)."""

    kind: str
    file: str
    rows: int
    what: str


class Damaged(ValueError):
    """``what`` cannot be used: ``why`` (truncated, a checksum mismatch, not an otel-ml file...)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


def seal(data: bytes) -> bytes:
    """``data`` with its footer.

    >>> unseal(seal(b"windows"), "x")
    b'windows'
    >>> unseal(seal(b"windows")[:-1], "checkpoint")
    Traceback (most recent call last):
    ...
    otel_ml.sealed.Damaged: checkpoint: truncated or not an otel-ml file (no footer)
    """
    return data + FOOTER.pack(MAGIC, len(data), zlib.crc32(data))


def is_sealed(data: bytes | memoryview) -> bool:
    return len(data) >= FOOTER.size and bytes(data[-FOOTER.size:-FOOTER.size + 4]) == MAGIC


def unseal(data: bytes | memoryview, what: str) -> bytes:
    """The data ``seal`` wrapped; raises ``Damaged`` when the footer is missing or does not match."""
    if not len(data):
        raise Damaged(what, "empty (zero bytes)")
    if not is_sealed(data):
        raise Damaged(what, "truncated or not an otel-ml file (no footer)")
    _magic, length, crc = FOOTER.unpack(bytes(data[-FOOTER.size:]))
    body = bytes(data[:-FOOTER.size])
    if length != len(body):
        raise Damaged(what, f"length {len(body)} where {length} was written (truncated or extended)")
    if zlib.crc32(body) != crc:
        raise Damaged(what, "checksum mismatch (garbled)")
    return body


def opened(data: bytes | memoryview, what: str) -> bytes:
    """``unseal`` what was sealed; what an older otel-ml wrote unsealed (a JSON document, a journal record: the
    journal's files check their records themselves, request_log.py) is passed through as it is, for its own parser
    to check. Sealed means a footer whose magic and length both match, so unsealed data whose 16th-last byte happens
    to begin the magic is not taken for damaged sealed data.

    >>> opened(b'{"a": 1}', "x"), opened(seal(b"z"), "x")
    (b'{"a": 1}', b'z')
    """
    return unseal(data, what) if _footer_fits(data) else bytes(data)


def _footer_fits(data: bytes | memoryview) -> bool:
    """``data`` ends with a footer whose magic and length match it (its checksum is for ``unseal`` to check)."""
    return is_sealed(data) and FOOTER.unpack(bytes(data[-FOOTER.size:]))[1] == len(data) - FOOTER.size


def check_sealed(path: Path, what: str) -> int:
    """Verify a sealed file without keeping it in memory (segments are memory-mapped afterwards); returns the
    length of its data. Raises ``Damaged`` (a missing file too)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise Damaged(what, "missing") from e
    if size == 0:
        raise Damaged(what, "empty (zero bytes)")
    if size < FOOTER.size:
        raise Damaged(what, "truncated or not an otel-ml file (no footer)")
    crc = 0
    with open(path, "rb") as f:
        remaining = size - FOOTER.size
        while remaining:
            block = f.read(min(remaining, 1 << 22))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
        footer = f.read(FOOTER.size)
    magic, length, expected = FOOTER.unpack(footer)
    if magic != MAGIC:
        raise Damaged(what, "truncated or not an otel-ml file (no footer)")
    if length != size - FOOTER.size:
        raise Damaged(what, f"length {size - FOOTER.size} where {length} was written (truncated or extended)")
    if crc != expected:
        raise Damaged(what, "checksum mismatch (garbled)")
    return length


def read_sealed(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise Damaged(what, "missing") from e
    return unseal(data, what)


def write_sealed(path: Path, data: bytes | list[bytes]) -> None:
    """Write ``data`` (or its parts, one after the other) sealed, atomically and durably."""
    parts = data if isinstance(data, list) else [data]
    crc, length = 0, 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        length += len(part)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        for part in parts:
            f.write(part)
        f.write(FOOTER.pack(MAGIC, length, crc))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine(path: Path, state_dir: Path) -> Path | None:
    """Move a damaged file to ``<state dir>/quarantine/`` (kept for a post-mortem, out of the way); returns where
    it went (None: it was not there)."""
    if not path.exists():
        return None
    target_dir = state_dir / "quarantine"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    n = 1
    while target.exists():
        n += 1
        target = target_dir / f"{path.name}.{n}"
    path.rename(target)
    return target
