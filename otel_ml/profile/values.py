"""A feature's values read as its kind, whatever type the sender gave them: the one rule the profile, the PCA of
``--multivariate``, the correlation moments and the loss models all read a column by, so a feature decided
numeric (or categorical) is the same numbers (or categories) to each of them."""

from __future__ import annotations

import numpy as np


def category_strings(values: np.ndarray) -> np.ndarray:
    """Canonical category text of numbers, the same for a CSV cell and a span attribute.

    >>> category_strings(np.array([3.0, 3.5, np.nan])).tolist()
    ['3', '3.5', '']
    """
    out = np.full(len(values), "", dtype=object)
    finite = np.isfinite(values)
    integral = finite & (np.mod(values, 1) == 0) & (np.abs(values) < 2**53)
    out[integral] = values[integral].astype(np.int64).astype(str)
    rest = finite & ~integral
    out[rest] = values[rest].astype(str)
    return out.astype(str)


_BOOL_SPELLINGS = ["True", "TRUE", "False", "FALSE"]
_BOOL_TEXT = {"true": 1.0, "false": 0.0, "True": 1.0, "False": 0.0, "TRUE": 1.0, "FALSE": 0.0}


def _parse_number(text: str) -> float:
    if text in _BOOL_TEXT:
        return _BOOL_TEXT[text]
    try:
        return float(text)
    except ValueError:
        return np.nan


def numeric_values(num: np.ndarray | None, cat: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """The values of a numeric feature, and how many rows held a value that is not a number.

    Senders do not always agree on types, so text that reads as a number ("3.5") or a bool
    ("true" → 1, "false" → 0) counts as that number; other text is a type mismatch.

    >>> values, wrong = numeric_values(np.array([1.0, np.nan, np.nan, np.nan]), np.array(["", "2.5", "true", "x"]), 4)
    >>> values.tolist(), wrong
    ([1.0, 2.5, 1.0, nan], 1)
    """
    values = num if num is not None else np.full(n, np.nan)
    if cat is None:
        return values, 0
    texts = cat != ""
    if not texts.any():
        return values, 0
    values = values.copy()
    uniq, inverse = np.unique(cat[texts], return_inverse=True)
    parsed = np.array([_parse_number(u) for u in uniq.tolist()])[inverse]
    values[texts] = parsed
    return values, int(np.isnan(parsed).sum())


def categorical_values(num: np.ndarray | None, cat: np.ndarray | None, n: int) -> np.ndarray:
    """The values of a categorical feature: numbers become their canonical text (integer-coded classes)
    and the spellings of a bool become "true"/"false", as bool attributes and baseline CSVs give them.

    >>> categorical_values(np.array([3.0, np.nan, np.nan]), np.array(["", "True", "x"]), 3).tolist()
    ['3', 'true', 'x']
    """
    values = cat if cat is not None else np.full(n, "", dtype="<U1")
    if num is not None:
        has_num = ~np.isnan(num)
        if has_num.any():
            values = np.where(has_num, category_strings(num), values)
    if values.dtype.kind == "U" and values.dtype.itemsize < 16:
        return values  # texts of at most 3 characters: no spelling of a bool (np.isin's sort was 5% of ingest)
    hit = np.zeros(len(values), dtype=bool)
    for spelling in _BOOL_SPELLINGS:
        hit |= values == spelling
    if hit.any():
        values = np.where(hit, np.char.lower(values.astype(str)), values)
    return values
