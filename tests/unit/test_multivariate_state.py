"""Issue 34: the correlation test's moments (exact against numpy, mergeable on any basis, calibrated) and
``ml.embedding`` (decoded, projected, rejected with a reason when malformed; recorded by the instrumentation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from otel_ml import semconv
from otel_ml.analyze.correlation import correlation_changes
from otel_ml.analyze.drift import compare
from otel_ml.decode import otlp
from otel_ml.decode.embedding import COLUMNS, NORM_COLUMN, embedding_columns, projection
from otel_ml.decode.limits import DecodeLimits
from otel_ml.instrument.monitor import embedding_attributes
from otel_ml.profile.comoments import Comoments
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.window import NS, WindowConfig, WindowedProfile
from tests.support import request


def skewed(rng: np.random.Generator, n: int, rho: float = 0.6) -> dict[str, np.ndarray]:
    """Four features, two of them log-normal and correlated, one heavy-tailed (t with 5 degrees of freedom). Their
    magnitudes keep clear of a power of ten, so that every sample picks the same ``s`` (profile/comoments.py)."""
    z = rng.normal(size=(n, 4))
    z[:, 1] = rho * z[:, 0] + math.sqrt(1 - rho * rho) * z[:, 1]
    return {"income": 3 * np.exp(z[:, 0]), "spend": 2 * np.exp(0.5 * z[:, 1]), "tail": rng.standard_t(5, n),
            "age": z[:, 3]}


def test_comoments_give_numpys_correlations_after_merges_across_bases_and_missing_values() -> None:
    rng = np.random.default_rng(3)
    data = skewed(rng, 9000)
    data["spend"][::7] = np.nan
    data["tail"][::11] = np.inf  # ±inf is a missing value too
    parts = [slice(0, 2000), slice(2000, 5000), slice(5000, 9000)]
    sets = []
    for k, part in enumerate(parts):  # each on a basis of its own, one lacking a feature
        cols = {name: v[part] for name, v in data.items() if not (k == 1 and name == "age")}
        c = Comoments.chosen(cols, 10)
        assert c is not None
        c.update(cols, part.stop - part.start)
        sets.append(c)
    merged = sets[0].copy()
    for c in sets[1:]:
        merged.merge(Comoments.from_dict(c.to_dict()))  # through its stored form
    for a in range(len(merged.features)):
        for b in range(a + 1, len(merged.features)):
            x, y = (np.arcsinh(data[merged.features[k]] / merged.tscale[k]) for k in (a, b))
            if "age" in (merged.features[a], merged.features[b]):
                x[2000:5000] = np.nan
            ok = np.isfinite(x) & np.isfinite(y)
            n, r, _ = merged.pair(a, b)
            assert n == ok.sum()
            assert r == pytest.approx(np.corrcoef(x[ok], y[ok])[0, 1], abs=1e-9)


def test_sets_on_different_transforms_merge_alike_in_any_order_and_grouping() -> None:
    """A standard normal's interquartile range (1.35) is near a power of ten: Kafka partitions choose s = 1 or 0.1
    for it from their own first values. Merged one by one in any order, or two groups first (three replicas), the
    moments are the same: the larger s's rows, numpy's correlation on them."""
    import itertools

    rng = np.random.default_rng(11)
    z = rng.normal(size=(6000, 2))
    data = {"x": z[:, 0], "y": 0.5 * z[:, 0] + z[:, 1], "w": 20 + 5 * rng.gamma(2.0, size=6000)}
    tscales = [(1.0, 1.0, 10.0), (0.1, 1.0, 10.0), (1.0, 1.0, 1.0), (0.1, 1.0, 10.0)]  # partitions' choices
    sets = []
    for k, ts in enumerate(tscales):
        part = slice(1500 * k, 1500 * (k + 1))
        c = Comoments.on_basis(["x", "y", "w"], np.full(3, 0.1 * k), np.full(3, 1.0 + k), np.array(ts))
        c.update({name: v[part] for name, v in data.items()}, 1500)
        sets.append(c)

    def merged(order: list[Comoments]) -> Comoments:
        out = order[0].copy()
        for c in order[1:]:
            out.merge(c.copy())
        return out

    results = [merged(list(order)) for order in itertools.permutations(sets)]
    results.append(merged([merged(sets[2:]), merged(sets[:2])]))  # two replicas' merges, then one of them
    for result in results:
        pairs = {(result.features[a], result.features[b]): result.pair(a, b)
                 for a in range(3) for b in range(3) if a != b}
        assert dict(zip(result.features, result.tscale)) == {"x": 1.0, "y": 1.0, "w": 10.0}
        for (f, g), (n, r, _) in pairs.items():
            rows = np.zeros(6000, bool)  # the rows of the sets on the kept s of both features
            for k, ts in enumerate(tscales):
                if ts[["x", "y", "w"].index(f)] == result.tscale[result.features.index(f)] and \
                        ts[["x", "y", "w"].index(g)] == result.tscale[result.features.index(g)]:
                    rows[1500 * k:1500 * (k + 1)] = True
            t = {name: np.arcsinh(data[name][rows] / result.tscale[result.features.index(name)]) for name in (f, g)}
            assert n == rows.sum()
            if n:
                assert r == pytest.approx(np.corrcoef(t[f], t[g])[0, 1], abs=1e-9)


def test_the_delta_method_variance_matches_the_spread_of_r_for_skewed_features() -> None:
    """n·var(r) from the fourth moments against the variance of r over 400 independent samples: within 20% (the
    spread's own sampling error at 400 draws is ~7%; on the raw log-normal values, not their asinh, the estimate's
    median was 40% low and the normal-theory (1 - r²)² a factor of 10)."""
    rng = np.random.default_rng(5)
    rs, vs = [], []
    for _ in range(400):
        d = skewed(rng, 2000)
        c = Comoments.chosen(d, 10)
        c.update(d, 2000)
        _, r, v = c.pair(c.features.index("income"), c.features.index("spend"))
        rs.append(r)
        vs.append(v)
    spread = np.var(rs) * 2000
    assert np.median(vs) == pytest.approx(spread, rel=0.2)


def test_the_correlation_test_keeps_its_level_on_skewed_data_and_sees_a_changed_pairing() -> None:
    """Stationary (A/A): 300 tests at α = 0.05 fire at most 0.05 + 3σ of their count (Bonferroni's bound over
    the six pairs makes the test conservative when few pairs move). The same marginals paired otherwise (spend
    shuffled against income): detected, that pair first."""
    rng = np.random.default_rng(8)
    ref_data = skewed(rng, 5000)
    ref = Comoments.chosen(ref_data, 10)
    ref.update(ref_data, 5000)
    fired = 0
    for _ in range(300):
        cur_data = skewed(rng, 2000)
        cur = ref.empty_like()
        cur.update(cur_data, 2000)
        fired += correlation_changes(ref, cur, 100).p_value < 0.05
    assert fired <= 300 * 0.05 + 3 * math.sqrt(300 * 0.05 * 0.95)
    broken = skewed(rng, 2000)
    broken["spend"] = rng.permutation(broken["spend"])  # its marginal is the same sample, its pairing random
    cur = ref.empty_like()
    cur.update(broken, 2000)
    result = correlation_changes(ref, cur, 100)
    assert result.p_value < 1e-12 and set(result.changes[0].pair) == {"income", "spend"}


def test_windows_keep_moments_and_the_report_has_the_correlation_row() -> None:
    cfg = WindowConfig(window_seconds=1, horizon_seconds=2, allowed_lateness_seconds=0, reference_min_rows=100)
    wp = WindowedProfile("m", "", cfg)
    rng = np.random.default_rng(1)
    from otel_ml.decode.batch import ColumnarBatch

    for t in range(6):
        d = skewed(rng, 400, rho=0.6 if t < 3 else -0.6)
        b = ColumnarBatch("m", "", 400, np.full(400, t * NS), np.ones(400), numeric=d,
                          span_end_ns=np.array([t * NS]), span_duration_s=np.array([0.01]),
                          span_error=np.array([False]))
        wp.update(b)
    assert wp.reference is not None and wp.reference.comoments is not None
    report = compare(wp.reference, wp.current())
    row = next(f for f in report.features if f.feature == semconv.CORRELATION_FEATURE)
    assert row.overall.detected and row.current_count == 800
    assert set(report.correlations[0].pair) == {"income", "spend"}
    assert ModelProfile.from_json(wp.current().to_json()).comoments is not None


# --- ml.embedding ----------------------------------------------------------------------------------------
def decode(*spans: dict[str, object]):
    return otlp.decode_request(request(*spans).SerializeToString(), DecodeLimits())


def test_a_batch_spans_embedding_becomes_its_projections_and_norm() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 12))
    vectors[2] = np.nan  # a missing vector: every column missing in that row
    data = request({"ml.model.name": "m", "ml.batch.size": 5, "ml.feature.x": [1.0, 2.0, 3.0, 4.0, 5.0],
                    "ml.embedding": vectors.ravel().tolist(), "ml.embedding.dimension": 12},
                   {"ml.model.name": "m", "ml.feature.x": 6.0, "ml.embedding": rng.normal(size=12).tolist()},
                   {"ml.model.name": "m", "ml.feature.x": 7.0}).SerializeToString()
    out = otlp.decode_request_python(data, DecodeLimits())
    if otlp.COMPILED:  # the compiled decoder gathers the same numbers; both project them with one function
        compiled = otlp.decode_request_compiled(data, DecodeLimits())
        assert compiled is not None
        for name, column in out.batches[0].numeric.items():
            assert np.array_equal(column, compiled.batches[0].numeric[name], equal_nan=True), name
    (batch,) = out.batches
    assert batch.n_rows == 7 and not out.rejected
    expected = embedding_columns(vectors)
    for name in [*COLUMNS, NORM_COLUMN]:
        np.testing.assert_allclose(batch.numeric[name][:5], expected[name], rtol=1e-12, equal_nan=True)
    assert np.isnan(batch.numeric[COLUMNS[0]][2]) and np.isfinite(batch.numeric[COLUMNS[0]][5])
    assert np.isnan(batch.numeric[NORM_COLUMN][6])  # the span without an embedding


@pytest.mark.parametrize("attrs, reason", [
    ({"ml.batch.size": 2, "ml.embedding": [1.0, 2.0, 3.0]}, "embedding_length_mismatch"),
    ({"ml.batch.size": 2, "ml.embedding": [1.0, 2.0, 3.0, 4.0], "ml.embedding.dimension": 3},
     "embedding_length_mismatch"),
    ({"ml.embedding": 1.0}, "invalid_embedding"),
    ({"ml.embedding": ["a", "b"]}, "invalid_embedding"),
    ({"ml.embedding": [1.0, math.inf]}, "invalid_embedding"),
    ({"ml.embedding": [0.5] * 5000}, "embedding_too_large"),
])
def test_a_malformed_embedding_is_rejected_with_a_reason(attrs: dict, reason: str) -> None:
    out = decode({"ml.model.name": "m", **attrs})
    assert out.rejected == {reason: 1} and not out.batches, out.rejected
    assert out.examples[reason]


def test_two_dimensions_for_one_model_in_one_request_reject_the_second() -> None:
    declined = otlp.DECLINED["embedding_dimension_mismatch"]
    out = decode({"ml.model.name": "m", "ml.embedding": [1.0, 2.0]}, {"ml.model.name": "m", "ml.embedding": [1.0]})
    assert out.rejected == {"embedding_dimension_mismatch": 1} and out.batches[0].n_rows == 1
    assert otlp.DECLINED["embedding_dimension_mismatch"] == declined + otlp.COMPILED  # the reference decided


def test_a_feature_named_like_a_projection_is_rejected_by_both_decoders() -> None:
    assert decode({"ml.model.name": "m", "ml.feature.(embedding).0": 1.0}).rejected == {"reserved_feature_name": 1}
    assert decode({"ml.model.name": "m", "ml.feature.(correlation)": 1.0}).rejected == {"reserved_feature_name": 1}


def test_the_projection_depends_on_the_dimension_only_and_preserves_distances() -> None:
    p = projection(384)
    assert p.shape == (384, 16) and set(np.unique(p * math.sqrt(384))) == {-1.0, 1.0}
    assert np.array_equal(p, projection.__wrapped__(384))
    rng = np.random.default_rng(2)
    v = rng.normal(size=(2000, 384))
    # E[|v P|²] = |v|² · 16 / 384 for ±1/√d signs (Johnson–Lindenstrauss): within 5% over 2,000 vectors
    ratio = (np.linalg.norm(v @ p, axis=1) ** 2).mean() / (np.linalg.norm(v, axis=1) ** 2).mean()
    assert ratio == pytest.approx(16 / 384, rel=0.05)


def test_the_instrumentation_flattens_embeddings_and_fills_missing_rows() -> None:
    attrs = embedding_attributes(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert attrs == {"ml.embedding": [1.0, 2.0, 3.0, 4.0], "ml.embedding.dimension": 2}
    with pytest.raises(ValueError, match="different lengths"):
        embedding_attributes([[1.0], [1.0, 2.0]])
