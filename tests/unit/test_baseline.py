"""Baselines in process: built from CSV and Parquet alike, found by content (model and version)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otel_ml.core.references import ReferenceStore
from otel_ml.profile import CATEGORICAL, NUMERIC
from otel_ml.profile.baseline import build_baseline

REPO = Path(__file__).resolve().parents[2]


def test_baseline_from_csv_and_parquet_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "id": np.arange(1000),
        "x": rng.normal(size=1000),
        "zip": rng.choice([1000, 2000, 3000], 1000),
        "city": rng.choice(["Oslo", "Rome", None], 1000),
        "vip": rng.choice([True, False], 1000),
        "y": rng.integers(0, 2, 1000),
    })
    df.loc[::10, "x"] = np.nan
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    kw = {"prediction_column": "y", "exclude": ["id"], "categorical": ["zip"]}
    a = build_baseline(tmp_path / "d.csv", "m", "1", **kw)
    b = build_baseline(tmp_path / "d.parquet", "m", "1", **kw)
    for p in (a, b):
        assert p.kinds() == {"x": NUMERIC, "zip": CATEGORICAL, "city": CATEGORICAL, "vip": CATEGORICAL,
                             "prediction": NUMERIC}
        assert p.rows == 1000 and p.features["x"].missing == 100
        assert p.features["city"].missing == int(df.city.isna().sum())
        assert set(p.features["vip"].frequencies()) == {"true", "false"}
        assert set(p.features["zip"].frequencies()) == {"1000", "2000", "3000"}
    assert a.features["x"].mean == pytest.approx(b.features["x"].mean)
    with pytest.raises(ValueError, match="no column"):
        build_baseline(tmp_path / "d.csv", "m", prediction_column="nope")


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ReferenceStore(None, str(blocker / "state"))
    with pytest.raises(RuntimeError, match="not writable"):
        store.open()


def test_a_model_without_a_pinned_reference_is_looked_for_on_disk_once(tmp_path: Path, monkeypatch) -> None:
    """``find`` ran at every request: a model with no pinned reference yet read the disk each time (issue 48).
    Once written (save_pinned) and dropped from memory (forget), the file is read again."""
    from otel_ml.profile import ModelProfile

    store = ReferenceStore(None, str(tmp_path / "state"))
    store.open()
    reads: list[Path] = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or read_bytes(self))
    assert store.find("m", "1") is None and store.find("m", "1") is None
    assert len(reads) == 1
    profile = ModelProfile("m", "1")
    store.save_pinned(profile)
    store.forget(("m", "1"))
    found = store.find("m", "1")
    assert found is not None and found[1] == "pinned" and len(reads) == 2


def test_kinds_and_unusable_numbers_are_decided_as_the_processor_decides(tmp_path: Path) -> None:
    """A Parquet (or capture) column of digit codes stays categorical unless --numeric says otherwise; a number
    beyond ±1e100 (the decoders' NUMBER_LIMIT) or ±inf is a type mismatch, as live ingest counts it, never a
    moment of 1e308 (issue 44)."""
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from otel_ml.decode.limits import NUMBER_LIMIT
    from otel_ml.profile.baseline import build_baseline

    path = tmp_path / "codes.parquet"
    pq.write_table(pa.table({"code": ["16", "7", "16", "3"] * 5, "x": [1.0, 1e308, -math.inf, 2.0] * 5,
                             "y": [1.0, 2.0, 3.0, 4.0] * 5}), path)
    profile = build_baseline(path, "m", chunks=0)
    assert profile.kinds()["code"] == "categorical"
    x = profile.features["x"]
    assert (x.count, x.mismatch, x.missing) == (10, 10, 0) and x.mean == 1.5 and math.isfinite(x.m2)
    assert NUMBER_LIMIT < 1e308
    numeric = build_baseline(path, "m", chunks=0, numeric=["code"])
    assert numeric.kinds()["code"] == "numeric" and numeric.features["code"].mean == pytest.approx(10.5)
    with pytest.raises(ValueError, match="both --categorical and --numeric"):
        build_baseline(path, "m", numeric=["code"], categorical=["code"])
