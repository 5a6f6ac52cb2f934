"""Issue 47, part 2: attribution drift. NDCG equals SageMaker Clarify's formula on a hand-checked example; the
global importance is the exact mean |attribution| through windows, merges and a checkpoint's JSON; a real
model explained with the ``shap`` package, recorded by the real instrumentation and read by both decoders, is
flagged when its driving feature changes after an input shift and not when its traffic is unchanged."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shap
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sklearn.ensemble import GradientBoostingRegressor

from otel_ml import semconv
from otel_ml.analyze.attribution import compare_attributions, global_importance, ndcg
from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.decode import DecodeLimits
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.decode.otlp import decode_request_compiled, decode_request_python
from otel_ml.export.metrics import attribution_series
from otel_ml.instrument import ModelMonitor
from otel_ml.profile.baseline import build_baseline
from otel_ml.profile.model import ModelProfile

FEATURES = ["x0", "x1", "x2"]


def test_ndcg_equals_the_formula_on_a_hand_checked_example() -> None:
    # Reference importances a = {a: .5, b: .3, c: .2}; the current ranking puts b first, then a, then c.
    # DCG = .3/log2(2) + .5/log2(3) + .2/log2(4) = .3 + .315465 + .1 = .715465
    # iDCG = .5/log2(2) + .3/log2(3) + .2/log2(4) = .5 + .189279 + .1 = .789279; NDCG = .906480
    assert ndcg({"a": .5, "b": .3, "c": .2}, {"a": .25, "b": .4, "c": .1}) == pytest.approx(0.906480, abs=1e-6)
    assert ndcg({"a": .5, "b": .3, "c": .2}, {"a": 9, "b": 2, "c": 1}) == 1.0  # same order, other values
    # A feature the current side lacks ranks last (importance 0); one only the current side has gains nothing.
    by_hand = (0.3 + 0 / math.log2(3) + 0.5 / math.log2(4)) / (0.5 + 0.3 / math.log2(3))
    assert ndcg({"a": .5, "b": .3}, {"b": .2, "z": .1}) == pytest.approx(by_hand, rel=1e-12)


def side(n: int, features: list[str] = FEATURES, rng: np.random.Generator | None = None) -> ModelProfile:
    """A profile of ``n`` rows with attributions to ``features``, the first the most important."""
    rng = rng or np.random.default_rng(0)
    columns = {f"attribution.{f}": rng.normal(0, 3.0 - j, n) for j, f in enumerate(features)}
    profile = ModelProfile("m", "")
    profile.update(ColumnarBatch("m", "", n, np.zeros(n, np.int64), np.ones(n), numeric=columns),
                   dict.fromkeys(columns, "numeric"))
    return profile


def test_importance_is_exact_through_windows_merges_and_a_checkpoint() -> None:
    windows = [side(n, rng=np.random.default_rng(n)) for n in (5000, 3000, 7000)]
    raw: dict[str, list[np.ndarray]] = {f: [] for f in FEATURES}
    for n in (5000, 3000, 7000):  # the same draws as the windows'
        rng = np.random.default_rng(n)
        for j, f in enumerate(FEATURES):
            raw[f].append(rng.normal(0, 3.0 - j, n))
    horizon = ModelProfile("m", "")
    for w in windows:
        horizon.merge(ModelProfile.from_json(w.to_json()))
    importance = global_importance(horizon)
    for f in FEATURES:
        value, rows = importance[f]
        assert rows == 15000
        assert value == pytest.approx(np.abs(np.concatenate(raw[f])).mean(), rel=1e-12)


def test_a_window_without_sums_leaves_the_importance_exact_over_the_windows_with_them() -> None:
    """A window written before attributions existed (a feature named ``attribution.x`` then, so no sums) merged
    into a horizon adds values to the column but not to its sum: the mean is over the summed values only."""
    old = json.loads(side(4000, rng=np.random.default_rng(1)).to_json())
    old.pop("absolute_sums")
    new = side(6000, rng=np.random.default_rng(2))
    horizon = ModelProfile("m", "")
    for window in (ModelProfile.from_dict(old), new):
        horizon.merge(window)
    assert horizon.features["attribution.x0"].count == 10000
    rng = np.random.default_rng(2)
    for j, f in enumerate(FEATURES):
        value, rows = global_importance(horizon)[f]
        assert rows == 6000
        assert value == pytest.approx(np.abs(rng.normal(0, 3.0 - j, 6000)).mean(), rel=1e-12)


def test_text_in_an_attribution_is_a_mismatched_value_not_a_categorical_column() -> None:
    """An attribution is a number: text arriving first does not make ``attribution.x`` a categorical feature (which
    would never have an importance); it is counted as type-mismatched values, and the numbers after it count."""
    from otel_ml.profile import WindowConfig, WindowedProfile

    windows = WindowedProfile("m", "", WindowConfig(window_seconds=60, horizon_seconds=600))
    text = ColumnarBatch("m", "", 2, np.full(2, 10**9), np.ones(2), categorical={"attribution.x": np.array(["a", "b"])})
    numbers = ColumnarBatch("m", "", 2, np.full(2, 10**9), np.ones(2), numeric={"attribution.x": np.array([1.0, -3.0])})
    windows.update(text)
    windows.update(numbers)
    assert windows.kinds["attribution.x"] == "numeric"
    current = windows.current()
    assert current.features["attribution.x"].mismatch == 2
    assert global_importance(current) == {"x": (2.0, 2)}


def test_withheld_until_both_sides_have_enough_attributed_rows() -> None:
    assert compare_attributions(side(500), side(50), 100).withheld_reason == "current_too_small"
    assert compare_attributions(None, side(500), 100).withheld_reason == "not_in_reference"
    assert compare_attributions(side(500), ModelProfile("m", ""), 100).withheld_reason == "absent_from_current"
    assert compare_attributions(side(500, ["x"]), side(500, ["x"]), 100).withheld_reason == "empty"
    decided = compare_attributions(side(500), side(500), 100)
    assert decided.detected is False and decided.ndcg == 1.0 and not decided.withheld_reason
    assert compare_attributions(ModelProfile("m", ""), ModelProfile("m", ""), 100) is None


def inputs(rng: np.random.Generator, n: int, x0_scale: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"x0": rng.normal(0, x0_scale, n), "x1": rng.normal(0, 1, n), "x2": rng.normal(0, 2, n)})


@pytest.fixture(scope="module")
def explained_model() -> tuple[GradientBoostingRegressor, shap.TreeExplainer]:
    """A real model whose prediction is driven by x0, then x1, then x2 (3·x0 + 1.5·x1 + 0.5·x2), and shap's
    exact explainer of it."""
    rng = np.random.default_rng(1)
    X = inputs(rng, 4000)
    y = 3 * X["x0"] + 1.5 * X["x1"] + 0.5 * X["x2"] + rng.normal(0, 0.1, len(X))
    model = GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0).fit(X, y)
    return model, shap.TreeExplainer(model)


def served(model: GradientBoostingRegressor, explainer: shap.TreeExplainer, X: pd.DataFrame,
           compiled: bool) -> ModelProfile:
    """``X`` predicted by the wrapped model (the real instrumentation, shap's attributions in each batch span),
    exported as OTLP bytes and decoded by one of the processor's decoders into a window's profile."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    wrapped = ModelMonitor("credit", "1", tracer_provider=provider).wrap(model, explainer=explainer)
    for part in np.array_split(np.arange(len(X)), 8):
        wrapped.predict(X.iloc[part])
    data = encode_spans(spans.get_finished_spans()).SerializeToString()
    result = (decode_request_compiled if compiled else decode_request_python)(data, DecodeLimits())
    assert result is not None and not result.rejected, result
    profile = ModelProfile("credit", "1")
    [batch] = result.batches
    kinds = {name: "numeric" for name in batch.feature_names()}
    profile.update(batch, kinds)
    return profile


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_real_models_changed_driver_is_flagged_and_unchanged_traffic_is_not(
        tmp_path: Path, explained_model: tuple[GradientBoostingRegressor, shap.TreeExplainer], compiled: bool) -> None:
    model, explainer = explained_model
    rng = np.random.default_rng(2)
    # The reference: a table of past predictions with their shap values (baseline build --attribution-column-prefix).
    X = inputs(rng, 3000)
    table = X.assign(prediction=model.predict(X),
                     **{f"shap_{f}": v for f, v in zip(FEATURES, explainer.shap_values(X).T)})
    table.to_csv(tmp_path / "reference.csv", index=False)
    reference = build_baseline(tmp_path / "reference.csv", "credit", "1", prediction_column="prediction",
                               attribution_prefix="shap_")
    assert {f"attribution.{f}" for f in FEATURES} <= set(reference.features)
    cfg = DriftConfig()

    same = compare(reference, served(model, explainer, inputs(rng, 2000), compiled), cfg)
    assert same.attribution is not None and same.attribution.detected is False, same.attribution
    assert [i.feature for i in same.attribution.importances] == FEATURES
    # Each feature's importance is the exact mean |shap value| of the rows sent.
    shifted_X = inputs(rng, 2000, x0_scale=0.2)  # x0 barely moves any more: x1, then x2, drive the predictions
    shifted = compare(reference, served(model, explainer, shifted_X, compiled), cfg)
    exact = np.abs(explainer.shap_values(shifted_X)).mean(axis=0)
    for i in shifted.attribution.importances:
        assert i.current == pytest.approx(exact[FEATURES.index(i.feature)], rel=1e-12)
    assert [i.feature for i in shifted.attribution.importances] == ["x1", "x2", "x0"]
    assert shifted.attribution.detected is True and shifted.attribution.ndcg < 0.9, shifted.attribution
    row = next(f for f in shifted.features if f.feature == semconv.ATTRIBUTION_FEATURE)
    assert row.overall.detected is True and row.methods[0].score == shifted.attribution.ndcg
    # Each attribution's own distribution drifts on the feature path: x0's attributions shrank.
    x0 = next(f for f in shifted.features if f.feature == "attribution.x0")
    assert x0.overall.detected is True
    # Exported: the NDCG, its decision and each feature's importance on both sides.
    series = list(attribution_series({"ml.model.name": "credit"}, shifted))
    assert (semconv.METRIC_ATTRIBUTION_DRIFT_DETECTED, {"ml.model.name": "credit"}, 1.0) in series
    assert sum(m == semconv.METRIC_ATTRIBUTION_IMPORTANCE for m, _, _ in series) == 6


def test_explain_ratio_explains_that_share_of_the_calls(
        explained_model: tuple[GradientBoostingRegressor, shap.TreeExplainer]) -> None:
    model, explainer = explained_model
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    wrapped = ModelMonitor("m", tracer_provider=provider).wrap(model, explainer=explainer, explain_ratio=0.25)
    X = inputs(np.random.default_rng(4), 4)
    for _ in range(400):
        wrapped.predict(X.copy())
    calls = spans.get_finished_spans()
    explained = sum("ml.attribution.x0" in s.attributes for s in calls)
    assert len(calls) == 400 and 48 <= explained <= 152  # Binomial(400, 0.25): 100 ± 6 standard deviations
    with pytest.raises(ValueError, match="explain_ratio"):
        ModelMonitor("m", tracer_provider=provider).wrap(model, explainer=explainer, explain_ratio=0)


@pytest.mark.parametrize("table,message", [
    ("a,b\n1,2\n", "--attribution-column-prefix shap_: no column starts with it; columns are a, b"),
    ("a,shap_\n1,0.5\n", "--attribution-column-prefix shap_: the column 'shap_' names no feature"),
    ("a,shap_a\n1,high\n", "column 'shap_a' (--attribution-column-prefix shap_) holds text that is not a number"),
])
def test_a_table_without_usable_attribution_columns_is_named(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "t.csv").write_text(table)
    with pytest.raises(ValueError, match=re.escape(message)):
        build_baseline(tmp_path / "t.csv", "m", attribution_prefix="shap_")


def test_record_and_record_batch_carry_attributions() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monitor = ModelMonitor("m", tracer_provider=provider)
    monitor.record({"x0": 1.0}, prediction=2.0, attributions={"x0": 0.7})
    monitor.record_batch({"x0": [1.0, 2.0]}, predictions=[1, 2], attributions={"x0": np.array([0.1, -0.2])})
    batched = ModelMonitor("m", tracer_provider=provider, batch_rows=3)
    batched.record({"x0": 1.0}, attributions={"x0": 0.5})
    batched.record({"x0": 2.0})
    batched.flush()
    one, batch, rows = (s.attributes for s in spans.get_finished_spans())
    assert one["ml.attribution.x0"] == 0.7
    assert batch["ml.attribution.x0"] == (0.1, -0.2)
    assert rows["ml.attribution.x0"][0] == 0.5 and math.isnan(rows["ml.attribution.x0"][1])  # a row without


def test_attributions_that_are_no_mapping_are_dropped_and_counted_never_raised() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monitor = ModelMonitor("m", tracer_provider=provider)
    monitor.record({"x0": 1.0}, prediction=1.0, attributions="x0=0.3")  # type: ignore[arg-type]
    monitor.record_batch({"x0": [1.0, 2.0]}, attributions=[0.1, 0.2])  # type: ignore[arg-type]
    batched = ModelMonitor("m", tracer_provider=provider, batch_rows=2)
    batched.record({"x0": 1.0}, attributions="x0=0.3")  # type: ignore[arg-type]
    batched.record({"x0": 2.0}, attributions={"x0": 0.4})
    batched.flush()
    assert monitor.dropped_by_reason["unreadable_attributions"] == 2
    assert batched.dropped_by_reason["unreadable_attributions"] == 1
    one, batch, rows = (s.attributes for s in spans.get_finished_spans())  # the predictions themselves are kept
    assert one["ml.feature.x0"] == 1.0 and "ml.attribution.x0" not in one
    assert batch["ml.batch.size"] == 2 and "ml.attribution.x0" not in batch
    assert rows["ml.feature.x0"] == (1.0, 2.0) and math.isnan(rows["ml.attribution.x0"][0])
    assert rows["ml.attribution.x0"][1] == 0.4
