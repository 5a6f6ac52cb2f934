"""Whether the processor can keep what it is sent: failed state writes, counted and logged once per episode."""

from __future__ import annotations

import logging
import threading

from otel_ml import semconv as sc
from otel_ml.core.counters import Counters

log = logging.getLogger(__name__)

STORAGE_OPS = ("journal", "checkpoint", "reference")
"""What ``otel_ml.storage.errors`` counts by ``op``: request journal (or, in shared mode, the input topic),
checkpoint (or changelog publication; windows, archive), pinned reference files."""


class StorageHealth:
    """Per op, what its last write failed with, until one succeeds again. ``consequences`` says, per op, what a
    failure means in the chosen state backend (the log line an operator reads).

    >>> h = StorageHealth(Counters(), "/tmp/x", {"journal": "requests are refused"})
    >>> h.readiness()
    (True, 'ready')
    >>> h.failed("journal", OSError(28, "No space left on device"))
    >>> h.readiness()[0], h.healthy()
    (False, False)
    """

    def __init__(self, counters: Counters, where: str, consequences: dict[str, str]) -> None:
        self.counters = counters
        self.where = where
        self.consequences = consequences
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}
        for op in STORAGE_OPS:
            counters.count(sc.METRIC_STORAGE_ERRORS, 0, {"op": op})

    def failed(self, op: str, cause: BaseException) -> None:
        """Count a failed write; log it once per episode of ``op`` (a full disk fails every request)."""
        self.counters.count(sc.METRIC_STORAGE_ERRORS, 1, {"op": op})
        with self._lock:
            first = op not in self._failing
            self._failing[op] = f"{type(cause).__name__}: {cause}"
        if first:
            log.error("cannot write state in %s (%s: %s): %s", self.where, op, cause,
                      self.consequences.get(op, "retried"))

    def succeeded(self, op: str) -> None:
        if op not in self._failing:  # the common case, without the lock
            return
        with self._lock:
            was = self._failing.pop(op, None)
        if was is not None:
            log.warning("state writes (%s) succeed again after: %s", op, was)

    def healthy(self) -> bool:
        return not self._failing

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): not ready while requests cannot be made durable (they are refused)."""
        failure = self._failing.get("journal")
        if failure is not None:
            return False, f"state storage failing ({failure}); requests are refused with RetryInfo"
        return True, "ready"
