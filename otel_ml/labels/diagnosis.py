"""Why labels do not join: examples and diagnoses of the labels that found no prediction.

A label that does not join is counted by reason (``ml.ground_truth.unmatched``); a count alone leaves a user
guessing. ``UnmatchedLabels`` keeps, per (model, version of the label), up to ``EXAMPLES`` ids as sent for each
reason, and a diagnosis where one can be made:

- ``normalised``: the label's id, changed by a common normalisation (surrounding spaces, case, leading zeros added
  or removed, a number written as ``123.0``), is the id of a prediction that waits or waited here: the ids are
  written differently on the two sides (an example pair is named).
- ``no_predictions``: no prediction of the label's model (and version) carried an id here: the labels name another
  model or version than the predictions, or the predictions carry no ``ml.prediction.id``.
- ``before_predictions``: predictions arrived whose labels had come earlier, waited ``labels.early_ttl_seconds``
  of their model's event clock and left as ``unknown``: the labels were sent (or stamped) before their predictions.

Only a few labels per batch are examined (``EXAMINED``), and only those that found no prediction: the cost is a
handful of hash look-ups, not a pass over the data. The ids of labels that left as ``unknown`` are kept in a sorted
array of at most ``MAX_GONE`` hashes, against which each batch of predictions with ids is checked (a binary search
per id, only while it is not empty). Held in memory, not checkpointed: a restart starts the examples afresh, while
the counts (in the checkpoint) go on.

>>> from otel_ml.decode.ids import id_hash
>>> d = UnmatchedLabels()
>>> d.record("m", "", "duplicate", np.array(["r1", "r2"]))
>>> d.document("m", "")["examples"]
{'duplicate': ['r1', 'r2']}
>>> seen = lambda ids: ids == id_hash("m", np.array(["123"]))[0]
>>> d.diagnose_ids("m", "", np.array(["000123"]), seen)
>>> d.document("m", "")["diagnoses"][0]["kind"]
'normalised'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from otel_ml.decode.ids import id_hash

EXAMPLES = 5
"""Example ids kept per reason (per model and label version)."""
EXAMINED = 5
"""Labels of one batch that found no prediction, examined for a normalisation that would join them."""
MAX_HELD = 200
"""Ids as sent kept per model for labels that wait, so that those that leave as ``unknown`` can be shown."""
MAX_GONE = 100_000
"""Hashes of labels that left as ``unknown`` kept (8 bytes each) to recognise their predictions arriving later."""


def _variants(text: str) -> list[tuple[str, str]]:
    """(normalisation, id) pairs: how the same id is often written on the other side."""
    out = [("surrounding spaces removed", text.strip()), ("lower case", text.lower()), ("upper case", text.upper())]
    stripped = text.strip()
    if stripped.isdigit():
        out.append(("leading zeros removed", stripped.lstrip("0") or "0"))
        out += [(f"zero-padded to {w} digits", stripped.zfill(w)) for w in range(len(stripped) + 1, 21)]
    try:
        number = float(stripped)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and not stripped.isdigit():
        out.append(("written as a whole number", str(int(number))))
    elif stripped.isdigit():
        out.append(("written as a decimal number", f"{int(stripped)}.0"))
    return [(how, v) for how, v in out if v != text and v]


class UnmatchedLabels:
    """Examples and diagnoses of labels that did not join, per (model, label version)."""

    def __init__(self) -> None:
        self.examples: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.diagnoses: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        """(model, version) → kind → the first diagnosis of that kind (and how often it was made)."""
        self._held: dict[str, dict[int, str]] = {}
        """Per model: hash → id as sent, of labels that wait (at most ``MAX_HELD`` per model)."""
        self._gone = np.empty(0, np.uint64)
        self._gone_model: dict[str, int] = {}

    # --- what happened to labels ------------------------------------------------------------------------
    def record(self, model: str, version: str, reason: str, ids: np.ndarray | None) -> None:
        """Keep up to ``EXAMPLES`` ids of labels not joined for ``reason``."""
        if ids is None or not len(ids):
            return
        kept = self.examples.setdefault((model, version), {}).setdefault(reason, [])
        for text in ids[:EXAMPLES - len(kept)].tolist():
            if text not in kept:
                kept.append(str(text))

    def hold(self, model: str, hashes: np.ndarray, ids: np.ndarray | None) -> None:
        """Labels that wait for their prediction: their ids as sent, while there is room."""
        if ids is None:
            return
        held = self._held.setdefault(model, {})
        room = MAX_HELD - len(held)
        if room > 0:
            held.update(zip(hashes[:room].tolist(), ids[:room].tolist()))

    def joined_late(self, model: str, hashes: np.ndarray) -> None:
        """Waiting labels that met their prediction: no longer examples of anything."""
        held = self._held.get(model)
        if held:
            for h in hashes.tolist():
                held.pop(h, None)

    def left_unknown(self, model: str, version: str, hashes: np.ndarray) -> None:
        """Labels that waited for their prediction in vain: examples of ``unknown``, and remembered, so that their
        predictions arriving later are recognised."""
        held = self._held.get(model, {})
        self.record(model, version, "unknown", np.array([held.pop(h) for h in hashes.tolist() if h in held][:EXAMPLES]))
        room = MAX_GONE - len(self._gone)
        if room > 0 and len(hashes):
            self._gone = np.unique(np.concatenate([self._gone, hashes[:room].astype(np.uint64)]))

    def on_predictions(self, model: str, version: str, hashes: np.ndarray) -> None:
        """Predictions with ids: those whose labels already left as ``unknown`` say the labels came first."""
        for (m, v), found in self.diagnoses.items():  # they have predictions now
            if m == model and v in ("", version):
                found.pop("no_predictions", None)
        if not len(self._gone) or not len(hashes):
            return
        pos = np.minimum(np.searchsorted(self._gone, hashes), len(self._gone) - 1)
        late = int((self._gone[pos] == hashes).sum())
        if late:
            self._diagnose(model, version, "before_predictions", late,
                           "predictions arrived after their labels had waited labels.early_ttl_seconds of the "
                           "model's event time and left as unknown: the labels were sent or stamped before their "
                           "predictions. Send labels after the predictions (otel-ml replay the predictions first, "
                           "then otel-ml labels send), or raise labels.early_ttl_seconds")

    # --- diagnoses ----------------------------------------------------------------------------------------
    def diagnose_ids(self, model: str, version: str, ids: np.ndarray | None,
                     seen: Callable[[np.ndarray], np.ndarray]) -> None:
        """Labels that found no prediction: does one of their ids, normalised, name a prediction seen here?"""
        if ids is None or not len(ids) or "normalised" in self.diagnoses.get((model, version), {}):
            return
        for text in ids[:EXAMINED].tolist():
            variants = _variants(str(text))
            if not variants:
                continue
            hits = seen(id_hash(model, np.array([v for _, v in variants])))
            if hits.any():
                how, other = variants[int(np.flatnonzero(hits)[0])]
                self._diagnose(model, version, "normalised", 1,
                               f"label ids do not match prediction ids as written, but would with {how}: label id "
                               f"{str(text)!r} ↔ prediction id {other!r}. Write ml.prediction.id the same way on "
                               "both sides (labels send: --id-column of the same type as the predictions' ids)",
                               {"label_id": str(text), "prediction_id": other, "normalisation": how})
                return

    def no_predictions(self, model: str, version: str, versions_with_ids: list[str]) -> None:
        """Labels came for a model (version) none of whose predictions carried an id here."""
        if versions_with_ids:
            text = (f"no prediction of model {model!r} version {version!r} carried an id here (versions with ids: "
                    f"{', '.join(repr(v) for v in versions_with_ids[:5])}): the labels name another version")
        else:
            text = (f"no prediction of model {model!r} carried an id (ml.prediction.id) here: the labels name "
                    "another model, or the predictions carry no ml.prediction.id")
        self._diagnose(model, version, "no_predictions", 1, text)

    def _diagnose(self, model: str, version: str, kind: str, n: int, text: str,
                  detail: dict[str, Any] | None = None) -> None:
        found = self.diagnoses.setdefault((model, version), {})
        if kind in found:
            found[kind]["count"] += n
        else:
            found[kind] = {"kind": kind, "message": text, "count": n, **(detail or {})}

    # --- reading ------------------------------------------------------------------------------------------
    def document(self, model: str, version: str) -> dict[str, Any]:
        """Examples by reason and diagnoses of labels of (model, version) (``{"examples", "diagnoses"}``)."""
        return {"examples": {r: list(ids) for r, ids in self.examples.get((model, version), {}).items()},
                "diagnoses": [dict(d) for d in self.diagnoses.get((model, version), {}).values()]}

    def label_keys(self) -> set[tuple[str, str]]:
        """(model, label version) with examples or diagnoses."""
        return set(self.examples) | set(self.diagnoses)
