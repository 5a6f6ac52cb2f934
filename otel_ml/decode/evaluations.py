"""Evaluation results of LLM calls (``gen_ai.evaluation.result``) as the ground truth of GenAI models (issue 45).

The conventions allow two shapes, both read: a span event (on the call's span, or on a span whose parent is the
call's) and a log record (an event, ``event_name`` or the ``event.name`` attribute) parented to the call's span.
Either carries ``gen_ai.evaluation.name`` and a score (``gen_ai.evaluation.score.value``), a label
(``gen_ai.evaluation.score.label``) or both. A result joins its call by the call's span id: the key
``call_key`` makes of it is what both decoders give the call (the column ``gen_ai.call.id``), hashed in one
namespace for every model (``semconv.GENAI_CALLS``), since a result does not name its call's model. A result
without a span context joins by the ``gen_ai.response.id`` it names, the call's second key (``call_alias``, from
the call's own ``gen_ai.response.id``: the column ``gen_ai.call.response_id``); with neither it is refused
(``evaluation_without_call``).

Results leave the decoder as ``LabelBatch``es whose model is ``gen_ai.evaluation`` and whose version is the
evaluation's name; the join (labels/ground_truth.py) finds each one's call and counts it in the call's model,
version and window (``PerformanceProfile.evaluations``).

>>> rows = EvaluationRows()
>>> result = read_evaluation({"gen_ai.evaluation.name": AnyValue(string_value="relevance"),
...                           "gen_ai.evaluation.score.value": AnyValue(double_value=0.8)})
>>> rows.add(result, b"\\x00" * 7 + b"\\x05", 9)
True
>>> [(b.model, b.version, b.value.tolist(), b.id_text.tolist()) for b in rows.batches()]
[('gen_ai.evaluation', 'relevance', [0.8], ['5'])]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otel_ml import semconv
from otel_ml.decode.batch import ID_TEXT_SAMPLE, LabelBatch
from otel_ml.decode.ids import mix, model_seed, number_text

KEY_BITS = 53
"""A call's key is its span id's low 53 bits: a number float64 columns hold exactly (a collision among the calls
waiting at once is as unlikely as one of the 64-bit id hashes)."""
_KEY_MASK = (1 << KEY_BITS) - 1
_SEED = model_seed(semconv.GENAI_CALLS)
_RESPONSE_SEED = model_seed(semconv.GENAI_RESPONSES)
MAX_LABEL_LENGTH = 256


def call_key(span_id: bytes) -> int:
    """The join key of the call whose span id is ``span_id`` (0: none, an invalid id).

    >>> call_key(bytes.fromhex("00f067aa0ba902b7")), call_key(b"")
    (4617579665097399, 0)
    """
    if len(span_id) != 8:
        return 0
    return int.from_bytes(span_id, "big") & _KEY_MASK


def response_key(response_id: str) -> int:
    """A ``gen_ai.response.id``'s key: FNV-1a (64-bit) of its UTF-8 bytes, low 53 bits (never 0), as the compiled
    decoder computes it for the call's column ``gen_ai.call.response_id``.

    >>> response_key("chatcmpl-1"), response_key("")
    (5297933624363697, 0)
    """
    if not response_id:
        return 0
    h = 14695981039346656037
    for b in response_id.encode("utf-8"):
        h = ((h ^ b) * 1099511628211) & 0xFFFF_FFFF_FFFF_FFFF
    return (h & _KEY_MASK) or 1


def keyed(keys: np.ndarray, seed: np.uint64) -> np.ndarray:
    """The id hashes of keys (float64, exact below 2^53; NaN or 0: none → 0) in the namespace of ``seed``: numbers
    all the way (no text per row, as ``id_hash`` needs for ids sent as text)."""
    ok = np.isfinite(keys) & (keys != 0)
    out = np.zeros(len(keys), np.uint64)
    if ok.any():
        out[ok] = mix(keys[ok].astype(np.uint64) ^ seed)
        out[ok & (out == 0)] = 1  # 0 means "no id"
    return out


def call_ids(keys: np.ndarray) -> np.ndarray:
    """The ``prediction_id`` of calls (or results) with these span keys (``call_key``).

    >>> ids = call_ids(np.array([5.0, np.nan, 5.0, 6.0]))
    >>> bool(ids[0] == ids[2] != ids[3]), int(ids[1])
    (True, 0)
    """
    return keyed(keys, _SEED)


def response_ids(keys: np.ndarray) -> np.ndarray:
    """The ``call_alias`` of calls (or results) with these response keys (``response_key``): another namespace."""
    return keyed(keys, _RESPONSE_SEED)


@dataclass(frozen=True)
class Evaluation:
    name: str
    score: float
    label: str
    response_id: str = ""
    """The ``gen_ai.response.id`` it names: what it joins by when it has no span context."""


def read_evaluation(attrs: Mapping[str, AnyValue]) -> Evaluation | tuple[str, str]:
    """One result from its attributes, or (reason, detail) of why it is refused (``invalid_evaluation``)."""
    name_v = attrs.get(semconv.GENAI_EVALUATION_NAME)
    name = name_v.string_value if name_v is not None and name_v.WhichOneof("value") == "string_value" else ""
    if not name:
        return "invalid_evaluation", f"a {semconv.GENAI_EVALUATION_EVENT} without {semconv.GENAI_EVALUATION_NAME}"
    if len(name) > MAX_LABEL_LENGTH:  # a name is a key of the join's code table and of every window: bounded
        return "invalid_evaluation", f"{semconv.GENAI_EVALUATION_NAME} over {MAX_LABEL_LENGTH} characters"
    score = math.nan
    score_v = attrs.get(semconv.GENAI_EVALUATION_SCORE)
    if score_v is not None:
        kind = score_v.WhichOneof("value")
        score = score_v.double_value if kind == "double_value" else float(score_v.int_value) \
            if kind == "int_value" else math.inf
        if not math.isfinite(score):
            return "invalid_evaluation", f"{semconv.GENAI_EVALUATION_SCORE} must be a finite number"
    label_v = attrs.get(semconv.GENAI_EVALUATION_LABEL)
    label = ""
    if label_v is not None:
        kind = label_v.WhichOneof("value")
        label = label_v.string_value if kind == "string_value" else (
            "true" if label_v.bool_value else "false") if kind == "bool_value" else ""
    if math.isnan(score) and not label:
        return "invalid_evaluation", (f"a {semconv.GENAI_EVALUATION_EVENT} with neither "
                                      f"{semconv.GENAI_EVALUATION_SCORE} nor {semconv.GENAI_EVALUATION_LABEL}")
    response_v = attrs.get(semconv.GENAI_RESPONSE_ID)
    response = response_v.string_value if response_v is not None and response_v.WhichOneof(
        "value") == "string_value" else ""
    return Evaluation(name, score, label[:MAX_LABEL_LENGTH], response)


@dataclass
class _Rows:
    keys: list[int] = field(default_factory=list)
    """The call's span key, or 0 where the result names its response instead (``responses``)."""
    responses: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)


class EvaluationRows:
    """Results read from one request, grouped by evaluation name, until ``batches``."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Rows] = {}

    def add(self, ev: Evaluation, span_id: bytes, time_ns: int) -> bool:
        """Add a result for the call with ``span_id``, else for the response it names; False with neither (nothing
        added)."""
        key = call_key(span_id)
        if not key and not ev.response_id:
            return False
        rows = self._by_name.setdefault(ev.name, _Rows())
        rows.keys.append(key)
        rows.responses.append("" if key else ev.response_id)
        rows.scores.append(ev.score)
        rows.labels.append(ev.label)
        rows.times.append(time_ns)
        return True

    def batches(self) -> list[LabelBatch]:
        out = []
        for name, rows in self._by_name.items():
            keys = np.array(rows.keys, dtype=np.float64)
            responses = np.array(rows.responses, dtype=str)
            by_span = keys != 0
            ids = np.where(by_span, call_ids(keys), response_ids(np.array([float(response_key(r))
                                                                           for r in rows.responses])))
            text = np.where(by_span[:ID_TEXT_SAMPLE], number_text(keys[:ID_TEXT_SAMPLE]), responses[:ID_TEXT_SAMPLE])
            out.append(LabelBatch(semconv.GENAI_EVALUATIONS, name, ids, np.array(rows.scores),
                                  np.array(rows.labels, dtype=str), np.array(rows.times, dtype=np.int64), text))
        return out


def is_evaluation_attribute(key: str) -> bool:
    return key.startswith("gen_ai.evaluation.") or key == semconv.GENAI_RESPONSE_ID
