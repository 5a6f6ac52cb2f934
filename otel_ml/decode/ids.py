"""Prediction ids as 64-bit hashes, and numbers as the text an int attribute would have been: what the label join
keys predictions, labels and LLM calls' evaluation results by."""

from __future__ import annotations

import numpy as np

_FNV_PRIME = np.uint64(1099511628211)
_MASK64 = (1 << 64) - 1


def mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit moves every output bit (the low bits decide sampling)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def model_seed(model: str) -> np.uint64:
    h = 14695981039346656037
    for b in model.encode("utf-8") + b"\x00":
        h = ((h ^ b) * 1099511628211) & _MASK64
    return np.uint64(h)


def id_hash(model: str, ids: np.ndarray) -> np.ndarray:
    """uint64 hash of each (model, id); 0 where the id is empty. ``ids`` is a numpy str array (any width: the
    hash does not depend on the padding), so this costs a few numpy passes per character position, not a Python
    call per row. Not keyed: an id's hash is as identifying as the id, and is stored only in the state dir.

    >>> a = id_hash("m", np.array(["req-1", "", "req-22"]))
    >>> bool(a[0] != 0), int(a[1]), bool(a[0] == id_hash("m", np.array(["req-1"], dtype="<U40"))[0])
    (True, 0, True)
    >>> bool(a[0] == id_hash("other", np.array(["req-1"]))[0])
    False
    """
    ids = np.ascontiguousarray(ids)
    n = len(ids)
    width = ids.dtype.itemsize // 4
    h = np.full(n, model_seed(model), dtype=np.uint64)
    if n == 0 or width == 0:
        return np.zeros(n, dtype=np.uint64)
    codes = ids.view(np.uint32).reshape(n, width)
    with np.errstate(over="ignore"):
        for j in range(width):
            c = codes[:, j].astype(np.uint64)
            h = np.where(c != 0, (h ^ c) * _FNV_PRIME, h)
        out = mix(h)
    out[codes[:, 0] == 0] = 0
    out[out == 0] = 1  # 0 means "no id"; a real id hashing to 0 (p = 2^-64) becomes 1
    out[codes[:, 0] == 0] = 0
    return out


def number_text(values: np.ndarray) -> np.ndarray:
    """Finite numbers as the text an int attribute would have been: ``1.0`` → ``"1"``, ``2.5`` → ``"2.5"``; one
    numpy conversion for the whole-number ones (ids, class labels), Python's repr only for the others.

    >>> number_text(np.array([1.0, 2.5, -3.0])).tolist()
    ['1', '2.5', '-3']
    """
    whole = values == np.floor(values)
    out = np.empty(len(values), dtype=object)
    out[whole] = values[whole].astype(np.int64).astype(str)
    if not whole.all():
        out[~whole] = [repr(float(x)) for x in values[~whole]]
    return out.astype(str)


def ids_as_text(numeric: np.ndarray | None, categorical: np.ndarray | None, n: int) -> np.ndarray:
    """One str array from an id column decoded as numbers (int ids) and/or strings."""
    out = categorical if categorical is not None else np.full(n, "", dtype="<U1")
    if numeric is not None:
        ok = np.isfinite(numeric)
        if ok.any():
            text = number_text(numeric[ok])
            out = out.astype(np.result_type(out.dtype, text.dtype))
            out[ok] = text
    return out
