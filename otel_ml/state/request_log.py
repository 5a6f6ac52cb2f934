"""The journal's records on disk: append-only files of sealed records, one fdatasync per group commit.

Why not a table of the state database: a 100 KB request written into SQLite's WAL is copied again into the
database file at each WAL checkpoint, and deleted row by row there later; appended to a file it is written once
and deleted with its file. That was a sixth of the CPU time of a durable request (docs/benchmarks.md, issue 48).
The state database keeps what changes in place (checkpoint, windows, archive); this log keeps only what happened
since the last checkpoint.

Layout: ``<state dir>/journal/<first seq>.log``, each file a header (``MAGIC``, then the identity of the database
it belongs to: a log beside another database is not replayed into it) and records ``seq, length, crc32`` +
payload. A new file starts after each checkpoint; files wholly at or before the checkpoint's sequence number are
deleted once it commits. A record is acknowledged only after its bytes are synced, so a record cut short at the
end of a file (a crash, a full disk) was never acknowledged and is dropped quietly; a whole record whose checksum
fails is damage, reported as lost with what follows it in its file.

>>> import tempfile
>>> log = RequestLog(Path(tempfile.mkdtemp()), "db-1")
>>> log.open()
0
>>> log.append([(1, b"a"), (2, b"bc")]); log.rotate(); log.append([(3, b"d")])
>>> [(seq, payload) for seq, payload in RequestLog(log.dir, "db-1").read(after=1)]
[(2, b'bc'), (3, b'd')]
>>> log.drop_through(2); sorted(p.name for p in log.dir.iterdir())
['00000000000000000003.log']
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from otel_ml.sealed import Loss, quarantine

MAGIC = b"otel-ml journal 1\n"
RECORD = struct.Struct("<QII")
"""A record's header: sequence number, payload length, CRC-32 of the sequence number's bytes and the payload."""
NAME = "{:020d}.log"
_IOV_MAX = 1024
"""Buffers one ``writev`` takes at most (Linux's IOV_MAX)."""


def _crc(seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little")))


class RequestLog:
    """The journal's files in ``directory``; ``identity``: the state database's, written in each file's header."""

    def __init__(self, directory: Path, identity: str) -> None:
        self.dir = directory
        self.identity = identity
        self._header = MAGIC + identity.encode() + b"\n"
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self.last_of: dict[Path, int] = {}
        """Each file's last sequence number (what ``drop_through`` deletes by)."""
        self.losses: list[Loss] = []
        """What ``read`` found damaged."""
        self._index: list[tuple[int, Path, int, int]] = []

    def open(self) -> int:
        """Scan the files (verifying every record); returns the last sequence number written, 0 without any."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index = []
        self.last_of = {}
        for path in sorted(self.dir.glob("*.log")):
            self._index += self._scan(path)
        return max((seq for seq, *_ in self._index), default=0)

    def _scan(self, path: Path) -> list[tuple[int, Path, int, int]]:
        """Verify a file's records, one at a time (a journal of 30 s of heavy traffic is hundreds of MB: never read
        whole); returns where each good one is."""
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(len(self._header))
            if head != self._header:
                if len(head) < len(self._header) and self._header.startswith(head):
                    return []  # created, header cut short by a crash: nothing in it was acknowledged
                f.close()
                where = quarantine(path, self.dir.parent)
                self.losses.append(Loss("journal_record", path.name, 0, "a journal file of another state database "
                                        "(or damaged in its header): its requests are not replayed here"
                                        + (f" (moved to {where.parent})" if where is not None else "")))
                return []
            out, at = [], len(self._header)
            while at + RECORD.size <= size:
                seq, length, crc = RECORD.unpack(f.read(RECORD.size))
                end = at + RECORD.size + length
                if end > size:
                    break  # cut short: never acknowledged
                if _crc(seq, f.read(length)) != crc:
                    if end < size:  # not the last record: damage, not a torn write
                        self.losses.append(Loss("journal_record", path.name, 0, f"a journal record at byte {at} fails "
                                                f"its checksum: it and the {size - end} bytes after it in "
                                                f"{path.name} are lost (the requests they recorded)"))
                    break
                out.append((seq, path, at + RECORD.size, length))
                at = end
        if out:
            self.last_of[path] = out[-1][0]
        return out

    def read(self, after: int) -> Iterator[tuple[int, bytes]]:
        """The records after sequence number ``after``, in order (``open`` first, or it is called here)."""
        if not self._index and not self.last_of:
            self.open()
        for seq, path, offset, length in sorted(self._index):
            if seq > after:
                with path.open("rb") as f:
                    f.seek(offset)
                    yield seq, f.read(length)

    # --- writing ---------------------------------------------------------------------------------------------
    def append(self, records: list[tuple[int, bytes | memoryview]]) -> None:
        """Write and sync ``records`` (sequence number, payload); raises OSError when they could not be, having
        cut the file back to where it was (or, failing that, given it up for the next file): a later append never
        follows a torn record."""
        if not records:
            return
        if self._fd is None:
            self._start(records[0][0])
        assert self._fd is not None and self._path is not None
        # Each record's header and payload handed to the kernel as they are (writev): joining them first copied
        # every payload twice. A short write (rare: a full disk, a signal) writes the rest from a joined copy.
        parts: list[bytes | memoryview] = []
        for seq, payload in records:
            parts += [RECORD.pack(seq, len(payload), _crc(seq, payload)), payload]
        size = sum(len(p) for p in parts)
        try:
            written = 0
            for at in range(0, len(parts), _IOV_MAX):
                chunk = parts[at:at + _IOV_MAX]
                done = os.writev(self._fd, chunk)
                written += done
                if done < sum(len(p) for p in chunk):
                    break
            if written < size:
                view = memoryview(b"".join(parts))[written:]
                while view:
                    view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)
        except OSError:
            try:  # back to where it was: the size, and the offset the next write starts at
                os.ftruncate(self._fd, self._size)
                os.lseek(self._fd, self._size, os.SEEK_SET)
            except OSError:
                self.rotate()
            raise
        self._size += size
        self.last_of[self._path] = records[-1][0]

    def _start(self, first_seq: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / NAME.format(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, self._header)
            os.fdatasync(fd)
            dir_fd = os.open(self.dir, os.O_RDONLY)  # the new file's name must survive a crash too
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd, self._path, self._size = fd, path, len(self._header)

    def rotate(self) -> None:
        """Close the current file: the next append starts a new one."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None

    def drop_through(self, seq: int) -> None:
        """Delete the files whose every record is at or before ``seq`` (a checkpoint that includes them committed),
        and any file with no record."""
        for path in sorted(self.dir.glob("*.log")) if self.dir.is_dir() else []:
            if path != self._path and self.last_of.get(path, 0) <= seq:
                path.unlink(missing_ok=True)
                self.last_of.pop(path, None)
        self._index = [r for r in self._index if r[1].exists()]

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.log")) if self.dir.is_dir() else []

    def close(self) -> None:
        self.rotate()
