"""The journal's contract, fast and in-process: apply only after commit, in sequence order; a failed commit
applies nothing, raises StorageError and leaves no gap in the sequence; a replay returns exactly what was
applied. Failures come from SQLite itself (a trigger that raises), so the real rollback path runs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from otel_ml.state.journal import Checkpoint, Journal, StorageError

POISON = b"\xff"


@pytest.fixture()
def journal(tmp_path: Path):
    j = Journal(tmp_path)
    state, seq, replay = j.open()
    assert state is None and seq == 0 and list(replay) == []
    assert j._conn is not None
    j._conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON journal WHEN NEW.payload = x'ff' "
                    "BEGIN SELECT RAISE(FAIL, 'injected write failure'); END")
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


def test_a_failed_commit_applies_nothing_and_its_numbers_are_reused(journal: Journal) -> None:
    applied: list[int] = []
    assert journal.append(b"a", applied.append) == 1
    with pytest.raises(StorageError) as failure:
        journal.append(POISON, applied.append)
    assert failure.value.op == "journal" and isinstance(failure.value.cause, sqlite3.Error)
    assert "injected write failure" in str(failure.value)
    assert journal.append(b"b", applied.append) == 2  # works again at once; no hole for the failed one
    assert applied == [1, 2]


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
