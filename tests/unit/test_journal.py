"""The journal's contract, fast and in-process: apply only after commit, in sequence order; a failed commit
applies nothing, raises StorageError and leaves no gap in the sequence; a replay returns exactly what was
applied. Failures come from the kernel (a record write past the process's file size limit, RLIMIT_FSIZE, fails
half-written like a full disk) or from SQLite itself (a checkpoint row that breaks a constraint), so the real
cleanup paths run."""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_ml.state.journal import Checkpoint, Journal, StorageError


@pytest.fixture()
def journal(tmp_path: Path):
    j = Journal(tmp_path)
    state, seq, replay = j.open()
    assert state is None and seq == 0 and list(replay) == []
    j.start()
    yield j
    j.close()


def test_a_payload_is_applied_after_its_commit_in_sequence_order(journal: Journal) -> None:
    applied: list[tuple[int, bytes]] = []
    threads = [threading.Thread(target=lambda i=i: journal.append(b"p%d" % i, lambda seq, i=i: applied.append(
        (seq, b"p%d" % i)))) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [seq for seq, _ in applied] == list(range(1, 51))  # applied in commit order, no gap
    assert journal.last_seq == 50
    journal.close()
    _, _, replay = journal.open()
    assert list(replay) == applied  # what a restart replays is what was applied, in the same order


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail (EFBIG) in this process, as on a disk that is full there."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not the signal that kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)


def test_a_failed_commit_applies_nothing_and_its_numbers_are_reused(journal: Journal) -> None:
    applied: list[int] = []
    assert journal.append(b"a", applied.append) == 1
    assert journal.log is not None and journal.log._path is not None
    written = journal.log._path.stat().st_size
    with file_size_limit(written + 1000), pytest.raises(StorageError) as failure:
        journal.append(b"x" * 5000, applied.append)  # half written, then refused
    assert failure.value.op == "journal" and isinstance(failure.value.cause, OSError)
    assert journal.log._path.stat().st_size == written  # cut back: no torn record before the next one
    assert journal.append(b"b", applied.append) == 2  # works again at once; no hole for the failed one
    assert applied == [1, 2]
    journal.close()
    _, _, replay = journal.open()
    assert list(replay) == [(1, b"a"), (2, b"b")]


def test_an_exception_in_apply_reaches_the_caller_and_the_writer_carries_on(journal: Journal) -> None:
    def broken(seq: int) -> None:
        raise RuntimeError("bug in apply")

    with pytest.raises(RuntimeError, match="bug in apply"):
        journal.append(b"a", broken)
    assert journal.append(b"b", lambda seq: None) == 2


def test_a_failed_checkpoint_raises_storage_error_and_keeps_the_journal(journal: Journal) -> None:
    assert journal._conn is not None
    journal.append(b"a", lambda seq: None)
    # A checkpoint whose window rows break a constraint fails inside its transaction, like a full disk would.
    with pytest.raises(StorageError) as failure:
        journal.checkpoint(Checkpoint(1, b"state", window_upserts=[("m", "", 0, None)]))  # type: ignore[list-item]
    assert failure.value.op == "checkpoint"
    journal.close()
    state, seq, replay = journal.open()
    assert state is None and seq == 0 and [p for _, p in replay] == [b"a"]


def test_the_records_files_torn_damaged_foreign_and_from_an_earlier_otel_ml(tmp_path: Path) -> None:
    """What recovery makes of the journal's files: a record cut short at the end of its file (a crash before its
    sync: never acknowledged) is dropped quietly; a whole record that fails its checksum is damage, reported with
    what follows it; another database's files are not replayed into this one; records an earlier otel-ml wrote into
    the database's journal table are replayed first, and a checkpoint deletes them and the files it includes."""
    j = Journal(tmp_path)
    j.open()
    j.start()
    for i in range(4):
        j.append(b"r%d" % i, lambda seq: None)
    j.close()
    assert j.log is not None
    [path] = j.log.files()
    data = path.read_bytes()
    path.write_bytes(data[:-2])  # the last record cut short
    state, seq, replay = j.open()
    assert [p for _, p in replay] == [b"r0", b"r1", b"r2"] and not j.losses and j.last_seq == 3

    garbled = bytearray(path.read_bytes())
    garbled[data.index(b"r1")] ^= 0xFF  # inside the second record: damage, not a torn write
    path.write_bytes(bytes(garbled))
    j = Journal(tmp_path)
    _, _, replay = j.open()
    assert [p for _, p in replay] == [b"r0"]
    [loss] = j.losses
    assert loss.kind == "journal_record" and "fails its checksum" in loss.what

    # Another state database beside these files: they are moved aside, not replayed into it.
    other = tmp_path / "other"
    other.mkdir()
    Journal(other).open()
    (other / "journal" / path.name).write_bytes(path.read_bytes())
    j = Journal(other)
    j.open()
    assert j.log is not None
    assert not j.log.files() and j.losses and "another state database" in j.losses[0].what
    assert (other / "quarantine").is_dir()

    # An earlier otel-ml's records in the database's table are replayed, then go with the first checkpoint.
    old = tmp_path / "old"
    old.mkdir()
    j = Journal(old)
    j.open()
    assert j._conn is not None
    j._conn.execute("INSERT INTO journal (seq, payload) VALUES (1, x'6f6c64')")  # b"old"
    j.close()
    j = Journal(old)
    _, seq, replay = j.open()
    assert list(replay) == [(1, b"old")] and j.last_seq == 1
    j.start()
    assert j.append(b"new", lambda seq: None) == 2
    j.checkpoint(Checkpoint(2, b"state"))
    assert j.log is not None and j.log.files() == []  # every record is in the checkpoint
    j.append(b"after", lambda seq: None)
    j.close()
    state, seq, replay = j.open()
    assert (state, seq, list(replay)) == (b"state", 2, [(3, b"after")])
    assert j._conn is not None and j._conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0


def test_a_short_write_of_a_group_is_completed(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may write part of a group's buffers (``writev`` returning less, without an error): the rest is
    written after it, so the records replay whole. The short write is the real ``writev`` given the first buffer."""
    import os

    from otel_ml.state import request_log

    real = os.writev
    monkeypatch.setattr(request_log.os, "writev", lambda fd, buffers: real(fd, list(buffers)[:1]))
    payloads = [b"p%d" % i * 1000 for i in range(5)]
    done = [threading.Event() for _ in payloads]
    threads = [threading.Thread(target=journal.append, args=(p, lambda seq, e=e: e.set())) for p, e in
               zip(payloads, done)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(e.is_set() for e in done)
    journal.close()
    _, _, replay = journal.open()
    assert sorted(p for _, p in replay) == sorted(payloads)


def test_records_sealed_by_an_earlier_otel_ml_and_unsealed_ones_both_open() -> None:
    """Journal records were sealed until the journal's files checked them (request_log.py); a replay opens both.
    Unsealed data whose 16th-last byte begins the seal's magic is not taken for a damaged seal: the footer's length
    must match too."""
    from otel_ml.sealed import MAGIC, opened, seal

    record = b"OMR1" + bytes(range(200))
    assert opened(seal(record), "journal entry 1") == record
    assert opened(record, "journal entry 2") == record
    lookalike = record + MAGIC + (12345).to_bytes(8, "little") + b"\0\0\0\0"
    assert opened(lookalike, "journal entry 3") == lookalike
