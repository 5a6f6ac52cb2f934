"""Where the heavy part of a page is done: a feature's archived history (every archived window read and compared)
and its charts (matplotlib), in a process of their own (``ui.draw_processes``).

Page threads keep pages from queueing behind ingest, but not ingest from waiting on pages: a page thread drawing
holds the interpreter lock most of the time, and the event loop and the export handlers wait for it (64 concurrent
feature pages took an OTLP/HTTP export's p99 from 27 ms to 718 ms, docs/benchmarks.md). In another process the
drawing takes a core, not the lock. The functions here take and return plain data (dicts, lists, strings), so
what crosses the process boundary is small: one feature's reference sketch and the page's numbers.

>>> drawing = Drawing(processes=0)  # 0: in the calling thread (tests, tiny deployments)
>>> drawing.call(pow, 2, 10)
1024
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from otel_ml.analyze.drift import DriftConfig
from otel_ml.http_server import Busy
from otel_ml.lifetime import exit_with_parent
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import profile_from_dict
from otel_ml.read.archive import live_window_ns, open_read_only
from otel_ml.read.compare import feature_history
from otel_ml.ui import pages

log = logging.getLogger(__name__)

T = TypeVar("T")


class Drawing:
    """Runs drawing functions in ``processes`` worker processes (spawned: the processor's threads are not
    forked), or in the calling thread with 0. A worker that dies is replaced and the call raises ``Busy`` (the
    page answers 503 with Retry-After)."""

    def __init__(self, processes: int = 1) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        """The worker processes, started with the first page that needs them: importing matplotlib takes a
        second or two of CPU, which a replica starting beside others during a rebalance should not spend (the
        first feature page waits for it instead)."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_quiet_worker)
                pids = {self._pool.submit(os.getpid).result(timeout=120) for _ in range(self.processes)}
                log.info("feature pages drawn in process(es) %s (ui.draw_processes)",
                         ", ".join(map(str, sorted(pids))))
            return self._pool

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.processes:
            return fn(*args)
        pool = self._executor()
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool as e:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            log.error("a page-drawing process died (%s); a new one is started", e)
            raise Busy("the page-drawing process died; retry", 1.0) from e

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _quiet_worker() -> None:
    """Workers log warnings only (their own lines would interleave with the processor's), and end with it."""
    exit_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[drawing]: %(message)s")


def archive_history(state_dir: str, model: str, version: str, feature: str, reference_feature: dict[str, Any],
                    start_ns: int, end_ns: int, drift: DriftConfig, threshold: float | None,
                    effect_size: dict[str, str] | None) -> dict[str, Any] | None:
    """``feature_history`` over the archive of ``state_dir`` against one reference feature (as ``to_dict`` gives
    it); None when there is no state database yet."""
    try:
        conn = open_read_only(state_dir)
    except FileNotFoundError:
        return None
    try:
        reference = ModelProfile(model, version)
        reference.features[feature] = profile_from_dict(reference_feature)
        out: dict[str, Any] = feature_history(conn, model, version, feature, reference, start_ns, end_ns,
                                              live_window_ns(conn), drift, threshold, effect_size=effect_size)
    finally:
        conn.close()
    return out


def feature_page(*args: Any) -> str:
    """``pages.feature_page`` (the charts are drawn here)."""
    return pages.feature_page(*args)
