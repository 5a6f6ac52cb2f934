"""A model's profile: one feature profile per feature plus volume and operational counts.

The same class is a window, a merged horizon, and a baseline (reference) file.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.comoments import Comoments
from otel_ml.profile.exemplars import SLOTS, BatchRows, Exemplars
from otel_ml.profile.performance import PerformanceReference
from otel_ml.profile.reconstruction import Reconstruction
from otel_ml.profile.segments import SegmentCounts
from otel_ml.profile.sketch import (
    CATEGORICAL,
    GRID_MIN_VALUES,
    NUMERIC,
    CategoricalProfile,
    FeatureProfile,
    Grid,
    NumericProfile,
    SketchConfig,
    choose_grid,
    new_profile,
    profile_from_dict,
)
from otel_ml.profile.values import categorical_values, numeric_values
from otel_ml.sealed import opened
from otel_ml.semconv import ATTRIBUTION_COLUMN_PREFIX

PROFILE_FORMAT = "otel-ml-profile"
PROFILE_FORMAT_VERSION = 1
MAX_SEQUENCE_STREAMS = 1024
"""Senders (``ml.sequence.stream``) whose sequences one profile tracks; a sender past this is not tracked (its
predictions are profiled as usual, only their loss is not measured)."""


class SequenceCoverage:
    """Which predictions of each sender arrived: per ``ml.sequence.stream`` the lowest sequence seen, one past
    the highest, and how many predictions arrived. What lies between and did not arrive was lost on the way.

    >>> c = SequenceCoverage()
    >>> c.update(np.array([7, 7, 7]), np.array([0, 1, 5]), np.array([1, 1, 3]))  # 0, 1, then 5..7
    >>> other = SequenceCoverage()
    >>> other.update(np.array([7]), np.array([3]), np.array([1]))  # 3 came later: 2 and 4 never did
    >>> c.merge(other)
    >>> c.expected(), c.lost()
    (8, 2)
    """

    def __init__(self) -> None:
        self.streams: dict[int, list[int]] = {}
        """stream → [first, end, arrived]."""

    def update(self, stream: np.ndarray, seq: np.ndarray, rows: np.ndarray) -> None:
        has = stream != 0
        if not has.any():
            return
        stream, seq, end = stream[has], seq[has], seq[has] + rows[has]
        for s in np.unique(stream).tolist():
            mine = stream == s
            self._add(s, int(seq[mine].min()), int(end[mine].max()), int(rows[has][mine].sum()))

    def _add(self, stream: int, first: int, end: int, arrived: int) -> None:
        cur = self.streams.get(stream)
        if cur is None:
            if len(self.streams) < MAX_SEQUENCE_STREAMS:
                self.streams[stream] = [first, end, arrived]
            return
        cur[0], cur[1], cur[2] = min(cur[0], first), max(cur[1], end), cur[2] + arrived

    def merge(self, other: SequenceCoverage) -> None:
        for stream, (first, end, arrived) in other.streams.items():
            self._add(stream, first, end, arrived)

    def expected(self) -> int:
        """Predictions the senders recorded between the first and the last that arrived."""
        return sum(end - first for first, end, _ in self.streams.values())

    def lost(self) -> int:
        """Of those, the ones that did not arrive (a prediction delivered twice can hide one that was lost)."""
        return sum(max(0, end - first - arrived) for first, end, arrived in self.streams.values())

    def to_dict(self) -> dict[str, list[int]]:
        return {str(k): v for k, v in self.streams.items()}

    @classmethod
    def from_dict(cls, d: dict[str, list[int]]) -> SequenceCoverage:
        c = cls()
        c.streams = {int(k): [int(x) for x in v] for k, v in d.items()}
        return c


def choose_kind(batch: ColumnarBatch, name: str) -> str:
    """The kind of a feature seen for the first time: whichever type has more values in the batch; an attribution
    (``attribution.<feature>``) is a number whatever arrives, so text there counts as mismatched values.

    >>> text = {"attribution.x": np.array(["a", "b"])}
    >>> choose_kind(ColumnarBatch("m", "", 2, np.zeros(2, np.int64), np.ones(2), categorical=text), "attribution.x")
    'numeric'
    """
    if name.startswith(ATTRIBUTION_COLUMN_PREFIX):
        return NUMERIC
    n_num = int((~np.isnan(batch.numeric[name])).sum()) if name in batch.numeric else 0
    n_cat = int((batch.categorical[name] != "").sum()) if name in batch.categorical else 0
    return CATEGORICAL if n_cat > n_num else NUMERIC


def _exemplar_rows(batch: ColumnarBatch) -> BatchRows | None:
    """Where a batch's rows came from, for exemplars; None when its spans carry no ids or rows cannot be placed."""
    if not len(batch.span_ids) or len(batch.span_ids) != len(batch.span_end_ns):
        return None
    if batch.n_rows == len(batch.span_end_ns):  # a row a span (record()): row i is span i
        return BatchRows(batch.row_time_ns, None, batch.span_ids)
    spans = batch.row_spans()
    return None if spans is None else BatchRows(batch.row_time_ns, spans, batch.span_ids)


class ModelProfile:
    """Profiles of every feature of one (model, version) over some span of event time.

    >>> from otel_ml.decode.batch import ColumnarBatch
    >>> b = ColumnarBatch("m", "1", 3, np.zeros(3, np.int64), np.ones(3),
    ...                   numeric={"x": np.array([1.0, 2.0, 3.0])}, categorical={"c": np.array(["a", "b", "a"])})
    >>> p = ModelProfile("m", "1")
    >>> p.update(b, {"x": "numeric", "c": "categorical"})
    >>> p.rows, p.features["x"].count, p.features["c"].frequencies()
    (3, 3, {'a': 2, 'b': 1})
    """

    def __init__(self, model: str, version: str, config: SketchConfig | None = None,
                 grids: dict[str, Grid] | None = None) -> None:
        self.grids: dict[str, Grid] = grids if grids is not None else {}
        """Each numeric feature's binning (``choose_grid``), chosen from the first batch with enough values; the
        windows of one model share one dict, so their exact bin counts add up."""
        self.model = model
        self.version = version
        self.config = config or SketchConfig()
        self.rows = 0
        self.predictions = 0.0
        """Rows scaled by 1/sampling ratio: predictions the model made."""
        self.spans = 0
        self.error_spans = 0
        self.error_rows = 0
        """Rows (predictions) of the spans with status ERROR: a failed 10-row batch is 10 failed predictions."""
        self.latency = ds.kll_doubles_sketch(self.config.kll_k)
        """Span durations in seconds."""
        self.sequences = SequenceCoverage()
        """Which predictions arrived, per sender (``ml.sequence``): what the senders' SDKs or a Collector lost."""
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.features: dict[str, FeatureProfile] = {}
        self.chunks: list[ModelProfile] = []
        """Consecutive parts of a reference (baselines, pinned references), for thresholds learned from the
        reference's own variability; empty for windows and horizons, and not merged."""
        self.performance: PerformanceReference | None = None
        """A baseline's labelled performance and calibration map (``baseline build --target-column``)."""
        self.reconstruction: Reconstruction | None = None
        """A baseline's PCA of its features (``baseline build --multivariate``): rows' reconstruction errors."""
        self.comoments: Comoments | None = None
        """Pairwise moments of a few numeric features (their correlations; profile/comoments.py), when the window set
        keeps them."""
        self.segments: SegmentCounts | None = None
        """Per-segment exact counts (profile/segments.py), when the model is segmented."""
        self.absolute_sums: dict[str, tuple[float, int]] = {}
        """(Σ|x|, values summed) of each attribution column (``attribution.<feature>``): the exact mean absolute
        attribution, the feature's global importance (analyze/attribution.py); empty for other models. The count is
        the sum's own, not the column profile's: a window that kept no sum (a feature named ``attribution.x``
        before attributions existed) merged into a horizon adds values to the profile but not to the sum."""
        self.exemplars = Exemplars()
        """Example spans per feature (profile/exemplars.py): where a drift's trace can be found; empty for a
        profile of rows without span ids (a baseline's file)."""
        self.learned_thresholds: dict[str, dict[str, float]] | None = None
        """Cache of analyze.drift.learned_thresholds for a reference (a reference does not change once set)."""

    def drop_features(self, names: set[str]) -> None:
        """Leave ``names`` out of this profile and its chunks (``baseline build`` dropping id-like columns)."""
        for profile in (self, *self.chunks):
            for name in names:
                profile.features.pop(name, None)
                profile.grids.pop(name, None)
                profile.absolute_sums.pop(name, None)
            profile.exemplars.drop(names)
            if profile.comoments is not None:
                profile.comoments = profile.comoments.without(names)
            if profile.segments is not None:
                for name in names:
                    for table in (profile.segments.cells, profile.segments.moments, profile.segments.kinds):
                        table.pop(name, None)
        self.learned_thresholds = None

    def feature(self, name: str, kind: str) -> FeatureProfile:
        p = self.features.get(name)
        if p is None:
            p = self.features[name] = new_profile(kind, self.config, self.grids.get(name))
        return p

    def update(self, batch: ColumnarBatch, kinds: dict[str, str], correlated: Comoments | None = None,
               segmented: SegmentCounts | None = None) -> None:
        """Add a batch; ``kinds`` (name → numeric/categorical) covers every feature the model has, so a
        feature absent from the batch counts its rows as missing. ``correlated``: the features and basis whose
        pairwise moments are kept (None: none). ``segmented``: how rows are segmented (None: not)."""
        n = batch.n_rows
        self.rows += n
        self.predictions += float(batch.row_weight.sum())
        self.spans += len(batch.span_end_ns)
        self.error_spans += int(batch.span_error.sum())
        if batch.span_error.any():  # the rows of each span are kept whenever one failed (decode/batch.py)
            self.error_rows += int(batch.span_rows[batch.span_error].sum()) if len(batch.span_rows) == len(
                batch.span_error) else int(batch.span_error.sum())
        durations = batch.span_duration_s[~np.isnan(batch.span_duration_s)]
        if len(durations):
            self.latency.update(np.ascontiguousarray(durations))
        if len(batch.span_stream):
            self.sequences.update(batch.span_stream, batch.span_seq, batch.span_rows)
        if len(batch.span_end_ns):
            lo, hi = int(batch.span_end_ns.min()), int(batch.span_end_ns.max())
            self.start_ns = lo if self.start_ns is None else min(self.start_ns, lo)
            self.end_ns = hi if self.end_ns is None else max(self.end_ns, hi)
        numbers: dict[str, np.ndarray] = {}  # each numeric feature's values as its profile reads them
        rows = _exemplar_rows(batch)
        if rows is not None:  # each numeric feature's last row and value in each exemplar band, filled by update
            banded: list[str] = []
            last, last_value = np.full((len(kinds), SLOTS), -1, np.int32), np.empty((len(kinds), SLOTS))
        for name, kind in kinds.items():
            invalid = batch.invalid.get(name, 0)
            num = batch.numeric.get(name)
            cat = batch.categorical.get(name)
            prof: FeatureProfile
            if kind == NUMERIC:
                values, wrong = numeric_values(num, cat, n)
                numbers[name] = values
                # The grid is chosen before the feature's first profile, so that profile counts every value in it.
                if name not in self.features and name not in self.grids and \
                        np.count_nonzero(np.isfinite(values)) >= GRID_MIN_VALUES:
                    self.grids[name] = choose_grid(values)
                prof = self.feature(name, kind)
                counted = prof.count
                bands = None
                if rows is not None and getattr(prof, "grid", None) is not None:
                    bands = (last[len(banded)], last_value[len(banded)])
                    banded.append(name)
                prof.update(values, mismatch=wrong, last=bands)  # type: ignore[call-arg]
                if name.startswith(ATTRIBUTION_COLUMN_PREFIX):
                    total, summed = self.absolute_sums.get(name, (0.0, 0))
                    self.absolute_sums[name] = (total + float(np.nansum(np.abs(values))),
                                                summed + prof.count - counted)
            else:
                prof = self.feature(name, kind)
                distinct, counts, first = prof.update(categorical_values(num, cat, n))  # type: ignore[misc]
                if rows is not None and distinct:
                    self.exemplars.add_categories(name, distinct, counts, first, rows)
            # Unusable values (bytes, maps, ±inf) were not placed in a column; they were counted as missing.
            if invalid:
                prof.missing -= invalid
                prof.mismatch += invalid
        if rows is not None and banded:
            self.exemplars.add_numeric(banded, last[:len(banded)], last_value[:len(banded)], rows)
        if correlated is not None:  # the correlations read a feature as its profile does ("3.5" is 3.5)
            if self.comoments is None:
                self.comoments = correlated.empty_like()
            self.comoments.update(numbers, n)
        if segmented is not None:  # after the features: a grid chosen from this batch bins its segments' values too
            if self.segments is None:
                self.segments = segmented.empty_like()
            self.segments.update(batch, kinds, self.grids)

    def merge(self, other: ModelProfile, segments: bool = True) -> None:
        """Add ``other``; ``segments=False`` leaves its segment counts to the caller (``SegmentCounts.merged`` of
        many windows at once)."""
        self.rows += other.rows
        self.predictions += other.predictions
        self.spans += other.spans
        self.error_spans += other.error_spans
        self.error_rows += other.error_rows
        if not other.latency.is_empty():
            self.latency.merge(other.latency)
        self.sequences.merge(other.sequences)
        if other.start_ns is not None:
            self.start_ns = other.start_ns if self.start_ns is None else min(self.start_ns, other.start_ns)
            self.end_ns = other.end_ns if self.end_ns is None else max(self.end_ns or 0, other.end_ns or 0)
        if other.comoments is not None:
            if self.comoments is None:
                self.comoments = other.comoments.copy()
            else:
                self.comoments.merge(other.comoments)
        if other.segments is not None and segments:
            if self.segments is None:
                self.segments = other.segments.empty_like()
            self.segments.merge(other.segments)
        if other.exemplars:
            self.exemplars.merge(other.exemplars)
        for name, (total, n) in other.absolute_sums.items():
            mine, mine_n = self.absolute_sums.get(name, (0.0, 0))
            self.absolute_sums[name] = (mine + total, mine_n + n)
        for name, prof in other.features.items():
            mine = self.features.get(name)
            if mine is None:
                mine = self.features[name] = prof.empty_like()
            if mine.kind == prof.kind:
                mine.merge(prof)  # type: ignore[arg-type]
            else:
                # The kind changed between windows (e.g. a baseline said otherwise): count as mismatches.
                mine.mismatch += prof.count
                mine.missing += prof.missing + prof.mismatch

    def compact(self) -> None:
        """Keep numeric sketches serialized until they are written to again (a window that stopped filling).
        Categorical sketches stay live: frequent-items maps grow with the categories seen, so a window of a
        low-cardinality feature is already small, and deserializing strings is costly."""
        for prof in self.features.values():
            if isinstance(prof, NumericProfile):
                prof.compact()
        self.exemplars.compact()

    def numeric_grids(self) -> dict[str, Grid]:
        """The grid of each numeric feature whose every value is counted in one."""
        return {name: p.grid for name, p in self.features.items() if isinstance(p, NumericProfile) and p.grid}

    def kinds(self) -> dict[str, str]:
        return {name: p.kind for name, p in self.features.items()}

    def latency_quantile(self, q: float) -> float:
        return float(self.latency.get_quantile(q)) if not self.latency.is_empty() else math.nan

    # --- serialization: a baseline file is exactly this ---------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "format_version": PROFILE_FORMAT_VERSION,
            "model": self.model,
            "model_version": self.version,
            "kll_k": self.config.kll_k,
            "frequent_items_lg_max_map_size": self.config.frequent_items_lg_max_map_size,
            "category_buckets": self.config.category_buckets,
            "rows": self.rows,
            "predictions": self.predictions,
            "spans": self.spans,
            "error_spans": self.error_spans,
            "error_rows": self.error_rows,
            "latency": base64.b64encode(self.latency.serialize()).decode("ascii"),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "features": {name: p.to_dict() for name, p in sorted(self.features.items())},
            **({"sequences": self.sequences.to_dict()} if self.sequences.streams else {}),
            **({"chunks": [c.to_dict() for c in self.chunks]} if self.chunks else {}),
            **({"performance": self.performance.to_dict()} if self.performance is not None else {}),
            **({"reconstruction": self.reconstruction.to_dict()} if self.reconstruction is not None else {}),
            **({"comoments": self.comoments.to_dict()} if self.comoments is not None else {}),
            **({"segments": self.segments.to_dict()} if self.segments is not None else {}),
            **({"absolute_sums": {name: list(pair) for name, pair in self.absolute_sums.items()}}
               if self.absolute_sums else {}),
            **({"exemplars": self.exemplars.to_dict()} if self.exemplars else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelProfile:
        if d.get("format") != PROFILE_FORMAT:
            raise ValueError(f"not an otel-ml profile (format={d.get('format')!r})")
        if int(d.get("format_version", 0)) > PROFILE_FORMAT_VERSION:
            raise ValueError(f"profile format_version {d['format_version']} is newer than this otel-ml reads")
        p = cls(d["model"], d.get("model_version", ""), SketchConfig(
            kll_k=int(d.get("kll_k", 200)),
            frequent_items_lg_max_map_size=int(d.get("frequent_items_lg_max_map_size", 10)),
            category_buckets=int(d.get("category_buckets", SketchConfig.category_buckets))))
        p.rows, p.predictions = int(d["rows"]), float(d["predictions"])
        p.spans, p.error_spans = int(d.get("spans", 0)), int(d.get("error_spans", 0))
        p.error_rows = int(d.get("error_rows", p.error_spans))  # profiles written before rows were counted
        if d.get("latency"):
            p.latency = ds.kll_doubles_sketch.deserialize(base64.b64decode(d["latency"]))
        p.start_ns, p.end_ns = d.get("start_ns"), d.get("end_ns")
        p.features = {name: profile_from_dict(f) for name, f in d["features"].items()}
        p.absolute_sums = {str(name): (float(v[0]), int(v[1])) for name, v in d.get("absolute_sums", {}).items()}
        p.sequences = SequenceCoverage.from_dict(d.get("sequences", {}))
        p.chunks = [cls.from_dict(c) for c in d.get("chunks", [])]
        if d.get("performance"):
            p.performance = PerformanceReference.from_dict(d["performance"])
        if d.get("reconstruction"):
            p.reconstruction = Reconstruction.from_dict(d["reconstruction"])
        if d.get("comoments"):
            p.comoments = Comoments.from_dict(d["comoments"])
        if d.get("segments"):
            p.segments = SegmentCounts.from_dict(d["segments"])
        if d.get("exemplars"):
            p.exemplars = Exemplars.from_dict(d["exemplars"])
        return p

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelProfile:
        """Read back ``to_json``; anything else (not JSON, another JSON document, a truncated profile) is a
        ValueError saying so.

        >>> ModelProfile.from_json("[1, 2]")
        Traceback (most recent call last):
        ...
        ValueError: not an otel-ml profile (a JSON list, not an object)
        """
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = opened(text, "profile")  # as the processor keeps it (sealed), or a plain JSON file
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not an otel-ml profile (not JSON: {e})") from e
        try:
            if not isinstance(d, dict):
                raise ValueError(f"not an otel-ml profile (a JSON {type(d).__name__}, not an object)")
            return cls.from_dict(d)
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise ValueError(f"not an otel-ml profile ({type(e).__name__}: {e})") from e

    @classmethod
    def read(cls, path: str | Path) -> ModelProfile:
        """A profile file (a baseline, a pinned reference, an archive export); ValueError naming the file when it
        is not one, OSError when it cannot be read."""
        data = Path(path).read_bytes()
        try:
            return cls.from_json(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def copy(self) -> ModelProfile:
        out = ModelProfile(self.model, self.version, self.config)
        out.merge(self)
        return out


__all__ = ["CategoricalProfile", "ModelProfile", "NumericProfile", "choose_kind"]
