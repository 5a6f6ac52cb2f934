"""Baselines from training data: a CSV or Parquet file → the same ModelProfile the processor keeps.

Each column is a feature named like its ``ml.feature.<name>`` attribute; ``--prediction-column`` (and
``--score-column``) become the features ``prediction`` (and ``prediction.score``), just as
``ml.prediction`` does on spans. A column is numeric when every non-empty cell is a number, else
categorical; ``true``/``false`` cells become the categories ``true``/``false`` like bool attributes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from otel_ml import semconv
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.decode.privacy import hash_batch
from otel_ml.profile.model import ModelProfile, category_strings
from otel_ml.profile.sketch import CATEGORICAL, NUMERIC, SketchConfig

CHUNK_ROWS = 100_000


def _csv_chunks(path: Path) -> Iterator[dict[str, np.ndarray]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows: list[list[str]] = []
        for row in reader:
            rows.append(row)
            if len(rows) >= CHUNK_ROWS:
                yield _columns(header, rows)
                rows = []
        if rows:
            yield _columns(header, rows)


def _columns(header: list[str], rows: list[list[str]]) -> dict[str, np.ndarray]:
    width = len(header)
    padded = [r + [""] * (width - len(r)) if len(r) < width else r[:width] for r in rows]
    cells = np.array(padded, dtype=str).reshape(len(rows), width)
    return {name: cells[:, i] for i, name in enumerate(header)}


def _parquet_chunks(path: Path) -> Iterator[dict[str, np.ndarray]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise RuntimeError("reading Parquet needs pyarrow: pip install 'otel-ml[parquet]'") from e
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        out = {}
        for name, col in zip(batch.schema.names, batch.columns):
            values = col.to_numpy(zero_copy_only=False)
            if values.dtype.kind in "iuf":
                out[name] = values.astype(np.float64)
            elif values.dtype.kind == "b":
                out[name] = np.where(values, "true", "false")
            else:
                out[name] = np.array(["" if v is None else str(v) for v in values.tolist()], dtype=str)
        yield out


def _row_count(path: Path, parquet: bool) -> int:
    if parquet:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, newline="", encoding="utf-8") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


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
    hash_key: bytes | None = None,
    hash_features: Sequence[str] = (),
    chunks: int = 10,
) -> ModelProfile:
    """Profile every row of a CSV/Parquet file.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); f = os.path.join(d, "train.csv")
    >>> _ = open(f, "w").write("age,city,label\\n31,Oslo,1\\n45,Rome,0\\n,Oslo,1\\n")
    >>> p = build_baseline(f, "churn", prediction_column="label")
    >>> sorted(p.kinds().items()), p.features["age"].missing, p.rows
    ([('age', 'numeric'), ('city', 'categorical'), ('prediction', 'numeric')], 1, 3)
    """
    path = Path(path)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    total = _row_count(path, parquet)
    chunk_rows = max(1, -(-total // chunks)) if chunks else 0
    parts = _parquet_chunks(path) if parquet else _csv_chunks(path)
    rename = {}
    if prediction_column:
        rename[prediction_column] = semconv.PREDICTION_FEATURE
    if score_column:
        rename[score_column] = semconv.PREDICTION_SCORE_FEATURE
    profile = ModelProfile(model, version, sketch)
    kinds: dict[str, str] = {}
    forced_categorical = set(categorical)
    seen_columns: set[str] | None = None
    row0 = 0
    for chunk in parts:
        if seen_columns is None:
            seen_columns = set(chunk)
            missing = [c for c in [*rename, *exclude, *forced_categorical] if c not in seen_columns]
            if missing:
                raise ValueError(f"{path}: no column(s) {', '.join(missing)}; columns are {', '.join(chunk)}")
        n = len(next(iter(chunk.values()))) if chunk else 0
        numeric: dict[str, np.ndarray] = {}
        cats: dict[str, np.ndarray] = {}
        for col, cells in chunk.items():
            if col in exclude:
                continue
            name = rename.get(col, col)
            as_num = None if col in forced_categorical or kinds.get(name) == CATEGORICAL else _as_numeric(cells)
            if as_num is not None:
                numeric[name] = as_num
                kinds.setdefault(name, NUMERIC)
            else:
                if kinds.get(name) == NUMERIC:
                    raise ValueError(f"{path}: column {col!r} is numeric in early rows but not later; "
                                     f"pass --categorical {col}")
                cats[name] = _as_category(cells)
                kinds[name] = CATEGORICAL
        batch = ColumnarBatch(model, version, n, np.zeros(n, np.int64), np.ones(n), numeric=numeric, categorical=cats)
        if hash_key is not None:
            hash_batch(batch, hash_key, list(hash_features))
        profile.update(batch, kinds)
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
    return profile
