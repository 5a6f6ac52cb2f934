"""Which span a waiting prediction came in: what a wrong prediction's example points at (issue 46).

A waiting prediction's row (labels/pending.py, 36 bytes) has no room for its span's ids, and giving every row 24
more bytes would add two thirds to ``labels.max_pending``'s disk. The ingest keeps span ids for one request a second
per model and version (receiver/ingest.py); of such a request's predictions with an id, the ``ROWS_PER_REQUEST``
with the lowest id hashes (a uniform sample: ids are hashes) keep their span here, 32 bytes each, in sealed
``spans`` segments of the pending store's directory, sorted by id like the others. When a label finds its prediction
wrong, ``of`` says whether that prediction's span is known.

Bounds: at most ``max_rows`` rows (``labels.max_pending`` / 10 by default: 5,000,000 rows, 160 MB), the oldest
segments evicted first; a segment expires with the waiting predictions (``labels.ttl_seconds`` of its models'
clocks). The segments are named by the checkpoint with the rest of the pending store (a damaged one loses only
its spans: those wrong predictions show no trace).

>>> import tempfile
>>> spans = PredictionSpans(SegmentFiles(tempfile.mkdtemp()), max_rows=100)
>>> ids = np.array([7, 3, 9], np.uint64)
>>> span = np.arange(72, dtype=np.uint8).reshape(3, 24)
>>> spans.add("m", ids, np.array([5, 5, 6]), span)
>>> found, of = spans.of(np.array([3, 4], np.uint64))
>>> found.tolist(), of[0, 0].item()
([True, False], 24)
>>> spans.seal(); [s.kind for s in spans.files.segments], spans.of(np.array([9], np.uint64))[1][0, 0].item()
(['spans'], 48)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from otel_ml.decode.batch import SPAN_IDS_BYTES
from otel_ml.labels.segments import Segment, SegmentFiles

ROWS_PER_REQUEST = 8
"""Predictions of an id-keeping request whose spans are kept, at most: a request of 512 spans would otherwise fill
the store 64 times as fast, with rows of one moment."""


class PredictionSpans:
    """The sampled spans of waiting predictions, in ``files`` (shared with the pending store)."""

    def __init__(self, files: SegmentFiles, max_rows: int, rows_per_request: int = ROWS_PER_REQUEST) -> None:
        self.files = files
        self.max_rows = max_rows
        self.rows_per_request = rows_per_request
        self._buf: list[tuple[np.ndarray, np.ndarray]] = []
        self._buf_models: dict[str, int] = {}
        """Per model of the rows in memory, their newest event time (a segment expires by its models' clocks)."""

    def add(self, model: str, ids: np.ndarray, time_ns: np.ndarray, span_ids: np.ndarray) -> None:
        """Keep the spans of some of one request's predictions (``ids``: kept ids, never 0; ``span_ids``: each
        row's span, rows × ``SPAN_IDS_BYTES``)."""
        if not len(ids):
            return
        pick = np.argsort(ids, kind="stable")[:self.rows_per_request]
        pick = pick[span_ids[pick, :16].any(axis=1)]  # a span without a trace id points nowhere
        if not len(pick):
            return
        self._buf.append((ids[pick], np.ascontiguousarray(span_ids[pick], np.uint8)))
        self._buf_models[model] = max(self._buf_models.get(model, 0), int(time_ns[pick].max()))

    def of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id, whether its span is kept, and the span's ids (zeros where not)."""
        found = np.zeros(len(ids), bool)
        out = np.zeros((len(ids), SPAN_IDS_BYTES), np.uint8)
        # Every part is sorted by id (segments as written, the buffer's as added); the newest first: an id sent
        # again points at its latest span.
        parts = [(s.cols["id"], s.cols["span"]) for s in self.segments] + self._buf
        for sid, span in reversed(parts):
            if not len(sid) or found.all():
                continue
            pos = np.minimum(np.searchsorted(sid, ids), len(sid) - 1)
            hit = ~found & (np.asarray(sid[pos]) == ids)
            if hit.any():
                out[hit] = np.asarray(span[pos[hit]])
                found |= hit
        return found, out

    @property
    def segments(self) -> list[Segment]:
        return self.files.of_kind("spans")

    def rows(self) -> int:
        return sum(len(i) for i, _ in self._buf) + sum(s.n for s in self.segments)

    def seal(self) -> None:
        """Write the rows in memory as one segment, sorted by id."""
        if not self._buf:
            return
        ids = np.concatenate([i for i, _ in self._buf])
        span = np.concatenate([s for _, s in self._buf])
        order = np.argsort(ids, kind="stable")
        self.files.write("spans", {"id": ids[order], "span": span[order]}, np.zeros(0, bool), "",
                         dict(self._buf_models), max(self._buf_models.values()))
        self.clear()

    def maintain(self, expired: Callable[[Segment], bool]) -> None:
        """Drop segments past the labels' wait, then the oldest while over ``max_rows``."""
        for seg in [s for s in self.segments if expired(s)]:
            self.files.segments.remove(seg)
        total = self.rows()
        for seg in self.segments:  # oldest first
            if total <= self.max_rows:
                break
            self.files.segments.remove(seg)
            total -= seg.n

    def clear(self) -> None:
        """Forget the rows in memory (sealed, or a restore: the journal's replay brings them back)."""
        self._buf, self._buf_models = [], {}
