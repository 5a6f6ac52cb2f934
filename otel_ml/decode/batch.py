"""The columnar batch: what every decoder produces and everything after decoding consumes."""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from otel_ml import semconv

M = TypeVar("M", bound=Message)

RECORD_MAGIC = b"OMR1"
SPAN_IDS_BYTES = 24
"""A span's trace id (16 bytes) then its span id (8): what an exemplar points at (profile/exemplars.py)."""


def span_ids(trace_id: bytes, span_id: bytes) -> bytes:
    """The ``SPAN_IDS_BYTES`` of a span; an id of the wrong length (invalid in OTLP) is zeros, as none.

    >>> span_ids(bytes(range(16)), b"\\x01" * 8).hex()[-20:], span_ids(b"", b"x") == bytes(SPAN_IDS_BYTES)
    ('0e0f0101010101010101', True)
    """
    return (trace_id if len(trace_id) == 16 else bytes(16)) + (span_id if len(span_id) == 8 else bytes(8))


def parse_protobuf(message_type: type[M], data: bytes | bytearray | memoryview) -> M:
    """``data`` parsed as ``message_type``; ValueError (not protobuf's DecodeError) when it is not one."""
    msg = message_type()
    try:
        msg.ParseFromString(bytes(data))
    except DecodeError as e:
        raise ValueError(str(e) or "not a protobuf message") from e
    return msg


@dataclass
class ColumnarBatch:
    """Rows of one (model, version) from one OTLP request, one numpy array per column.

    A row is one prediction: a plain span is one row, a batch span (``ml.batch.size`` = N) is N rows.
    A feature may appear in ``numeric``, in ``categorical`` or in both (when senders disagree on its
    type); the profile decides which kind the feature is and counts the other as type mismatches.
    """

    model: str
    version: str
    n_rows: int
    row_time_ns: np.ndarray
    """int64, event time of each row (end time of its span)."""
    row_weight: np.ndarray
    """float64, 1 / sampling ratio of each row: the number of predictions it stands for."""
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    """float64 per feature; NaN where the value is missing, non-finite or not numeric."""
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    """str per feature; ``""`` where the value is missing or not categorical."""
    invalid: Counter[str] = field(default_factory=Counter)
    """Values per feature that are neither numeric nor categorical (bytes, maps, nested arrays, ±inf)."""
    span_end_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    span_duration_s: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    """float64 per span; NaN where the span has no usable start/end time."""
    span_error: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    """bool per span: span status is ERROR."""
    span_stream: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """int64 per span: ``ml.sequence.stream``, 0 where the span has no sequence (or empty: no span has one)."""
    span_seq: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """int64 per span: ``ml.sequence`` (-1 without one); same length as ``span_stream``."""
    span_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """int64 per span: predictions in the span; same length as ``span_stream``."""
    span_ids: np.ndarray = field(default_factory=lambda: np.empty((0, SPAN_IDS_BYTES), np.uint8))
    """uint8 per span, ``SPAN_IDS_BYTES`` each: its trace and span ids (``span_ids``), for exemplars; empty when the
    rows came from elsewhere (a baseline's file)."""
    prediction_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    """uint64 per row: hash of (model, ``ml.prediction.id``), 0 without one; empty when no row has one."""
    call_alias: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    """uint64 per row: an LLM call's second key, the hash of its ``gen_ai.response.id`` (decode/evaluations.py), 0
    without one; empty when no row has one."""
    embedding_dimension: int = 0
    """The dimension of the batch's ``ml.embedding`` vectors (one per model in a request), 0 without any: a model
    whose embeddings change dimension between requests has its later ones refused (core/live.py)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    def feature_names(self) -> set[str]:
        """What is profiled: every column but a segment key's (``ml.segment.<key>``: what rows are segmented by)."""
        return {name for name in (*self.numeric, *self.categorical, *self.invalid)
                if not name.startswith(semconv.SEGMENT_COLUMN_PREFIX)}

    def segment_keys(self) -> list[str]:
        """The ``ml.segment.<key>`` keys the batch's spans carry (by name)."""
        return sorted({name.removeprefix(semconv.SEGMENT_COLUMN_PREFIX) for name in (*self.numeric, *self.categorical)
                       if name.startswith(semconv.SEGMENT_COLUMN_PREFIX)})

    def select(self, rows: np.ndarray, spans: np.ndarray) -> ColumnarBatch:
        """The sub-batch of the given rows and spans (boolean masks); used to split by window."""
        return ColumnarBatch(
            model=self.model,
            version=self.version,
            n_rows=int(rows.sum()),
            row_time_ns=self.row_time_ns[rows],
            row_weight=self.row_weight[rows],
            numeric={k: v[rows] for k, v in self.numeric.items()},
            categorical={k: v[rows] for k, v in self.categorical.items()},
            # Invalid values are not positioned; they stay with the first sub-batch only (see split_by_window).
            invalid=Counter(),
            span_end_ns=self.span_end_ns[spans],
            span_duration_s=self.span_duration_s[spans],
            span_error=self.span_error[spans],
            **({"span_stream": self.span_stream[spans], "span_seq": self.span_seq[spans]}
               if len(self.span_stream) else {}),
            **({"span_rows": self.span_rows[spans]} if len(self.span_rows) else {}),
            **({"span_ids": self.span_ids[spans]} if len(self.span_ids) else {}),
            **({"prediction_id": self.prediction_id[rows]} if len(self.prediction_id) else {}),
            **({"call_alias": self.call_alias[rows]} if len(self.call_alias) else {}),
            embedding_dimension=self.embedding_dimension,
        )

    def row_spans(self) -> np.ndarray | None:
        """The span of each row (int64), or None when the batch does not say (no ``span_rows``).

        >>> b = ColumnarBatch("m", "1", 3, np.zeros(3, np.int64), np.ones(3), span_end_ns=np.zeros(2, np.int64),
        ...                   span_rows=np.array([2, 1]))
        >>> b.row_spans().tolist()
        [0, 0, 1]
        """
        if len(self.span_rows) != len(self.span_end_ns) or int(self.span_rows.sum()) != self.n_rows:
            return np.arange(self.n_rows) if self.n_rows == len(self.span_end_ns) else None
        return np.repeat(np.arange(len(self.span_rows)), self.span_rows)

    def row_span_ids(self) -> np.ndarray | None:
        """Each row's span's trace and span ids (rows × ``SPAN_IDS_BYTES``, uint8), or None when the batch keeps
        none (``span_ids`` empty) or does not say which span a row is in.

        >>> ids = np.arange(48, dtype=np.uint8).reshape(2, 24)
        >>> b = ColumnarBatch("m", "1", 3, np.zeros(3, np.int64), np.ones(3), span_end_ns=np.zeros(2, np.int64),
        ...                   span_rows=np.array([2, 1]), span_ids=ids)
        >>> b.row_span_ids()[:, 0].tolist()
        [0, 0, 24]
        """
        if not len(self.span_ids) or len(self.span_ids) != len(self.span_end_ns):
            return None
        spans = self.row_spans()
        return None if spans is None else self.span_ids[spans]

    def split_by_window(self, window_ns: int) -> dict[int, ColumnarBatch]:
        """Sub-batches keyed by window start (ns), for tumbling event-time windows of ``window_ns``."""
        row_win = (self.row_time_ns // window_ns) * window_ns
        span_win = (self.span_end_ns // window_ns) * window_ns
        starts = np.unique(np.concatenate([row_win, span_win]))
        if len(starts) == 1:
            return {int(starts[0]): self}
        parts = {int(s): self.select(row_win == s, span_win == s) for s in starts}
        parts[int(starts[-1])].invalid = Counter(self.invalid)
        return parts


ID_TEXT_SAMPLE = 16
"""Labels per batch whose id is kept as sent (``LabelBatch.id_text``)."""


@dataclass
class LabelBatch:
    """Ground truth for predictions of one model (version optional): one row per label."""

    model: str
    version: str
    """``""`` when the label did not say; the prediction's version is used."""
    prediction_id: np.ndarray
    """uint64, ``id_hash`` of (model, ``ml.prediction.id``)."""
    value: np.ndarray
    """float64 label where it is a number, NaN otherwise."""
    label: np.ndarray
    """str label where it is a string or bool, ``""`` otherwise."""
    time_ns: np.ndarray
    """int64, when the label was observed (span end, log record time)."""
    id_text: np.ndarray | None = None
    """The ``ml.prediction.id`` as sent (str) of the *first* labels of the batch (at most ``ID_TEXT_SAMPLE``: row i
    has text ``id_text[i]`` when i < len(id_text)): what a label that does not join is shown and diagnosed by
    (labels/diagnosis.py), a few examples being enough; every label's text would cost ~15% of label ingest (the
    journal). None where the decoder had none (labels that waited keep only their hash)."""

    @property
    def n_rows(self) -> int:
        return len(self.prediction_id)

    def select(self, rows: np.ndarray) -> LabelBatch:
        """The labels at ``rows`` (a mask, or ascending indices); the sampled texts of those kept stay first."""
        text = self.id_text
        if text is not None:
            text = text[rows[:len(text)]] if rows.dtype == bool else text[rows[rows < len(text)]]
        return LabelBatch(self.model, self.version, self.prediction_id[rows], self.value[rows], self.label[rows],
                          self.time_ns[rows], text)


@dataclass
class DecodeResult:
    """What a decoder made of one ExportTraceServiceRequest."""

    batches: list[ColumnarBatch]
    spans_received: int = 0
    spans_accepted: int = 0
    spans_ignored: int = 0
    """Spans without ``ml.model.name``: ordinary traffic, not errors."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Rejected ML spans by reason."""
    examples: dict[str, str] = field(default_factory=dict)
    """One human-readable example per rejection reason, for the partial_success message."""
    seq: int = 0
    """Journal sequence number once the request was applied (0: not journaled)."""
    labels: list[LabelBatch] = field(default_factory=list)
    """Ground truth in the request (spans or log records carrying ``ml.ground_truth``)."""
    offsets: list[tuple[str, int, int]] = field(default_factory=list)
    """(topic, partition, offset) of the Kafka message this came from: journaled with it (receiver/kafka.py)."""
    skipped_messages: Counter[str] = field(default_factory=Counter)
    """Kafka messages left out, by reason (not_otlp, too_large): journaled too, so counted once."""
    received_ns: int = 0
    """The processor's clock when the request was decoded (journaled): no span of it moves the processor's event
    clock past this, so a client whose clock runs ahead (within the skew limit) cannot age every other model."""
    routed: bool = False
    """Shared Kafka mode: rows and labels sent to the partition their prediction id hashes to, to meet there;
    their windows were counted where they came in, so only the join applies them."""

    @property
    def spans_rejected(self) -> int:
        return sum(self.rejected.values())

    def message(self) -> str:
        """The OTLP partial_success error message: every reason with its count and one example."""
        parts = [f"{reason}: {n} span(s)" + (f", e.g. {self.examples[reason]}" if self.examples.get(reason) else "")
                 for reason, n in sorted(self.rejected.items())]
        return "; ".join(parts)

    # --- the journal record: what was applied, so a replay applies exactly that -----------------------
    def refuse(self, spans: int, reason: str, example: str) -> None:
        """Spans the decoder accepted, refused after all (a model over the limit, another embedding dimension):
        counted as rejected for ``reason``, the first ``example`` kept for the sender's partial_success."""
        self.rejected[reason] += spans
        self.spans_accepted -= spans
        self.examples.setdefault(reason, example)

    def to_bytes(self) -> bytes:
        """This result as the journal stores it: counts and batches, arrays as raw little-endian bytes.

        About 3.5× smaller than the OTLP request it came from (no ids, names, keys or non-ML attributes),
        and already privacy-hashed. ``from_bytes`` reads it back.

        >>> b = ColumnarBatch("m", "1", 2, np.array([5, 5]), np.ones(2), numeric={"x": np.array([1.0, np.nan])},
        ...                   categorical={"c": np.array(["a", "bc"])}, span_end_ns=np.array([5]),
        ...                   span_duration_s=np.array([0.1]), span_error=np.array([False]))
        >>> r = DecodeResult.from_bytes(DecodeResult([b], spans_received=1, spans_accepted=1).to_bytes())
        >>> r.spans_accepted, r.batches[0].numeric["x"].tolist(), r.batches[0].categorical["c"].tolist()
        (1, [1.0, nan], ['a', 'bc'])
        """
        meta = {"received": self.spans_received, "accepted": self.spans_accepted, "ignored": self.spans_ignored,
                "rejected": dict(self.rejected), "batches": [], "received_ns": self.received_ns,
                **({"routed": True} if self.routed else {}),
                **({"offsets": [list(o) for o in self.offsets]} if self.offsets else {}),
                **({"skipped": dict(self.skipped_messages)} if self.skipped_messages else {}),
                **({"examples": self.examples} if self.examples else {})}
        arrays: list[np.ndarray] = []
        for b in self.batches:
            sequenced = bool(len(b.span_stream)) and bool(b.span_stream.any())
            with_ids = len(b.span_ids) == len(b.span_end_ns) > 0
            # One row a span (record()): the spans' rows need not be written for the ids to be placed.
            spans_rows = not sequenced and len(b.span_rows) == len(b.span_end_ns) and (
                bool(b.span_error.any()) or (with_ids and b.n_rows != len(b.span_end_ns)))
            meta["batches"].append({
                "model": b.model, "version": b.version, "n_rows": b.n_rows, "n_spans": len(b.span_end_ns),
                "numeric": list(b.numeric), "categorical": [[k, v.dtype.str] for k, v in b.categorical.items()],
                "invalid": dict(b.invalid), **({"sequenced": True} if sequenced else {}),
                **({"error_rows": True} if spans_rows else {}),
                **({"span_ids": True} if with_ids else {}),
                **({"ids": True} if len(b.prediction_id) else {}),
                **({"aliases": True} if len(b.call_alias) else {}),
                **({"dimension": b.embedding_dimension} if b.embedding_dimension else {})})
            arrays += [b.row_time_ns.astype("<i8", copy=False), b.row_weight.astype("<f8", copy=False),
                       b.span_end_ns.astype("<i8", copy=False), b.span_duration_s.astype("<f8", copy=False),
                       b.span_error.astype("|b1", copy=False)]
            if sequenced:  # records written before sequences existed, and most batches, carry none
                arrays += [b.span_stream.astype("<i8", copy=False), b.span_seq.astype("<i8", copy=False),
                           b.span_rows.astype("<i8", copy=False)]
            elif spans_rows:  # failed spans' rows (the error ratio is by rows), the rows the ids belong to
                arrays.append(b.span_rows.astype("<i8", copy=False))
            if with_ids:
                arrays.append(b.span_ids)
            if len(b.prediction_id):
                arrays.append(b.prediction_id.astype("<u8", copy=False))
            if len(b.call_alias):
                arrays.append(b.call_alias.astype("<u8", copy=False))
            arrays += [v.astype("<f8", copy=False) for v in b.numeric.values()]
            arrays += list(b.categorical.values())
        if self.labels:
            meta["labels"] = [{"model": lb.model, "version": lb.version, "n": lb.n_rows, "label": lb.label.dtype.str,
                               **({"id_text": lb.id_text.dtype.str, "n_text": len(lb.id_text)}
                                  if lb.id_text is not None else {})}
                              for lb in self.labels]
            for lb in self.labels:
                arrays += [lb.prediction_id.astype("<u8", copy=False), lb.value.astype("<f8", copy=False), lb.label,
                           lb.time_ns.astype("<i8", copy=False)]
                if lb.id_text is not None:
                    arrays.append(lb.id_text)
        header = json.dumps(meta, separators=(",", ":")).encode()
        # The arrays' buffers are joined as they are: no tobytes() copy of each first.
        return b"".join([RECORD_MAGIC, struct.pack("<I", len(header)), header,
                         *(np.ascontiguousarray(a) for a in arrays)])

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> DecodeResult:
        """Read a ``to_bytes`` record; raises ValueError when ``data`` is not one."""
        if data[:4] != RECORD_MAGIC:
            raise ValueError("not an otel-ml journal record")
        try:
            (size,) = struct.unpack_from("<I", data, 4)
            meta = json.loads(bytes(data[8:8 + size]))
            buf = bytearray(data)  # writable arrays, as the decoder's are
            at = 8 + size

            def take(dtype: str | np.dtype, count: int) -> np.ndarray:
                nonlocal at
                arr = np.frombuffer(buf, dtype=dtype, count=count, offset=at)
                at += arr.nbytes
                return arr

            batches = []
            for m in meta["batches"]:
                n, spans = m["n_rows"], m["n_spans"]
                batch = ColumnarBatch(
                    model=m["model"], version=m["version"], n_rows=n, row_time_ns=take("<i8", n),
                    row_weight=take("<f8", n), span_end_ns=take("<i8", spans), span_duration_s=take("<f8", spans),
                    span_error=take("|b1", spans), invalid=Counter(m["invalid"]))
                if m.get("sequenced"):
                    batch.span_stream, batch.span_seq, batch.span_rows = (take("<i8", spans) for _ in range(3))
                elif m.get("error_rows"):
                    batch.span_rows = take("<i8", spans)
                if m.get("span_ids"):
                    batch.span_ids = take("|u1", spans * SPAN_IDS_BYTES).reshape(spans, SPAN_IDS_BYTES)
                batch.embedding_dimension = int(m.get("dimension", 0))
                if m.get("ids"):
                    batch.prediction_id = take("<u8", n)
                if m.get("aliases"):
                    batch.call_alias = take("<u8", n)
                batch.numeric = {name: take("<f8", n) for name in m["numeric"]}
                batch.categorical = {name: take(dtype, n) for name, dtype in m["categorical"]}
                batches.append(batch)
            labels = [LabelBatch(m["model"], m["version"], take("<u8", m["n"]), take("<f8", m["n"]),
                                 take(m["label"], m["n"]), take("<i8", m["n"]),
                                 take(m["id_text"], m.get("n_text", m["n"])) if "id_text" in m else None)
                      for m in meta.get("labels", [])]
            if at != len(data):
                raise ValueError(f"{len(data) - at} bytes left over")
        except (KeyError, TypeError, struct.error, json.JSONDecodeError) as e:
            raise ValueError(f"corrupt journal record: {e}") from e
        return cls(batches=batches, spans_received=meta["received"], spans_accepted=meta["accepted"],
                   spans_ignored=meta["ignored"], rejected=Counter(meta["rejected"]), labels=labels,
                   offsets=[(str(t), int(p), int(o)) for t, p, o in meta.get("offsets", [])],
                   skipped_messages=Counter(meta.get("skipped", {})), received_ns=int(meta.get("received_ns", 0)),
                   routed=bool(meta.get("routed", False)), examples=dict(meta.get("examples", {})))
