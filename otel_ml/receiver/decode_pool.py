"""Decoding in worker processes for sources that hand over bytes in batches (Kafka), so that decoding does not
share one core with applying.

A source gives a batch of messages; each is decoded in one of ``processes`` spawned processes (the same
``decode_for_ingest`` as every other source) and comes back as a journal record (``DecodeResult.to_bytes``, ~3.5x
smaller than the message), in the batch's order: the main process only reads the record, commits and applies it
(the record is journaled as it is, never encoded again). Decoding is pure, so a worker that dies costs nothing but
time: the batch is decoded again in this process and the pool is started anew.

>>> import functools
>>> from otel_ml.decode import DecodeLimits
>>> from otel_ml.receiver.ingest import decode_for_ingest
>>> pool = DecodePool(functools.partial(decode_for_ingest, limits=DecodeLimits(), hash_key=None,
...                                     hash_features=[]), processes=0)
>>> [type(r).__name__ for r in pool.decode([(b"", "traces", []), (b"\\xff", "traces", [])])]
['bytes', 'ValueError']
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from otel_ml.decode.batch import DecodeResult
from otel_ml.lifetime import exit_with_parent

log = logging.getLogger(__name__)

Job = tuple[bytes, str, list[tuple[str, int, int]]]
"""A message's bytes, its signal (``traces`` or ``logs``) and the offsets its record carries."""

_decode_in_worker: Callable[..., DecodeResult] | None = None


def _start_worker(decode: Callable[..., DecodeResult]) -> None:
    global _decode_in_worker
    exit_with_parent()  # a kill -9 of the processor must not leave decoders behind
    _decode_in_worker = decode


def _record(decode: Callable[..., DecodeResult], job: Job) -> bytes:
    data, signal, offsets = job
    result = decode(data, signal=signal)
    result.offsets = offsets
    return result.to_bytes()


def _record_in_worker(job: Job) -> bytes:
    assert _decode_in_worker is not None
    return _record(_decode_in_worker, job)


def _ready() -> int:
    return 0


class DecodePool:
    """``decode(jobs)`` → per job its record (bytes) or the ValueError that says why it is not OTLP, in order.
    ``processes`` 0: decode in the calling thread."""

    def __init__(self, decode: Callable[..., DecodeResult], processes: int) -> None:
        self._decode = decode
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start every process and wait until each answers (before a consumer joins its group: a rebalance must
        not wait for interpreters to start)."""
        if self.processes <= 0:
            return
        self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker, initargs=(self._decode,))
        # One job per process, all in flight at once: the executor starts a process for each.
        for f in [self._pool.submit(_ready) for _ in range(self.processes)]:
            f.result(timeout=120)

    def decode(self, jobs: list[Job]) -> Iterator[bytes | ValueError]:
        """In order, as each is ready: the caller applies one while the processes decode the next."""
        pool = self._pool
        if pool is None or len(jobs) < 2:
            yield from (self._here(job) for job in jobs)
            return
        pending: list[Future] = [pool.submit(_record_in_worker, job) for job in jobs]
        for i, f in enumerate(pending):
            try:
                yield f.result()
            except ValueError as e:
                yield e
            except BrokenProcessPool:
                log.warning("a decoding process died; decoding the rest of this batch here and starting the "
                            "processes again")
                _stop(pool, grace=2.0)
                self._pool = None
                yield from (self._here(job) for job in jobs[i:])
                self.start()
                return

    def _here(self, job: Job) -> bytes | ValueError:
        try:
            return _record(self._decode, job)
        except ValueError as e:
            return e

    def shutdown(self) -> None:
        if self._pool is not None:
            _stop(self._pool, grace=3.0)  # decoding is pure: a process still busy after 3 s is killed
            self._pool = None


def _stop(pool: ProcessPoolExecutor, grace: float) -> None:
    """Shut ``pool`` down without trusting it to stop by itself: a worker killed while it held the pool's call
    queue lock leaves another blocked on that lock for ever, and ``shutdown(wait=True)`` with it (seen once in
    three runs of tests/e2e/test_workers.py's killed-process test). Workers still alive after ``grace`` seconds
    are killed; decoding is pure, so nothing is lost."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("decoding process %d did not stop within %.0f s; killed", process.pid, grace)
            process.kill()
            process.join(5)
