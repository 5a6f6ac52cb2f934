"""A regressor's expected loss given its inputs, for label-free performance estimates (in the spirit of NannyML's
DLE, direct loss estimation): gradient-boosted trees fitted at ``baseline build`` on the labelled reference
(features and the prediction → |error|, error² or |error / truth|) with LightGBM, as NannyML does, and kept in
the baseline file as plain arrays of numbers, so that loading a baseline can never execute code (no pickle).

At ingest the processor evaluates every row of a model that has one (vectorised over rows and trees) and adds the
predicted losses to the window's sums; a horizon's estimated MAE is their mean, RMSE the root of the mean of the
predicted squared errors, MAPE the mean of the predicted relative errors.

>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(0, 10, 2000)
>>> pred = 3 * x + rng.normal(0, 1 + x, 2000)  # errors grow with x
>>> model = LossModel.fit({"x": x}, {}, np.abs(pred - 3 * x), "abs", rounds=30)
>>> model.predict(model.matrix({"x": np.array([1.0, 9.0])}, {})).round(1)  # E|N(0, 1 + x)| = 0.8 (1 + x): 1.6, 8
array([1.8, 8.5])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otel_ml.profile.values import categorical_values, numeric_values

try:  # the compiled walk (setup.py builds it; optional there, like the decoder)
    from otel_ml.profile import _trees
except ImportError:  # pragma: no cover - without a C compiler at install
    _trees = None  # type: ignore[assignment]

TARGETS = ("abs", "squared", "abs_pct")
"""What a loss model predicts: |prediction − truth|, its square, or |prediction − truth| / |truth|."""


@dataclass
class LossModel:
    """A tree ensemble over ``columns`` (numeric), ``categories`` (a categorical with more than
    ``ONE_HOT_MAX`` categories, as its category's rank by mean loss on the reference, so one threshold splits like
    categories together; unseen ones are missing) and ``indicators`` (a categorical with few categories, one 0/1
    column per category, which is what LightGBM's own categorical split does for them). Trees are rows of padded
    (trees × nodes) arrays; a row goes left when its value <= the threshold, or when it is missing and
    ``missing_left`` (LightGBM's rules: ``zero_missing`` nodes count 0 as missing, ``nan_as_zero`` nodes read a
    missing value as 0)."""

    target: str
    columns: list[str]
    categories: dict[str, list[str]]
    indicators: list[tuple[str, str]]
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    zero_missing: np.ndarray
    nan_as_zero: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    depth: int
    _flags: np.ndarray | None = field(default=None, repr=False, compare=False)

    # --- fit ------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray], loss: np.ndarray, target: str,
            rounds: int = 100, leaves: int = 31, seed: int = 0) -> LossModel:
        """Fit on reference rows (``loss``: each row's realized loss; rows where it is not finite are left out)
        with LightGBM at NannyML's DLE defaults (100 rounds of ≤ 31 leaves, learning rate 0.1)."""
        import lightgbm  # only where baselines are built

        ok = np.isfinite(loss)
        categories, indicators = {}, []
        for name, values in categorical.items():
            v = values[ok].astype(str)
            uniq, inv = np.unique(v, return_inverse=True)
            present = [str(c) for c in uniq if c != ""]
            if len(present) <= ONE_HOT_MAX:
                indicators += [(name, c) for c in present]
            else:  # ordered by mean loss
                means = np.bincount(inv, weights=loss[ok]) / np.maximum(np.bincount(inv), 1)
                categories[name] = [str(c) for c in uniq[np.argsort(means, kind="stable")] if c != ""]
        shell = cls(target, list(numeric), categories, indicators, *(np.zeros((0, 1)) for _ in range(9)), 0)
        x = shell.matrix(numeric, categorical)[ok]
        booster = lightgbm.train({"objective": "regression", "num_leaves": leaves, "learning_rate": 0.1,
                                  "seed": seed, "deterministic": True, "num_threads": 1, "verbose": -1},
                                 lightgbm.Dataset(x, loss[ok]), num_boost_round=rounds)
        trees = [_nodes(t["tree_structure"]) for t in booster.dump_model()["tree_info"]]
        width = max(len(t) for t in trees)
        arrays = {}
        for name, dtype in _ARRAYS.items():
            arrays[name] = np.zeros((len(trees), width), dtype)
            for i, t in enumerate(trees):
                arrays[name][i, :len(t)] = [node[name] for node in t]
        model = cls(target, list(numeric), categories, indicators, *arrays.values(),
                    depth=max(node["depth"] for t in trees for node in t))
        check = x[: min(len(x), 2000)]
        if not np.allclose(model.predict(check), booster.predict(check), rtol=1e-9, atol=1e-9):
            raise RuntimeError("the exported loss model does not reproduce LightGBM's predictions")
        return model

    # --- use ------------------------------------------------------------------------------------------------
    @property
    def categorical_inputs(self) -> list[str]:
        """The categorical columns the model reads."""
        return list(dict.fromkeys([*self.categories, *(name for name, _ in self.indicators)]))

    def matrix(self, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray],
               n: int | None = None) -> np.ndarray:
        """The (rows × inputs) matrix: a column absent from the batch is missing (NaN) for all its rows. Each
        input is read by its kind whatever type the sender gave it (profile/values.py), as the profile reads it."""
        if n is None:
            n = len(next(iter([*numeric.values(), *categorical.values()])))
        x = np.full((n, len(self.columns) + len(self.categories) + len(self.indicators)), np.nan)
        for j, name in enumerate(self.columns):
            if name in numeric or name in categorical:
                x[:, j] = numeric_values(numeric.get(name), categorical.get(name), n)[0]
        j = len(self.columns)
        for name, cats in self.categories.items():
            v = categorical_values(numeric.get(name), categorical.get(name), n) if (
                name in numeric or name in categorical) else None
            if v is not None:  # each distinct value looked up once
                codes = {c: float(i) for i, c in enumerate(cats)}
                uniq, inv = np.unique(v.astype(str), return_inverse=True)
                x[:, j] = np.array([codes.get(c, np.nan) for c in uniq.tolist()], np.float64)[inv]
            j += 1
        for name, cat in self.indicators:
            v = categorical_values(numeric.get(name), categorical.get(name), n) if (
                name in numeric or name in categorical) else None
            if v is not None:
                text = v.astype(str)
                x[:, j] = np.where(text == "", np.nan, (text == cat).astype(float))
            j += 1
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Each row's expected loss: compiled (``_trees.c``: each row's path through each tree), else
        ``predict_numpy``."""
        if _trees is None:
            return self.predict_numpy(x)
        if self._flags is None:
            self._flags = np.ascontiguousarray(self.missing_left * 1 + self.zero_missing * 2 + self.nan_as_zero * 4
                                               + self.leaf * 8, dtype=np.uint8)
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty(len(x), np.float64)
        t, n = self.feature.shape
        _trees.predict(x, self.feature, self.threshold, self._flags, self.left, self.right, self.value, out,
                       len(x), x.shape[1] if x.ndim == 2 else 0, t, n)
        return out

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        """Each row's expected loss: every tree walked at once, one level per step (as fast as numpy goes, and
        ~100x slower than the compiled walk: it moves every (row, tree) pair to the deepest leaf's level)."""
        trees = np.arange(self.feature.shape[0])[None, :]
        at = np.zeros((len(x), self.feature.shape[0]), np.int32)
        rows = np.arange(len(x))[:, None]
        for _ in range(self.depth):
            v = x[rows, self.feature[trees, at]]
            nan = np.isnan(v)
            v = np.where(nan & self.nan_as_zero[trees, at], 0.0, v)
            missing = np.where(self.zero_missing[trees, at], nan | (np.abs(v) <= _ZERO), nan & ~self.nan_as_zero[
                trees, at])
            go_left = np.where(missing, self.missing_left[trees, at], v <= self.threshold[trees, at])
            nxt = np.where(go_left, self.left[trees, at], self.right[trees, at])
            at = np.where(self.leaf[trees, at], at, nxt)
        return self.value[trees, at].sum(axis=1)

    # --- state ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "columns": self.columns, "categories": self.categories,
                "indicators": [list(p) for p in self.indicators], "depth": self.depth,
                **{k: getattr(self, k).tolist() for k in _ARRAYS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossModel:
        """Plain numbers in, checked: indices within the arrays, so a damaged file fails here, not at ingest."""
        arrays = {k: np.asarray(d[k], dtype=dt) for k, dt in _ARRAYS.items()}
        shape = arrays["feature"].shape
        columns = [str(c) for c in d["columns"]]
        categories = {str(k): [str(c) for c in v] for k, v in d["categories"].items()}
        indicators = [(str(a), str(b)) for a, b in d["indicators"]]
        inputs = len(columns) + len(categories) + len(indicators)
        if d["target"] not in TARGETS or len(shape) != 2 or any(a.shape != shape for a in arrays.values()) or (
                shape[1] and (min(arrays["left"].min(), arrays["right"].min()) < 0
                              or max(arrays["left"].max(), arrays["right"].max()) >= shape[1]
                              or arrays["feature"].min() < 0 or arrays["feature"].max() >= max(inputs, 1))):
            raise ValueError("loss model: arrays of different shapes, or node/feature indices out of range")
        return cls(str(d["target"]), columns, categories, indicators, *arrays.values(), int(d["depth"]))


ONE_HOT_MAX = 4
"""A categorical with at most this many categories becomes one 0/1 input per category (LightGBM's
``max_cat_to_onehot``: its own split for so few categories is one category against the rest)."""
_ZERO = 1e-35  # LightGBM's kZeroThreshold
_ARRAYS = {"feature": np.int32, "threshold": np.float64, "missing_left": bool, "zero_missing": bool,
           "nan_as_zero": bool, "left": np.int32, "right": np.int32, "leaf": bool, "value": np.float64}


def _nodes(root: dict[str, Any]) -> list[dict[str, Any]]:
    """A LightGBM tree (``dump_model``'s nested dict) as a list of nodes, the root first, children by index."""
    nodes: list[dict[str, Any]] = []

    def visit(node: dict[str, Any], depth: int) -> int:
        at = len(nodes)
        nodes.append({})
        if "leaf_value" in node or "split_feature" not in node:
            nodes[at] = {"feature": 0, "threshold": 0.0, "missing_left": False, "zero_missing": False,
                         "nan_as_zero": False, "left": 0, "right": 0, "leaf": True,
                         "value": float(node.get("leaf_value", 0.0)), "depth": depth}
            return at
        if node.get("decision_type", "<=") != "<=":
            raise ValueError(f"loss model: a {node['decision_type']!r} split (only numeric splits are exported)")
        missing = node.get("missing_type", "None")
        left = visit(node["left_child"], depth + 1)
        right = visit(node["right_child"], depth + 1)
        nodes[at] = {"feature": int(node["split_feature"]), "threshold": float(node["threshold"]),
                     "missing_left": bool(node.get("default_left", False)), "zero_missing": missing == "Zero",
                     "nan_as_zero": missing == "None", "left": left, "right": right, "leaf": False, "value": 0.0,
                     "depth": depth}
        return at

    visit(root, 0)
    return nodes
