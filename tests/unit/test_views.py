"""What the pages draw, for numbers at the edges of float64 (issue 30 case 4): every distribution has strictly
increasing edges and every chart draws, whatever the values (a baseline built from a CSV may hold ±1.7e308)."""

from __future__ import annotations

import base64
import itertools
import re
import time

import numpy as np
import pytest

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.read import views
from otel_ml.ui import charts, pages


def profile(values: list[float]) -> ModelProfile:
    n = len(values)
    t = np.full(n, time.time_ns(), np.int64)
    p = ModelProfile("m", "")
    p.update(ColumnarBatch("m", "", n, t, np.ones(n), numeric={"x": np.array(values, float)}, span_end_ns=t,
                           span_duration_s=np.zeros(n), span_error=np.zeros(n, bool)), {"x": "numeric"})
    return p


CASES = {
    "constant 1e15": [1e15] * 500,
    "constant 1e300": [1e300] * 500,
    "±1.7e308": [1.7e308, -1.7e308] * 250,
    "normal and 1.7e308": [*np.random.default_rng(0).normal(size=250), *[1.7e308] * 250],
    "subnormal": [5e-324, 1e-320] * 250,
    "constant": [3.0] * 500,
}


@pytest.mark.parametrize("values", CASES.values(), ids=CASES.keys())
def test_distribution_and_charts_for_extreme_numbers(values: list[float]) -> None:
    for ref in (profile(values), profile(list(np.random.default_rng(1).normal(size=500)))):
        cur = profile(values)
        dist = views.distribution(ref.features["x"], cur.features["x"])
        edges = dist["edges"]
        assert all(a < b for a, b in itertools.pairwise(edges)) and len(edges) >= 2
        drawn = pages.distribution_charts(dist)
        assert drawn and all(svg.startswith("data:image/svg+xml;base64,") for _title, svg in drawn)
        views.profile_summary(cur.features["x"])


def test_p_value_axis_reads_as_numbers_and_stops_at_one() -> None:
    """Issue 31 case 5: log ticks printed ``$\\mathdefault{10^{-59}}$`` literally (math text is off so that names
    stay literal)."""
    uri = charts.score_history([time.time() + i for i in range(4)], [1e-59, 0.5, 1e-3, None], 0.01,
                               [0.1, 0.2, 0.3, 0.4], "psi")
    svg = base64.b64decode(uri.split(",", 1)[1]).decode()
    assert "mathdefault" not in svg
    ticks = set(re.findall(r">(1e-\d+|1|0\.\d+)<", svg))
    assert "1" in ticks and any(t.startswith("1e-") for t in ticks), ticks
