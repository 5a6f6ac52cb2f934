"""Issue 47, part 1: fairness per protected attribute. Rates and disparities equal fairlearn's ``MetricFrame`` on
the same rows (through the processor's own ingest, label join, window merge and state), intervals cover at their
level, decisions fire on injected bias and stay quiet without it, and the config says what is wrong with it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score

from otel_ml import semconv
from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.fairness import assess_fairness, fairness_settings
from otel_ml.analyze.performance import PerformanceConfig, assess_all
from otel_ml.config import ConfigError, load_config
from otel_ml.core.live import with_segments
from otel_ml.decode.batch import ColumnarBatch, LabelBatch
from otel_ml.export.metrics import performance_series
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.performance import PerformanceProfile
from otel_ml.profile.segments import SegmentCounts

FAIRNESS = {"credit": {"attributes": ["sex", "age"], "favorable": 1, "reference_group": {"sex": "M"}}}
BINS = {"age": [30.0, 50.0]}


def census(rng: np.random.Generator, n: int, bias: float) -> dict[str, np.ndarray]:
    """Applicants: sex, age, whether they repay (truth) and whether the model grants (prediction, 1 favorable);
    ``bias``: the share of women who would be granted that are refused."""
    sex = rng.choice(np.array(["F", "M"]), n, p=[0.45, 0.55])
    age = rng.integers(18, 80, n).astype(float)
    truth = (rng.random(n) < 0.55 + 0.1 * (age > 40)).astype(float)
    pred = np.where(rng.random(n) < 0.8, truth, 1 - truth)
    pred = np.where((sex == "F") & (pred == 1) & (rng.random(n) < bias), 0.0, pred)
    return {"sex": sex, "age": age, "truth": truth, "pred": pred}


def processed(tmp_path: Path, rows: dict[str, np.ndarray], batches: int = 4, numbers: bool = False
              ) -> PerformanceProfile:
    """The rows through the processor's path: segmented at ingest, counted, waiting, joined with their labels
    (in batches, some windows apart), merged over the horizon, and through a checkpoint's JSON. ``numbers``: the
    classifier sends its classes and labels as the numbers 0 and 1, not as text."""
    n = len(rows["pred"])
    config = PerformanceConfig(fairness=FAIRNESS, window_seconds=60, horizon_seconds=3600)
    gt = GroundTruth(str(tmp_path / "p"), LabelsConfig(), config)
    segmented = SegmentCounts(("sex", "age"), bins=BINS)
    ids = np.arange(1, n + 1, dtype=np.uint64)
    t0 = 10**18
    for part in np.array_split(np.arange(n), batches):
        t = t0 + part.astype(np.int64) * 10**9 // 10  # spread over several windows
        outputs = {semconv.PREDICTION_FEATURE: (rows["pred"] if numbers else classes(rows["pred"]))[part]}
        batch = ColumnarBatch("credit", "1", len(part), t, np.ones(len(part)), prediction_id=ids[part],
                              numeric={"age": rows["age"][part], **(outputs if numbers else {})},
                              categorical={"sex": rows["sex"][part], **({} if numbers else outputs)})
        gt.on_predictions(with_segments(batch, segmented))
    truth = (rows["truth"], np.full(n, "")) if numbers else (np.full(n, np.nan), classes(rows["truth"]))
    gt.on_labels(LabelBatch("credit", "1", ids, *truth, np.full(n, t0 + 10**12)))
    current = gt.current("credit", "1")
    assert current is not None
    return PerformanceProfile.from_dict(current.to_dict())


def classes(values: np.ndarray) -> np.ndarray:
    return np.where(values == 1, "1", "0")


def frame(rows: dict[str, np.ndarray], groups: np.ndarray) -> MetricFrame:
    return MetricFrame(metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                                "false_positive_rate": false_positive_rate,
                                "precision": lambda y, p: precision_score(y, p, zero_division=np.nan)},
                       y_true=rows["truth"], y_pred=rows["pred"], sensitive_features=groups)


def test_rates_and_disparities_equal_fairlearns_metric_frame_through_the_processor(tmp_path: Path) -> None:
    rng = np.random.default_rng(47)
    rows = census(rng, 6000, bias=0.3)
    profile = processed(tmp_path, rows)
    report = assess_all("credit", "1", profile, None, DriftConfig(), PerformanceConfig(fairness=FAIRNESS)).fairness
    assert report is not None and report.favorable == "1" and report.unattributed == 0
    band = np.where(rows["age"] < 30, "<30", np.where(rows["age"] < 50, "[30..50)", ">=50"))
    intersection = np.array([f"sex={s},age={a}" for s, a in zip(rows["sex"], band)])
    for attribute, groups, reference in (("sex", rows["sex"], "M"), ("age", band, None),
                                         ("sex,age", intersection, None)):
        mf = frame(rows, groups)
        by_group = mf.by_group
        if reference is None:  # the largest group
            reference = max(by_group.index, key=lambda g: ((groups == g).sum(), g))
        assert report.reference_groups[attribute] == reference
        values = {(v.metric, v.group): v for v in report.values if v.attribute == attribute}
        for group in by_group.index:
            for metric in ("selection_rate", "true_positive_rate", "false_positive_rate", "precision"):
                assert values[metric, group].value == pytest.approx(by_group.loc[group, metric], abs=1e-12)
            if group == reference:
                continue
            mine, ref = by_group.loc[group], by_group.loc[reference]
            expected = {
                "disparate_impact": mine["selection_rate"] / ref["selection_rate"],
                "demographic_parity_difference": mine["selection_rate"] - ref["selection_rate"],
                "equal_opportunity_difference": mine["true_positive_rate"] - ref["true_positive_rate"],
                "equalized_odds_difference": max(abs(mine["true_positive_rate"] - ref["true_positive_rate"]),
                                                 abs(mine["false_positive_rate"] - ref["false_positive_rate"])),
                "predictive_parity_difference": mine["precision"] - ref["precision"]}
            for metric, value in expected.items():
                v = values[metric, group]
                assert v.value == pytest.approx(value, abs=1e-12), (attribute, group, metric)
                assert v.low <= v.value <= v.high
    # fairlearn's two-group summaries are the one disparity of sex there is
    from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference
    sex = {v.metric: v for v in report.values if v.attribute == "sex" and v.group == "F"}
    kw = {"y_true": rows["truth"], "y_pred": rows["pred"], "sensitive_features": rows["sex"]}
    assert abs(sex["demographic_parity_difference"].value) == pytest.approx(demographic_parity_difference(**kw))
    assert sex["disparate_impact"].value == pytest.approx(demographic_parity_ratio(**kw))
    assert sex["equalized_odds_difference"].value == pytest.approx(equalized_odds_difference(**kw))
    # 30% of the women the model would grant refused: the four-fifths rule and parity are violated, for sex only
    assert sex["disparate_impact"].violation and sex["demographic_parity_difference"].violation
    assert not any(v.violation for v in report.values if v.attribute == "age")


def test_a_classifier_sending_numbers_gets_the_same_rates_as_one_sending_text(tmp_path: Path) -> None:
    """0 and 1 sent as numbers (ml.prediction = 1, ml.ground_truth = 0) would read as a regressor's outputs; a model
    with fairness settings is a classifier by them, so its labelled rates are there, equal to the text's."""
    rows = census(np.random.default_rng(9), 3000, bias=0.2)
    settings = fairness_settings(FAIRNESS)["credit"]
    as_text = assess_fairness(processed(tmp_path / "t", rows), None, settings, 0.01, 100)
    as_numbers = assess_fairness(processed(tmp_path / "n", rows, numbers=True), None, settings, 0.01, 100)
    text_values = {(v.metric, v.attribute, v.group): v.value for v in as_text.values}
    assert any(metric == "true_positive_rate" for metric, _, _ in text_values)
    assert {(v.metric, v.attribute, v.group): v.value for v in as_numbers.values} == text_values


def test_no_bias_no_violation_and_a_changed_bias_is_seen_against_the_baseline(tmp_path: Path) -> None:
    """A/A: 40 replays without bias, no violation at the performance level (expected false decisions ≤ 40 α); a
    reference with the same segments makes ``changed`` decidable: bias introduced since is changed."""
    alpha = 0.01
    settings = fairness_settings({"credit": {**FAIRNESS["credit"],
                                             "thresholds": {"demographic_parity_difference": 0.05}}})["credit"]
    rng = np.random.default_rng(5)
    fired = 0
    for k in range(40):
        profile = processed(tmp_path / str(k), census(rng, 3000, bias=0.0))
        fired += any(v.violation for v in assess_fairness(profile, None, settings, alpha, 100).values)
    assert fired <= 2  # P(≥ 3 of 40 at ≤ 0.01 each) < 0.008
    reference = processed(tmp_path / "ref", census(rng, 6000, bias=0.0))
    quiet = assess_fairness(processed(tmp_path / "aa", census(rng, 6000, bias=0.0)), reference, settings, alpha, 100)
    biased = assess_fairness(processed(tmp_path / "b", census(rng, 6000, bias=0.3)), reference, settings, alpha, 100)
    assert quiet.reference_source == biased.reference_source == "baseline"
    assert not any(v.changed for v in quiet.values)
    di = next(v for v in biased.values if (v.metric, v.attribute, v.group) == ("disparate_impact", "sex", "F"))
    assert di.changed and di.reference_value is not None and 0.9 < di.reference_value < 1.1


def test_intervals_cover_the_true_disparity_at_their_level() -> None:
    """The 95% intervals of the difference (Agresti–Caffo) and the ratio (Katz) hold the truth in ~95% of 400
    draws (binomial bounds: 400 · 0.95 ± 3σ, σ = √(400 · 0.95 · 0.05))."""
    rng = np.random.default_rng(9)
    settings = fairness_settings({"m": {"attributes": ["g"], "favorable": "1", "reference_group": {"g": "a"}}})["m"]
    covered = {"disparate_impact": 0, "demographic_parity_difference": 0}
    draws = 400
    for _ in range(draws):
        prof = PerformanceProfile()
        for group, n, p in (("a", 400, 0.5), ("b", 300, 0.35)):
            prof.segment(f"g={group}").add_selections(n, int(rng.binomial(n, p)))
        values = {v.metric: v for v in assess_fairness(prof, None, settings, 0.05, 100).values if v.group == "b"}
        covered["disparate_impact"] += values["disparate_impact"].low <= 0.7 <= values["disparate_impact"].high
        covered["demographic_parity_difference"] += \
            values["demographic_parity_difference"].low <= -0.15 <= values["demographic_parity_difference"].high
    sigma = math.sqrt(draws * 0.95 * 0.05)
    for metric, n in covered.items():
        assert abs(n - 0.95 * draws) <= 3 * sigma, (metric, n)


def test_series_name_each_metric_attribute_and_group_and_the_decisions() -> None:
    prof = PerformanceProfile()
    for label, n, fav in (("sex=M", 1000, 500), ("sex=F", 1000, 250), ("(missing)", 10, 5)):
        prof.segment(label).add_selections(n, fav)
    config = PerformanceConfig(fairness={"m": {"attributes": ["sex"], "favorable": "1"}})
    report = assess_all("m", "1", prof, None, DriftConfig(), config)
    assert report.fairness is not None and report.fairness.unattributed == 10
    series = dict((tuple(sorted(a.items())), v) for a, v in performance_series(report, semconv.METRIC_FAIRNESS))
    key = tuple(sorted({semconv.ATTR_MODEL_NAME: "m", semconv.ATTR_MODEL_VERSION: "1",
                        semconv.ATTR_FAIRNESS_METRIC: "disparate_impact", semconv.ATTR_FAIRNESS_ATTRIBUTE: "sex",
                        semconv.ATTR_GROUP: "F"}.items()))
    assert series[key] == 0.5  # the reference group: the largest (a tie: by name, "M")
    decisions = [(a, v) for a, v in performance_series(report, semconv.METRIC_FAIRNESS_VIOLATION)]
    assert ({**dict(key), semconv.ATTR_FAIRNESS_TEST: "violation"}, 1.0) in decisions


@pytest.mark.parametrize("entry, message", [
    ({"attributes": []}, "fairness.m.attributes"),
    ({"attributes": ["sex"]}, "fairness.m.favorable"),
    ({"attributes": ["sex"], "favorable": "1", "reference_group": {"race": "x"}}, "fairness.m.reference_group"),
    ({"attributes": ["sex"], "favorable": "1", "thresholds": {"disparate_impact": 1.5}},
     "fairness.m.thresholds.disparate_impact"),
    ({"attributes": ["sex"], "favorable": "1", "level": 3}, "unknown key"),
])
def test_a_bad_fairness_setting_is_named(tmp_path: Path, entry: dict, message: str) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"fairness": {"m": entry}}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_fairness_attributes_segment_the_model_and_must_be_among_its_segment_keys(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"fairness": FAIRNESS, "segments": {"bins": BINS}}))
    cfg = load_config(path)
    assert cfg.segments.by["credit"] == ["sex", "age"] and cfg.performance.fairness == FAIRNESS
    path.write_text(yaml.safe_dump({"fairness": FAIRNESS, "segments": {"by": {"credit": ["sex", "region"]}}}))
    with pytest.raises(ConfigError, match=r"fairness\.credit\.attributes"):
        load_config(path)
