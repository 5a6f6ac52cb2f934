"""The journal's own cost: CPU per span and bytes written to disk per byte journaled (issue 48).

    .venv/bin/python -m bench.journal [--rounds 4]

Eight threads append journal records the size of a 512-span request's (95 KB) as the receivers do, a checkpoint
every second, alternated round by round with the baseline: the same records group-committed into a SQLite table
in WAL mode (what the journal was until 12-07: each record written to the WAL, copied into the database at the WAL
checkpoint, deleted there later). Disk bytes are the kernel's count for this process (``/proc/self/io``
``write_bytes``). A bench, not a test: figures vary with the machine; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import queue
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

from otel_ml.state.journal import Checkpoint, Journal

RECORD_BYTES = 95_000
"""A 512-span × 20-feature request's journal record (``python -m bench.costs``)."""
SPANS = 512
RECORDS = 2000
THREADS = 8


def _written() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("write_bytes")).split()[1])


class SqliteTableJournal:
    """The baseline: group commit into a WAL-mode table, a checkpoint deleting the rows it includes."""

    def __init__(self, directory: str) -> None:
        self.conn = sqlite3.connect(os.path.join(directory, "j.db"), check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        self.queue: queue.Queue = queue.Queue()
        self.seq = 0
        self.writer = threading.Thread(target=self._loop, daemon=True)
        self.writer.start()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self.conn.execute("BEGIN IMMEDIATE")
            for kind, payload, _done in batch:
                if kind == "write":
                    self.seq += 1
                    self.conn.execute("INSERT INTO journal (seq, payload) VALUES (?, ?)", (self.seq, payload))
                else:
                    self.conn.execute("DELETE FROM journal WHERE seq <= ?", (self.seq,))
            self.conn.execute("COMMIT")
            if any(kind == "checkpoint" for kind, _, _ in batch):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for _, _, done in batch:
                done.set()

    def append(self, payload: bytes) -> None:
        done = threading.Event()
        self.queue.put(("write", payload, done))
        done.wait()

    def checkpoint(self) -> None:
        done = threading.Event()
        self.queue.put(("checkpoint", b"", done))
        done.wait()

    def close(self) -> None:
        self.queue.put(None)
        self.writer.join()
        self.conn.close()


def run(make: Callable[[str], tuple[Callable[[bytes], None], Callable[[], None], Callable[[], None]]]
        ) -> tuple[float, float]:
    """(CPU µs per span, disk bytes written per byte journaled) of ``RECORDS`` appends from ``THREADS`` threads."""
    payload = os.urandom(RECORD_BYTES)
    with tempfile.TemporaryDirectory() as d:
        append, checkpoint, close = make(d)
        stop = threading.Event()

        def checkpoints() -> None:
            while not stop.wait(1.0):
                checkpoint()

        def appends() -> None:
            for _ in range(RECORDS // THREADS):
                append(payload)

        written, cpu = _written(), time.process_time()
        threads = [threading.Thread(target=appends) for _ in range(THREADS)]
        ticker = threading.Thread(target=checkpoints)
        ticker.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        ticker.join()
        checkpoint()
        cpu, written = time.process_time() - cpu, _written() - written
        close()
    return cpu / (RECORDS * SPANS) * 1e6, written / (RECORDS * RECORD_BYTES)


def ours(directory: str) -> tuple[Callable[[bytes], None], Callable[[], None], Callable[[], None]]:
    journal = Journal(directory)
    journal.open()
    journal.start()
    return (lambda p: journal.append(p, lambda seq: None),
            lambda: journal.checkpoint(Checkpoint(journal.last_seq, b"state")), journal.close)


def baseline(directory: str) -> tuple[Callable[[bytes], None], Callable[[], None], Callable[[], None]]:
    journal = SqliteTableJournal(directory)
    return journal.append, journal.checkpoint, journal.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "baseline": []}
    for k in range(args.rounds):
        for name in ("ours", "baseline")[:: 1 if k % 2 else -1]:
            results[name].append(run(ours if name == "ours" else baseline))
    cpu = {name: statistics.median(r[0] for r in rs) for name, rs in results.items()}
    disk = {name: statistics.median(r[1] for r in rs) for name, rs in results.items()}
    print("| journal | CPU µs per span (median) | disk bytes per byte journaled |")
    print("|---|---|---|")
    print(f"| SQLite WAL table (baseline, the journal before 12-07) | {cpu['baseline']:.2f} | {disk['baseline']:.2f} |")
    print(f"| append-only files (`state/request_log.py`) | {cpu['ours']:.2f} ({cpu['ours'] / cpu['baseline']:.2f}×) | "
          f"{disk['ours']:.2f} ({disk['ours'] / disk['baseline']:.2f}×) |")


if __name__ == "__main__":
    main()
