"""Which kept rows show a feature's drift: the example predictions a report, a page and an exemplar point at.

A numeric feature keeps a row in each of 8 bands of its grid, a categorical one a row of up to 8 categories
(profile/exemplars.py). Here the bands and categories are ranked by how much of the current horizon's mass they
gained against the reference (current share - reference share, both from the sketches): the first rows are from
where the distribution moved to. Without a reference, the newest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from otel_ml.profile.exemplars import Exemplars
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import EXEMPLAR_BAND_EDGES, CategoricalProfile, FeatureProfile, NumericProfile

EXEMPLARS_SHOWN = 3
"""Rows a feature's report carries, the most telling first."""


@dataclass(frozen=True)
class Exemplar:
    """One prediction behind a feature's numbers: its span, when, its value, and how its band or category moved."""

    trace_id: str
    """Hex, as tracing back ends spell it."""
    span_id: str
    time_ns: int
    value: float | str
    current_share: float
    """Share of the current horizon's values in the row's band (numeric) or category."""
    reference_share: float
    """The same share in the reference; NaN without one."""

    def to_dict(self) -> dict[str, object]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "time_ns": self.time_ns,
                "value": self.value if isinstance(self.value, str) or math.isfinite(self.value) else None,
                "current_share": _finite_or_none(self.current_share),
                "reference_share": _finite_or_none(self.reference_share)}


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _band_shares(profile: NumericProfile, grid: tuple[float, float]) -> np.ndarray:
    """The share of ``profile``'s values in each exemplar band of ``grid`` (from its sketch)."""
    center, scale = grid
    with np.errstate(over="ignore", invalid="ignore"):
        edges = center + scale * np.sinh(np.asarray(EXEMPLAR_BAND_EDGES))
    if not np.isfinite(edges).all():  # a grid of overflowed quartiles
        return np.full(len(edges) + 1, math.nan)
    # Edges of a tiny scale round to equal values (subnormal features): the sketch wants distinct split points.
    distinct = np.unique(edges)
    below = np.asarray(profile.sketch.get_cdf(distinct.tolist(), False))[:-1]  # exclusive: a band is [lower, upper)
    return np.diff(below[np.searchsorted(distinct, edges)], prepend=0.0, append=1.0)


def feature_exemplars(name: str, kept: Exemplars, current: FeatureProfile, reference: FeatureProfile | None,
                      shown: int = EXEMPLARS_SHOWN) -> list[Exemplar]:
    """Up to ``shown`` of ``name``'s kept rows, from where the current distribution gained most on the reference's
    (the newest first without a reference, or for a band or category that gained nothing).

    >>> from otel_ml.profile.exemplars import BatchRows, SLOTS
    >>> ref, cur = NumericProfile(grid=(0.0, 1.0)), NumericProfile(grid=(0.0, 1.0))
    >>> ref.update(np.linspace(-1, 1, 100)); cur.update(np.linspace(-1, 1, 90)); cur.update(np.full(10, 5.0))
    >>> kept, last = Exemplars(), np.full((1, SLOTS), -1, np.int32); last[0, [3, 7]] = [0, 1]  # near 0, and 5.0
    >>> kept.add_numeric(["x"], last, np.array([[0.0] * 7 + [5.0]]), BatchRows(np.array([2, 1]), None,
    ...                  np.ones((2, 24), np.uint8)))
    >>> chosen = feature_exemplars("x", kept, cur, ref)
    >>> [(e.value, round(e.current_share, 2), round(e.reference_share, 2)) for e in chosen]
    [(5.0, 0.1, 0.0), (0.0, 0.23, 0.26)]
    """
    rows = kept.of(name)
    if not rows or not current.count:
        return []
    current_share: dict[int | str, float] = {}
    reference_share: dict[int | str, float] = {}
    if isinstance(current, NumericProfile) and current.grid is not None:
        current_share = dict(enumerate(_band_shares(current, current.grid).tolist()))
        if isinstance(reference, NumericProfile) and reference.count:
            reference_share = dict(enumerate(_band_shares(reference, current.grid).tolist()))
    elif isinstance(current, CategoricalProfile):
        frequencies = current.frequencies()
        current_share = {key: frequencies.get(str(key), 0) / current.count for key, *_ in rows}
        if isinstance(reference, CategoricalProfile) and reference.count:
            theirs = reference.frequencies()
            reference_share = {key: theirs.get(str(key), 0) / reference.count for key, *_ in rows}

    def gain(key: int | str) -> float:
        if key not in reference_share or key not in current_share:
            return 0.0
        return max(0.0, current_share[key] - reference_share[key])

    ranked = sorted(rows, key=lambda r: (-gain(r[0]), -r[1]))[:shown]
    return [Exemplar(trace, span, time_ns, value, current_share.get(key, math.nan),
                     reference_share.get(key, math.nan)) for key, time_ns, value, trace, span in ranked]


def exemplars_of(feature: str, chosen: list[Exemplar], reference: ModelProfile | None,
                 current: ModelProfile | None) -> list[Exemplar]:
    """A feature's example predictions: those its evaluation chose (a drifted feature), else chosen now from the
    profiles it was evaluated on."""
    if chosen or current is None or feature not in current.features:
        return chosen
    ours = reference.features.get(feature) if reference is not None else None
    return feature_exemplars(feature, current.exemplars, current.features[feature], ours)


__all__ = ["EXEMPLARS_SHOWN", "Exemplar", "exemplars_of", "feature_exemplars"]
