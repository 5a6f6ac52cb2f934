"""A degradation decision for every exported performance metric (issue 32 case 3): MAPE and R² get standard errors
(checked against the bootstrap on the raw rows), ``performance.alternative: either`` flags a move either way, and
``bias`` is tested two-sided."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from otel_ml.analyze.performance import assess
from otel_ml.profile.performance import PerformanceProfile, PerformanceReference

ALPHA = 1e-3


def regressed(y: np.ndarray, pred: np.ndarray) -> PerformanceProfile:
    p = PerformanceProfile()
    p.add_regressed(y, pred)
    return p


def rows(rng: np.random.Generator, n: int, noise: float, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    y = rng.lognormal(mean=7.0, sigma=0.5, size=n)  # prices: positive, skewed
    return y, y * (1 + rng.normal(offset, noise, n))


def test_mape_and_r2_standard_errors_match_the_bootstrap() -> None:
    rng = np.random.default_rng(1)
    y, pred = rows(rng, 4000, 0.2)
    got = regressed(y, pred).metrics()
    assert got["mape"][0] == pytest.approx(skm.mean_absolute_percentage_error(y, pred), rel=1e-12)
    assert got["r2"][0] == pytest.approx(skm.r2_score(y, pred), rel=1e-12)
    boot = rng.integers(0, len(y), (2000, len(y)))
    se = {"mape": np.std([skm.mean_absolute_percentage_error(y[i], pred[i]) for i in boot], ddof=1),
          "r2": np.std([skm.r2_score(y[i], pred[i]) for i in boot], ddof=1)}
    # 2,000 resamples estimate a standard error to ~1.6% (1/sqrt(2*2000)); the delta method is first order.
    for name in ("mape", "r2"):
        assert got[name][1] == pytest.approx(se[name], rel=0.1), name


def test_a_window_from_before_the_moments_gives_no_standard_error_not_a_wrong_one() -> None:
    rng = np.random.default_rng(2)
    old = regressed(*rows(rng, 500, 0.2))
    for k in ("ape2", "y3", "y4", "e2y", "e2y2", "n_moments"):
        old.sums[k] = 0.0  # as a checkpoint written before these sums existed reads back
    merged = regressed(*rows(rng, 500, 0.2))
    merged.merge(PerformanceProfile.from_dict(old.to_dict()))
    got = merged.metrics()
    assert np.isnan(got["mape"][1]) and np.isnan(got["r2"][1]) and np.isfinite(got["mae"][1])


def reference(rng: np.random.Generator) -> PerformanceReference:
    return PerformanceReference(regressed(*rows(rng, 5000, 0.2)))


def test_every_regression_metric_gets_a_decision_and_either_flags_an_improvement() -> None:
    rng = np.random.default_rng(3)
    ref = reference(rng)
    stationary = assess("m", "", regressed(*rows(rng, 2000, 0.2)), ref, ALPHA)
    assert set(stationary.degraded) == {"mae", "rmse", "mape", "r2", "bias"}
    assert not any(stationary.degraded.values()), stationary.degraded
    worse = assess("m", "", regressed(*rows(rng, 2000, 0.25)), ref, ALPHA)  # errors 25% larger
    assert worse.degraded["mape"] and worse.degraded["r2"] and worse.degraded["mae"]
    better = regressed(*rows(rng, 2000, 0.15))  # errors 25% smaller: not worse, but a change
    assert not any(assess("m", "", better, ref, ALPHA).degraded.values())
    either = assess("m", "", better, ref, ALPHA, alternative="either").degraded
    assert either["mape"] and either["mae"] and either["r2"]
    biased = assess("m", "", regressed(*rows(rng, 2000, 0.2, offset=-0.05)), ref, ALPHA)  # 5% under: bias moved
    assert biased.degraded["bias"]


def test_the_config_names_the_alternatives() -> None:
    from otel_ml.config import ConfigError, load_config

    assert load_config(overrides={"performance.alternative": "either"}, environ={}).performance.alternative == "either"
    with pytest.raises(ConfigError, match=r"performance\.alternative"):
        load_config(overrides={"performance.alternative": "better"}, environ={})


def test_loss_models_walk_alike_compiled_and_numpy_and_a_damaged_one_is_refused() -> None:
    """Issue 32: a regressor's loss models (LightGBM trees as plain numbers) give LightGBM's predictions, the
    compiled walk equals the numpy one (missing values and unseen categories included), and a baseline whose
    arrays point outside themselves fails when it is read, not at ingest."""
    from otel_ml.profile.loss_model import LossModel

    rng = np.random.default_rng(2)
    n = 3000
    x = rng.normal(0, 1, n)
    x[::17] = np.nan
    cat = rng.choice(["a", "b", "c", "d", "e", "f"], n)  # > 4 categories: ranked by mean loss
    few = rng.choice(["p", "q"], n)  # <= 4: one indicator per category
    loss = np.abs(rng.normal(0, 1, n)) * (1 + np.nan_to_num(np.abs(x))) * np.where(cat == "a", 3, 1)
    model = LossModel.fit({"x": x}, {"cat": cat, "few": few}, loss, "abs", rounds=40)
    assert len(model.categories["cat"]) == 6 and model.indicators == [("few", "p"), ("few", "q")]
    test_cat = np.array(["a", "zzz", "", "f"] * 50)  # unseen and missing categories
    inputs = model.matrix({"x": np.tile([np.nan, 0.0, 2.5, -1.0], 50)}, {"cat": test_cat, "few": test_cat})
    assert model.predict(inputs) == pytest.approx(model.predict_numpy(inputs), rel=1e-12, abs=1e-12)
    again = LossModel.from_dict(model.to_dict())
    assert again.predict(inputs) == pytest.approx(model.predict(inputs), rel=1e-15)
    damaged = model.to_dict()
    damaged["left"][0][0] = 10**6
    with pytest.raises(ValueError, match="out of range"):
        LossModel.from_dict(damaged)


def test_the_loss_models_budget_samples_a_busy_window_without_bias(tmp_path) -> None:
    """Past ``loss_rows_per_window`` a window's predictions are sampled at ``loss_sample_ratio`` and weighted by
    its inverse: the estimate stays the every-row one (within the sample's error) for a tenth of the walks."""
    import time

    from otel_ml.analyze.performance import PerformanceConfig
    from otel_ml.decode.batch import ColumnarBatch
    from otel_ml.labels.ground_truth import GroundTruth
    from otel_ml.labels.pending import LabelsConfig
    from otel_ml.profile.loss_model import LossModel

    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 5000)
    model = LossModel.fit({"x": x}, {}, np.abs(rng.normal(0, 1, 5000)) * (1 + np.abs(x)), "abs", rounds=20)
    reference = PerformanceReference(PerformanceProfile(), loss_models={"abs": model})
    walked = []
    original = LossModel.predict

    def counted(self: LossModel, inputs: np.ndarray) -> np.ndarray:
        walked.append(len(inputs))
        return original(self, inputs)

    now = time.time_ns()
    batches = [ColumnarBatch("m", "", 1000, np.full(1000, now), np.ones(1000),
                             numeric={"x": rng.normal(0, 1, 1000), "prediction": np.zeros(1000)}) for _ in range(60)]
    estimates = {}
    for budget, ratio in ((10**9, 1.0), (2000, 0.1)):
        config = PerformanceConfig(loss_rows_per_window=budget, loss_sample_ratio=ratio)
        gt = GroundTruth(str(tmp_path / f"p{budget}"), LabelsConfig(), config, lambda m, v: reference)
        walked.clear()
        LossModel.predict = counted  # type: ignore[method-assign]
        try:
            for b in batches:
                gt.count_predictions(b)
        finally:
            LossModel.predict = original  # type: ignore[method-assign]
        sums = gt.current("m", "").sums
        estimates[budget] = (sums["dle_ae"] / sums["dle_n"], sums["dle_n"], sum(walked))
    full, sampled = estimates[10**9], estimates[2000]
    assert full[1] == 60_000 and full[2] == 60_000
    assert 1500 + 2000 < sampled[2] < 2000 + 7500  # the budget, then about a tenth of the other 58,000
    assert sampled[1] == pytest.approx(60_000, rel=0.05)  # the predictions the sample stands for
    assert sampled[0] == pytest.approx(full[0], rel=0.03)
