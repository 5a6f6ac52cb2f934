"""What became of labels, for people: the per-model status the API and pages show (``label_status``), and the log
lines an operator needs once per model (``LabelWarnings``). Read from each partition's ``GroundTruth``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.segments import MAX_PROBABILITY_CLASSES

log = logging.getLogger(__name__)

Key = tuple[str, str]
UNJOINED_WARNING = 0.1
"""Share of a model's labels of one evaluation interval (at least 10) failing to join that is logged."""


def label_status(labels: Iterable[GroundTruth], exports: Callable[[str], bool]) -> dict[Key, dict]:
    """Per (model, label version) of the models ``exports`` says: labels joined and not joined by reason (since the
    state began), up to 5 examples per reason and the diagnoses (labels/diagnosis.py), over every partition."""
    out: dict[Key, dict] = {}
    for gt in labels:
        for (model, version, reason), n in gt.totals.items():
            if exports(model):
                doc = out.setdefault((model, version), _label_doc())
                counts = doc["joined"] if reason == "applied" else doc["unmatched"]
                counts[reason] = counts.get(reason, 0) + n
        for key in gt.diagnosis.label_keys():
            if exports(key[0]):
                found = gt.diagnosis.document(*key)
                doc = out.setdefault(key, _label_doc())
                for reason, ids in found["examples"].items():
                    doc["examples"].setdefault(reason, []).extend(ids[:5 - len(doc["examples"].get(reason, []))])
                doc["diagnoses"] += found["diagnoses"]
    for doc in out.values():
        doc["joined"] = doc["joined"].get("applied", 0)
    return out


def _label_doc() -> dict:
    return {"joined": {}, "unmatched": {}, "examples": {}, "diagnoses": []}


class LabelWarnings:
    """One log line per model: when more than ``UNJOINED_WARNING`` of an interval's labels did not join (with the
    first diagnosis), and when its log loss is withheld past the join's class limit."""

    def __init__(self) -> None:
        self._unjoined: set[str] = set()
        self._withheld: set[Key] = set()

    def interval(self, labels: GroundTruth, applied: Counter, unmatched: Counter, withheld: Counter) -> None:
        by_model: dict[str, Counter] = {}
        for (model, _version), n in applied.items():
            by_model.setdefault(model, Counter())["joined"] += n
        for (model, _version, reason), n in unmatched.items():
            by_model.setdefault(model, Counter())[reason] += n
        for model, counts in by_model.items():
            total = sum(counts.values())
            missed = total - counts["joined"]
            if model in self._unjoined or total < 10 or missed <= UNJOINED_WARNING * total:
                continue
            self._unjoined.add(model)
            reasons = ", ".join(f"{r} {n}" for r, n in counts.most_common() if r != "joined")
            found = [d["message"] for (m, v) in labels.diagnosis.label_keys() if m == model
                     for d in labels.diagnosis.document(m, v)["diagnoses"]]
            log.warning("model %r: %d of %d labels did not join their predictions (%s)%s; the performance API and "
                        "the model page list examples (logged once per model)", model, missed, total, reasons,
                        f": {found[0]}" if found else "")
        for key in withheld:
            if key not in self._withheld:
                self._withheld.add(key)
                log.warning("model %r version %r gives probabilities of more than %d classes: the label join keeps "
                            "%d, so its log loss is withheld (otel_ml_log_loss_withheld_total); accuracy and each "
                            "kept class's ROC AUC are not affected", *key, MAX_PROBABILITY_CLASSES,
                            MAX_PROBABILITY_CLASSES)
