"""Issue 34: the PCA reconstruction error against scikit-learn's pipeline on the raw rows (NannyML's recipe)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from otel_ml.profile.reconstruction import Reconstruction


def test_errors_equal_scikit_learns_scaler_and_pca_and_a_damaged_baseline_is_refused() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    a = rng.normal(5, 2, n)
    numeric = {"a": a, "b": 0.5 * a + rng.normal(0, 1, n), "c": rng.exponential(1, n)}
    numeric["c"][::10] = np.nan  # imputed with the mean
    plan = rng.choice(np.array(["x", "y", "z", ""]), n, p=[0.5, 0.3, 0.15, 0.05])  # "" missing: the mode
    r = Reconstruction.fit(numeric, {"plan": plan})
    # The same recipe with scikit-learn on the raw rows.
    c = np.where(np.isnan(numeric["c"]), np.nanmean(numeric["c"]), numeric["c"])
    filled = np.where(plan == "", "x", plan)
    share = {k: np.mean(filled == k) for k in ("x", "y", "z")}
    x = np.column_stack([numeric["a"], numeric["b"], c, [share[k] for k in filled]])
    z = StandardScaler().fit_transform(x)
    pca = PCA(n_components=0.65).fit(z)
    want = np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1)
    assert r.components.shape[0] == pca.n_components_
    assert r.errors(numeric, {"plan": plan}, n) == pytest.approx(want, rel=1e-9, abs=1e-9)
    unseen = r.errors({"a": a[:2]}, {"plan": np.array(["new", "x"])}, 2)  # absent features imputed, unseen: 0
    assert np.isfinite(unseen).all()
    again = Reconstruction.from_dict(r.to_dict())
    assert again.errors(numeric, {"plan": plan}, n) == pytest.approx(want, rel=1e-9, abs=1e-9)
    damaged = r.to_dict()
    damaged["center"] = damaged["center"][:-1]
    with pytest.raises(ValueError, match="do not match"):
        Reconstruction.from_dict(damaged)


def test_the_reconstruction_error_is_never_an_input_of_the_loss_models(tmp_path) -> None:
    """--multivariate adds '(multivariate)' as a monitored feature; a regressor's DLE loss models learn from the
    same inputs with and without it, so its estimates stay equal to NannyML's DLE (issue 44)."""
    from otel_ml.profile.baseline import build_baseline

    rng = np.random.default_rng(4)
    n = 3000
    x1, x2, x3 = rng.normal(0, 1, n), rng.normal(5, 2, n), rng.choice(["a", "b", "c"], n)
    y = 2 * x1 + x2 + (x3 == "b") + rng.normal(0, 1, n)
    pred = 2 * x1 + x2 + rng.normal(0, 0.5, n)
    path = tmp_path / "reg.csv"
    path.write_text("x1,x2,x3,y,pred\n" + "".join(f"{a},{b},{c},{t},{p}\n"
                                                   for a, b, c, t, p in zip(x1, x2, x3, y, pred)))
    plain = build_baseline(path, "reg", target_column="y", prediction_column="pred")
    multi = build_baseline(path, "reg", target_column="y", prediction_column="pred", multivariate=True)
    assert "(multivariate)" in multi.features and multi.reconstruction is not None
    loss_plain, loss_multi = plain.performance.loss_models, multi.performance.loss_models
    assert sorted(loss_plain) == sorted(loss_multi) == ["abs", "abs_pct", "squared"]
    for target in loss_plain:
        assert "(multivariate)" not in loss_multi[target].columns
        assert loss_multi[target].to_dict() == loss_plain[target].to_dict()


def test_a_feature_sent_as_text_is_read_by_its_kind_as_the_profile_reads_it() -> None:
    """"16" sent for a numeric feature is 16 to the PCA as to its profile (it was an absent value, imputed with the
    reference's mean, so '(multivariate)' fired on reference rows); 3 sent for a categorical one is the category
    "3" (issue 44: kinds decided once, read alike)."""
    from otel_ml.profile.reconstruction import Reconstruction

    rng = np.random.default_rng(2)
    n = 500
    a = rng.normal(10, 3, n)
    b = a * 2 + rng.normal(0, 1, n)
    code = rng.choice(["1", "2", "3"], n)
    pca = Reconstruction.fit({"a": a, "b": b}, {"code": code})
    as_numbers = pca.errors({"a": a, "b": b, "code": np.full(n, np.nan)}, {"code": code}, n)
    as_text = pca.errors({"code": code.astype(float)}, {"a": np.array([repr(float(v)) for v in a]),
                                                        "b": np.array([repr(float(v)) for v in b])}, n)
    np.testing.assert_allclose(as_text, as_numbers, rtol=1e-12)
    imputed = pca.errors({}, {"code": code}, n)  # what absent values give: far from the rows' own errors
    assert not np.allclose(imputed, as_numbers)


def test_the_loss_models_read_an_input_by_its_kind_too() -> None:
    """DLE's trees read "3.5" sent for a numeric input as 3.5 and 2 sent for a categorical one as "2", as the
    profile and the PCA do (issue 44)."""
    from otel_ml.profile.loss_model import LossModel

    rng = np.random.default_rng(5)
    n = 2000
    x, city = rng.normal(0, 1, n), rng.choice(["1", "2", "3"], n)
    loss = np.abs(x) + (city == "2") + rng.normal(0, 0.1, n)
    model = LossModel.fit({"x": x}, {"city": city}, loss, "abs")
    as_kinds = model.matrix({"x": x}, {"city": city})
    as_sent = model.matrix({"city": city.astype(float)}, {"x": np.array([repr(float(v)) for v in x])}, n)
    np.testing.assert_array_equal(as_sent, as_kinds)
