"""Baselines from training data: a CSV or Parquet file → the same ModelProfile the processor keeps.

Each column is a feature named like its ``ml.feature.<name>`` attribute; ``--prediction-column`` (and
``--score-column``) become the features ``prediction`` (and ``prediction.score``), just as
``ml.prediction`` does on spans. Files are read by pyarrow: a column is numeric when pyarrow reads it
as numbers (standard missing values such as empty, NA, NULL, NaN do not make it text), else categorical;
``true``/``false`` become the categories ``true``/``false`` like bool attributes. Malformed input (ragged
rows, a repeated column name, an empty file) is an error naming the problem; ``describe_columns`` reports
what was inferred and warns about id-like and time-like columns.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otel_ml import semconv
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.decode.embedding import embedding_columns
from otel_ml.decode.limits import NUMBER_LIMIT
from otel_ml.decode.privacy import hash_batch, hash_classes, hashes_prediction
from otel_ml.profile.comoments import Comoments
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.loss_model import LossModel
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import (
    REGRESSION,
    PerformanceProfile,
    PerformanceReference,
    class_names,
    reference_performance,
)
from otel_ml.profile.reconstruction import Reconstruction
from otel_ml.profile.segments import DEFAULT_MAX_SEGMENTS, SegmentCounts
from otel_ml.profile.sketch import CATEGORICAL, NUMERIC, SketchConfig
from otel_ml.profile.values import category_strings

CHUNK_ROWS = 100_000


def _pyarrow() -> tuple:
    try:
        import pyarrow as pa
        import pyarrow.csv as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        raise RuntimeError("otel-ml baseline build reads CSV and Parquet with pyarrow: "
                           "pip install 'otel-ml[processor]'") from e
    return pa, pc, pq


def _check_input(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give one CSV or Parquet file")
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")


def _delimiter(path: Path) -> str:
    """The CSV's delimiter, from its header line: a comma unless the header has none and has ``;``, a tab or ``|``."""
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", errors="replace")
    if "," in header:
        return ","
    return next((d for d in (";", "\t", "|") if d in header), ",")


def _csv_chunks(path: Path, categorical: Sequence[str], time_like: set[str]) -> Iterator[dict[str, np.ndarray]]:
    """Batches of a CSV, read by pyarrow: standard missing values (empty, NA, NULL, NaN, ...) are missing, not
    text; a ragged row, a repeated column name or a column that changes type is an error naming it."""
    pa, pc, _ = _pyarrow()
    delimiter = _delimiter(path)
    try:
        reader = pc.open_csv(path, read_options=pc.ReadOptions(block_size=1 << 22),
                             parse_options=pc.ParseOptions(delimiter=delimiter),
                             convert_options=pc.ConvertOptions(strings_can_be_null=True,
                                                               column_types={c: pa.string() for c in categorical}))
        _unique_names(path, reader.schema.names)
        for batch in reader:
            yield _arrow_columns(batch, time_like)
    except pa.ArrowInvalid as e:
        message = str(e)
        if "conversion error" in message.lower():
            message += " (a column numeric in early rows but not later: pass --categorical COLUMN)"
        raise ValueError(f"{path}: not a usable CSV: {message}") from e


def _unique_names(path: Path, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{path}: column name {name!r} appears twice; rename one")
        seen.add(name)


def _arrow_columns(batch: Any, time_like: set[str]) -> dict[str, np.ndarray]:
    """A pyarrow RecordBatch as numpy columns: numbers float64 (missing: NaN), booleans 'true'/'false', the rest
    text (missing: ''). Date and time columns are noted in ``time_like``."""
    import pyarrow.types as pt

    out = {}
    for name, col in zip(batch.schema.names, batch.columns):
        if pt.is_integer(col.type) or pt.is_floating(col.type) or pt.is_decimal(col.type):
            out[name] = np.asarray(col.cast("float64").to_numpy(zero_copy_only=False), dtype=np.float64)
            continue
        if pt.is_timestamp(col.type) or pt.is_date(col.type) or pt.is_time(col.type):
            time_like.add(name)
        values = col.to_pylist()
        if pt.is_boolean(col.type):
            out[name] = np.array(["" if v is None else ("true" if v else "false") for v in values], dtype=str)
        else:
            out[name] = np.array(["" if v is None else str(v) for v in values], dtype=str)
    return out


def _parquet_chunks(path: Path, time_like: set[str]) -> Iterator[dict[str, np.ndarray]]:
    _, _, pq = _pyarrow()
    parquet = pq.ParquetFile(path)
    _unique_names(path, parquet.schema_arrow.names)
    for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
        yield _arrow_columns(batch, time_like)


def _row_count(path: Path, parquet: bool) -> int:
    """Rows, to size the reference's chunks (a newline inside a quoted field makes the CSV count a bit high,
    which only shifts the chunk boundaries)."""
    if parquet:
        _, _, pq = _pyarrow()
        return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, "rb") as f:
        return max(0, sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1)


def _as_numeric(cells: np.ndarray) -> np.ndarray | None:
    """Cells as float64 (empty/NaN → NaN), or None when some non-empty cell is not a number."""
    if cells.dtype.kind == "f":
        return cells
    stripped = np.char.strip(cells)
    filled = np.where(stripped == "", "nan", stripped)
    try:
        return filled.astype(np.float64)
    except ValueError:
        return None


def _as_category(cells: np.ndarray) -> np.ndarray:
    if cells.dtype.kind == "f":
        return category_strings(cells)
    stripped = np.char.strip(cells.astype(str))
    lowered = np.char.lower(stripped)
    return np.where((lowered == "true") | (lowered == "false"), lowered, stripped)


def build_baseline(
    path: str | Path,
    model: str,
    version: str = "",
    prediction_column: str | None = None,
    score_column: str | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    sketch: SketchConfig | None = None,
    numeric: Sequence[str] = (),
    hash_key: bytes | None = None,
    hash_features: Sequence[str] = (),
    chunks: int = 10,
    time_like: set[str] | None = None,
    target_column: str | None = None,
    probability_column: str | None = None,
    positive_class: str | None = None,
    class_probability_columns: dict[str, str] | None = None,
    multivariate: bool = False,
    correlation_features: int = 10,
    embedding_column: str | None = None,
    segment_by: Sequence[str] = (),
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    segment_bins: dict[str, list[float]] | None = None,
    pass_labels: Mapping[str, list[str]] | None = None,
    attribution_prefix: str | None = None,
) -> ModelProfile:
    """Profile every row of a CSV/Parquet file. Columns ``gen_ai.evaluation.<name>.score`` and
    ``gen_ai.evaluation.<name>.label`` are an LLM model's past evaluation results, not features: its evaluation
    reference (``pass_labels``: as the processor's ``genai.pass_labels``). Columns ``<attribution_prefix><feature>``
    are the predictions' attributions (``shap_income``): profiled as ``attribution.<feature>``, as the processor
    profiles ``ml.attribution.<feature>``, the reference of the attribution ranking (analyze/attribution.py).

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); f = os.path.join(d, "train.csv")
    >>> _ = open(f, "w").write("age,city,label\\n31,Oslo,1\\n45,Rome,0\\n,Oslo,1\\n")
    >>> p = build_baseline(f, "churn", prediction_column="label")
    >>> sorted(p.kinds().items()), p.features["age"].missing, p.rows
    ([('age', 'numeric'), ('city', 'categorical'), ('prediction', 'numeric')], 1, 3)
    """
    path = Path(path)
    _check_input(path)
    if chunks < 0:
        raise ValueError(f"chunks must be >= 0 (0: none), got {chunks}")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    total = _row_count(path, parquet)
    chunk_rows = max(1, -(-total // chunks)) if chunks else 0
    time_like = time_like if time_like is not None else set()  # filled: date/time columns (describe_columns)
    parts = _parquet_chunks(path, time_like) if parquet else _csv_chunks(path, list(categorical), time_like)
    rename = {}
    if prediction_column:
        rename[prediction_column] = semconv.PREDICTION_FEATURE
    if score_column:
        rename[score_column] = semconv.PREDICTION_SCORE_FEATURE
    if probability_column:
        rename[probability_column] = semconv.PREDICTION_PROBABILITY_FEATURE
    class_probability_columns = dict(class_probability_columns or {})
    for cls, col in class_probability_columns.items():  # a multiclass model's probability of each class
        rename[col] = semconv.CLASS_PROBABILITY_COLUMN_PREFIX + cls
    exclude = [*exclude, *([target_column] if target_column else []), *([embedding_column] if embedding_column else [])]
    outcome_cols = {c for c in (target_column, prediction_column, probability_column,
                                *class_probability_columns.values()) if c}
    outcomes: dict[str, list[np.ndarray]] = {}
    inputs: list[ColumnarBatch] = []  # a labelled reference's first rows: what a regressor's loss models learn from
    input_rows = 0
    profile = ModelProfile(model, version, sketch)
    kinds: dict[str, str] = {}
    forced_categorical, forced_numeric = set(categorical), set(numeric)
    if both := sorted(forced_categorical & forced_numeric):
        raise ValueError(f"column(s) {', '.join(both)} named by both --categorical and --numeric")
    seen_columns: set[str] | None = None
    correlated: Comoments | None = None  # the features whose correlations windows will be compared with these
    # Segments: the windows of a model with this baseline are segmented the same way (profile/segments.py).
    segmented = SegmentCounts(tuple(segment_by), max_segments, bins=segment_bins) if segment_by else None
    segment_labels: list[np.ndarray] = []
    evaluation_cells: dict[tuple[str, str], list[np.ndarray]] = {}
    row0 = 0
    for chunk in parts:
        if seen_columns is None:
            seen_columns = set(chunk)
            missing = [c for c in [*rename, *exclude, *forced_categorical, *forced_numeric, *segment_by]
                       if c not in seen_columns]
            if missing:
                raise ValueError(f"{path}: no column(s) {', '.join(missing)}; columns are {', '.join(chunk)}")
            attributed = [c for c in chunk if attribution_prefix and c.startswith(attribution_prefix)]
            if attribution_prefix and (not attributed or attribution_prefix in attributed):
                raise ValueError(f"{path}: --attribution-column-prefix {attribution_prefix}: "
                                 + (f"the column {attribution_prefix!r} names no feature" if attributed else
                                    f"no column starts with it; columns are {', '.join(chunk)}"))
        n = len(next(iter(chunk.values()))) if chunk else 0
        if target_column:
            for col in outcome_cols:
                outcomes.setdefault(col, []).append(chunk[col])
        numeric: dict[str, np.ndarray] = {}
        cats: dict[str, np.ndarray] = {}
        invalid: Counter[str] = Counter()
        for col, cells in chunk.items():
            if col in exclude:
                continue
            if evaluation := EVALUATION_COLUMN.fullmatch(col):  # (name, "score" or "label")
                evaluation_cells.setdefault((evaluation[1], evaluation[2]), []).append(cells)
                continue
            name = rename.get(col, col)
            if attribution_prefix and col.startswith(attribution_prefix) and col not in rename:
                name = semconv.ATTRIBUTION_COLUMN_PREFIX + col[len(attribution_prefix):]
                if cells.dtype.kind != "f" and _as_numeric(cells) is None:
                    raise ValueError(f"{path}: column {col!r} (--attribution-column-prefix {attribution_prefix}) "
                                     "holds text that is not a number")
                forced_numeric.add(col)
            # A column's kind is decided here once: numbers are numeric; text stays categorical, digit codes
            # ("16") too, unless --numeric names it. Text that reads as numbers is what CSV readers make of a
            # column holding a few words among numbers, or a Parquet/JSON column of codes: categories either way.
            if col in forced_numeric:
                as_num = _as_numeric(cells)
                if as_num is None:
                    raise ValueError(f"{path}: --numeric {col}: the column holds text that is not a number")
            elif col in forced_categorical or kinds.get(name) == CATEGORICAL or cells.dtype.kind != "f":
                as_num = None
            else:
                as_num = cells
            if as_num is not None:
                # As the processor does (decode/limits.py): beyond ±NUMBER_LIMIT (±inf too) a value is invalid,
                # counted as a type mismatch, never sketched (1e308's square overflows the moments).
                unusable = np.abs(as_num) > NUMBER_LIMIT
                if unusable.any():
                    as_num = np.where(unusable, np.nan, as_num)
                    invalid[name] += int(unusable.sum())
                numeric[name] = as_num
                kinds.setdefault(name, NUMERIC)
            else:
                if kinds.get(name) == NUMERIC:
                    raise ValueError(f"{path}: column {col!r} is numeric in early rows but not later; "
                                     f"pass --categorical {col}")
                cats[name] = _as_category(cells)
                kinds[name] = CATEGORICAL
        if embedding_column:  # the processor's projection of ml.embedding, from the same vectors
            for name, column in embedding_columns(_embedding_vectors(path, embedding_column,
                                                                     chunk[embedding_column])).items():
                numeric[name] = column
                kinds[name] = NUMERIC
        batch = ColumnarBatch(model, version, n, np.zeros(n, np.int64), np.ones(n), numeric=numeric, categorical=cats,
                              invalid=invalid)
        if hash_key is not None:
            hash_batch(batch, hash_key, list(hash_features))
        # The loss models learn from the model's inputs and prediction only, taken before the reconstruction
        # error joins the batch: a monitored feature, never an input (DLE equal to NannyML's with or without it).
        if target_column and prediction_column and input_rows < LOSS_MODEL_ROWS:
            inputs.append(batch.select(np.arange(n) < LOSS_MODEL_ROWS - input_rows, np.zeros(0, bool)))
            input_rows += inputs[-1].n_rows
        if multivariate:
            profile.reconstruction = profile.reconstruction or _fit_reconstruction(path, batch)
            batch.numeric[semconv.MULTIVARIATE_FEATURE] = profile.reconstruction.errors(batch.numeric,
                                                                                        batch.categorical, n)
            kinds[semconv.MULTIVARIATE_FEATURE] = NUMERIC
        if row0 == 0:
            correlated = Comoments.chosen({k: v for k, v in batch.numeric.items() if kinds.get(k) == NUMERIC
                                           and semconv.is_input_column(k)}, correlation_features)
        profile.update(batch, kinds, correlated, segmented)
        if target_column and profile.segments is not None:  # each labelled row's segment: performance per segment
            segment_labels.append(profile.segments.row_labels(batch))
        if chunk_rows:
            # Consecutive parts of the file, for thresholds learned from the reference's own variability.
            part_of = (row0 + np.arange(n)) // chunk_rows
            for k in np.unique(part_of).tolist():
                while len(profile.chunks) <= k:
                    profile.chunks.append(ModelProfile(model, version, sketch))
                profile.chunks[k].update(batch.select(part_of == k, np.zeros(0, bool)), kinds)
        row0 += n
    if seen_columns is None:
        raise ValueError(f"{path}: empty file")
    if target_column:
        profile.performance = _reference_performance(
            path, outcomes, target_column, prediction_column, probability_column, positive_class, chunks,
            hash_key if hash_key is not None and hashes_prediction(list(hash_features)) else None,
            class_probability_columns, np.concatenate(segment_labels) if segment_labels else None)
        if profile.performance.profile.task == REGRESSION and inputs:
            profile.performance.loss_models = _loss_models(inputs, outcomes[target_column])
    if evaluation_cells:
        profile.performance = profile.performance or PerformanceReference(PerformanceProfile())
        profile.performance.profile.evaluations = _evaluations(path, evaluation_cells, row0, pass_labels or {})
    return profile


EVALUATION_COLUMN = re.compile(r"gen_ai\.evaluation\.(.+)\.(score|label)")
"""A column of past evaluation results: ``gen_ai.evaluation.<name>.score`` or ``.label``."""


def _evaluations(path: Path, cells: dict[tuple[str, str], list[np.ndarray]], rows: int,
                 pass_labels: Mapping[str, list[str]]) -> dict[str, EvaluationScores]:
    """Each evaluation's results in a table: a row with a score or a label is one result."""
    out = {}
    for name in sorted({n for n, _ in cells}):
        scores = np.full(rows, np.nan)
        if (name, "score") in cells:
            as_num = _as_numeric(np.concatenate(cells[(name, "score")]))
            if as_num is None:
                raise ValueError(f"{path}: column gen_ai.evaluation.{name}.score holds text that is not a number")
            scores = as_num
        labels = _as_category(np.concatenate(cells[(name, "label")])) if (name, "label") in cells else \
            np.full(rows, "")
        labels = np.where(labels == "nan", "", labels)
        scored = np.isfinite(scores) | (labels != "")
        out[name] = EvaluationScores(pass_labels.get(name))
        out[name].update(scores[scored], labels[scored])
    return out


def _embedding_vectors(path: Path, column: str, cells: np.ndarray) -> np.ndarray:
    """A column of vectors ("[0.1, 0.2, ...]" or "0.1 0.2 ...", as a CSV cell or a Parquet list) as ``n × d``; an
    empty cell is a missing vector (NaN)."""
    if cells.dtype.kind == "f":
        raise ValueError(f"{path}: embedding column {column!r} holds single numbers, not vectors")
    rows: list[np.ndarray | None] = []
    for k, cell in enumerate(cells.tolist()):
        text = str(cell).strip().strip("[]")
        try:
            rows.append(np.array(text.replace(",", " ").split(), np.float64) if text else None)
        except ValueError as e:
            raise ValueError(f"{path}: embedding column {column!r}, row {k + 1} of its chunk: {e}") from e
    dims = {len(r) for r in rows if r is not None}
    if len(dims) > 1:
        raise ValueError(f"{path}: embedding column {column!r} holds vectors of lengths {sorted(dims)}")
    d = dims.pop() if dims else 1
    return np.array([r if r is not None else np.full(d, np.nan) for r in rows]).reshape(len(rows), d)


def _fit_reconstruction(path: Path, batch: ColumnarBatch) -> Reconstruction:
    """The PCA of a reference's features (not the model's outputs), fitted on its first chunk of rows."""
    def feature(name: str) -> bool:
        return semconv.is_input_column(name)

    numeric = {k: v for k, v in batch.numeric.items() if feature(k)}
    categorical = {k: v for k, v in batch.categorical.items() if feature(k)}
    if len(numeric) + len(categorical) < 2 or batch.n_rows < 10:
        raise ValueError(f"{path}: --multivariate needs at least 2 features and 10 rows, found "
                         f"{len(numeric) + len(categorical)} and {batch.n_rows}")
    return Reconstruction.fit(numeric, categorical)


LOSS_MODEL_ROWS = 200_000
"""Labelled reference rows a regressor's loss models are fitted on at most (the first ones of the file)."""


def _loss_models(inputs: list[ColumnarBatch], truth_cells: list[np.ndarray]) -> dict[str, LossModel]:
    """A regressor's expected |error|, error² and |error / truth| given its features and prediction (DLE)."""
    n = sum(b.n_rows for b in inputs)
    truth = _as_numeric(np.concatenate(truth_cells)[:n])
    names = dict.fromkeys(k for b in inputs for k in b.numeric)
    cats = dict.fromkeys(k for b in inputs for k in b.categorical)
    numeric = {k: np.concatenate([b.numeric.get(k, np.full(b.n_rows, np.nan)) for b in inputs]) for k in names
               if not k.startswith(semconv.CLASS_PROBABILITY_COLUMN_PREFIX)}
    categorical = {k: np.concatenate([b.categorical.get(k, np.full(b.n_rows, "")) for b in inputs]).astype(str)
                   for k in cats if k not in numeric}
    pred = numeric.get(semconv.PREDICTION_FEATURE)
    if truth is None or pred is None:
        return {}
    error = pred - truth
    with np.errstate(divide="ignore", invalid="ignore"):
        losses = {"abs": np.abs(error), "squared": np.square(error),
                  "abs_pct": np.where(truth != 0, np.abs(error / truth), np.nan)}
    # A target needs rows to learn from (every truth 0: no relative error, so no MAPE estimate)
    return {target: LossModel.fit(numeric, categorical, loss, target) for target, loss in losses.items()
            if np.isfinite(loss).sum() >= 2}


def _reference_performance(path: Path, outcomes: dict[str, list[np.ndarray]], target: str, prediction: str | None,
                           probability: str | None, positive: str | None, chunks: int,
                           hash_key: bytes | None = None,
                           class_probability: dict[str, str] | None = None,
                           segments: np.ndarray | None = None) -> PerformanceReference:
    """The labelled reference's performance; with ``hash_key``, text classes hashed as the processor hashes live
    predictions and labels (``hash_classes``), so that both compare. ``segments``: each row's segment label."""
    def split(col: str) -> tuple[np.ndarray, np.ndarray]:
        cells = np.concatenate(outcomes[col])
        num = _as_numeric(cells)
        if num is not None:
            return num, np.full(len(num), "", dtype="<U1")
        text = _as_category(cells)
        return np.full(len(text), np.nan), text

    truth_num, truth_text = split(target)
    pred_num = pred_text = prob = None
    if prediction:
        pred_num, pred_text = split(prediction)
    if probability:
        prob = _as_numeric(np.concatenate(outcomes[probability]))
        if prob is None or (np.isfinite(prob) & ((prob < 0) | (prob > 1))).any():
            raise ValueError(f"{path}: --probability-column {probability!r} must hold numbers in [0, 1]")
    class_prob = None
    if class_probability:
        columns = []
        for cls, col in sorted(class_probability.items()):
            p = _as_numeric(np.concatenate(outcomes[col]))
            if p is None or (np.isfinite(p) & ((p < 0) | (p > 1))).any():
                raise ValueError(f"{path}: --class-probability-column {cls}={col} must hold numbers in [0, 1]")
            columns.append(p)
        class_prob = (sorted(class_probability), np.column_stack(columns))
    if not prediction and not probability:
        raise ValueError("--target-column needs --prediction-column or --probability-column to compare it with "
                         "(with --class-probability-column too: --prediction-column names the predicted class)")
    if positive is not None:
        classes = sorted(set(class_names(truth_num, truth_text).tolist()) - {""})
        if positive not in classes:
            shown = ", ".join(classes[:10]) + (" ..." if len(classes) > 10 else "")
            raise ValueError(f"{path}: --positive-class {positive!r} is not a class of {target!r} ({shown})")
    if hash_key is not None:
        truth_text = hash_classes(truth_text, hash_key)
        pred_text = hash_classes(pred_text, hash_key) if pred_text is not None else None
        positive = str(hash_classes(np.array([positive]), hash_key)[0]) if positive is not None else None
    return reference_performance(truth_num, truth_text, pred_num, pred_text, prob, positive, chunks=max(chunks, 1),
                                 class_prob=class_prob, segments=segments)


ID_LIKE = re.compile(r"(^|[_\-. ])(id|uuid|guid|key)$", re.IGNORECASE)
TIME_LIKE = re.compile(r"(time|date|timestamp|datetime|^ts$|_ts$|_at$)", re.IGNORECASE)


def describe_columns(profile: ModelProfile, time_like: set[str] | None = None) -> list[dict[str, Any]]:
    """What ``build_baseline`` inferred for each column: kind, missing share, distinct values (categorical; a
    lower bound once the sketch is no longer exact) and warnings for id-like and time-like columns, which make
    poor features (a new category per row, or values that only grow) and should be left out (``--exclude``)."""
    time_like = time_like or set()
    out = []
    for name, feature in sorted(profile.features.items()):
        rows = feature.rows or 1
        info: dict[str, Any] = {"column": name, "kind": feature.kind, "missing": feature.missing / rows,
                                "distinct": None, "warning": ""}
        if feature.kind == CATEGORICAL:
            info["distinct"] = len(feature.frequencies())  # type: ignore[union-attr]
        present = max(1, feature.count)
        if name in time_like or TIME_LIKE.search(name):
            info["warning"] = "time-like: values only move forward, every comparison drifts; --exclude it"
        elif ID_LIKE.search(name) or (info["distinct"] is not None and present >= 100
                                      and info["distinct"] >= 0.9 * present):
            info["warning"] = "id-like: about one value per row, nothing to compare; --exclude it"
        out.append(info)
    return out
