"""Where ground truth comes in: prediction ids, labels from spans and from OTLP log records.

Both decoders read ``ml.prediction.id`` and ``ml.ground_truth`` like columns; ``split_outcomes`` then takes
them out of the batches: a prediction's id becomes a 64-bit hash of (model, id) (``ColumnarBatch.prediction_id``:
8 bytes a row, no Python object), and the rows of a span carrying ``ml.ground_truth`` leave as a ``LabelBatch``.
Labels also come as OTLP log records (``event.name`` = ``ml.ground_truth``): ``decode_logs_request``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otel_ml import semconv
from otel_ml.decode.batch import ID_TEXT_SAMPLE, ColumnarBatch, DecodeResult, LabelBatch, parse_protobuf
from otel_ml.decode.evaluations import Evaluation, EvaluationRows, call_ids, read_evaluation, response_ids
from otel_ml.decode.ids import id_hash, ids_as_text
from otel_ml.decode.limits import DecodeLimits, id_problem, truth_problem


@dataclass
class _LabelRows:
    ids: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)


def split_outcomes(result: DecodeResult) -> DecodeResult:
    """Take prediction ids and ground-truth rows out of the decoded batches (see the module doc)."""
    batches: list[ColumnarBatch] = []
    for b in result.batches:
        gt_num = b.numeric.pop(semconv.GROUND_TRUTH_COLUMN, None)
        gt_cat = b.categorical.pop(semconv.GROUND_TRUTH_COLUMN, None)
        id_num = b.numeric.pop(semconv.PREDICTION_ID_COLUMN, None)
        id_cat = b.categorical.pop(semconv.PREDICTION_ID_COLUMN, None)
        b.invalid.pop(semconv.GROUND_TRUTH_COLUMN, None)
        b.invalid.pop(semconv.PREDICTION_ID_COLUMN, None)
        call_num = b.numeric.pop(semconv.GENAI_CALL_ID_COLUMN, None)
        if call_num is not None:  # a GenAI model's calls: keyed for their evaluation results (decode/evaluations.py)
            b.invalid.pop(semconv.GENAI_CALL_ID_COLUMN, None)
            b.prediction_id = call_ids(call_num)
            response = b.numeric.pop(semconv.GENAI_CALL_RESPONSE_COLUMN, None)
            b.invalid.pop(semconv.GENAI_CALL_RESPONSE_COLUMN, None)
            if response is not None:
                b.call_alias = response_ids(response)
            batches.append(b)
            continue
        ids = id_text = None
        if id_num is not None or id_cat is not None:
            id_text = ids_as_text(id_num, id_cat, b.n_rows)
            ids = id_hash(b.model, id_text)
        if gt_num is None and gt_cat is None:
            if ids is not None:
                b.prediction_id = ids
            batches.append(b)
            continue
        has_gt = np.zeros(b.n_rows, dtype=bool)
        if gt_num is not None:
            has_gt |= ~np.isnan(gt_num)
        if gt_cat is not None:
            has_gt |= gt_cat != ""
        # A span is a label when its first row carries ml.ground_truth (a batch span carries it on every row).
        span_rows = b.span_rows if len(b.span_rows) == len(b.span_end_ns) else np.ones(len(b.span_end_ns), np.int64)
        first = np.concatenate([[0], np.cumsum(span_rows)[:-1]]).astype(np.int64)
        label_span = np.zeros(len(span_rows), dtype=bool)
        in_range = first < b.n_rows
        label_span[in_range] = has_gt[first[in_range]]
        label_row = np.repeat(label_span, span_rows)[:b.n_rows]
        if ids is None:
            ids = np.zeros(b.n_rows, dtype=np.uint64)
        usable = label_row & (ids != 0) & has_gt
        no_id = int(np.count_nonzero(label_span[in_range] & (ids[first[in_range]] == 0)))
        if no_id:
            result.rejected["ground_truth_without_id"] += no_id
            result.examples.setdefault("ground_truth_without_id", f"a {semconv.GROUND_TRUTH} span without "
                                       f"{semconv.PREDICTION_ID}")
            result.spans_accepted -= no_id
        if usable.any():
            result.labels.append(LabelBatch(
                b.model, b.version, ids[usable],
                gt_num[usable] if gt_num is not None else np.full(int(usable.sum()), np.nan),
                gt_cat[usable] if gt_cat is not None else np.full(int(usable.sum()), "", dtype="<U1"),
                b.row_time_ns[usable], id_text[usable][:ID_TEXT_SAMPLE] if id_text is not None else None))
        if (~label_span).any():
            rest = b.select(~label_row, ~label_span)
            rest.invalid = b.invalid
            if ids is not None and (ids[~label_row] != 0).any():
                rest.prediction_id = ids[~label_row]
            batches.append(rest)
    result.batches = batches
    return result


# --- OTLP logs ------------------------------------------------------------------------------------------
def _scalar(v: AnyValue) -> float | str:
    """A usable ``ml.ground_truth`` value (``truth_problem`` said so) as a number or a text."""
    kind = v.WhichOneof("value")
    if kind == "double_value":
        return v.double_value
    if kind == "int_value":
        return float(v.int_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    return v.string_value


def _id_text(v: AnyValue) -> str:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return str(v.int_value)
    return ""


def decode_logs_request(data: bytes | ExportLogsServiceRequest, limits: DecodeLimits | None = None,
                        evaluations: bool = True) -> DecodeResult:
    """Ground-truth log records of one OTLP logs export as ``LabelBatch``es; other log records are ignored.

    A ground-truth record has ``event.name`` = ``ml.ground_truth`` (the attribute, or the LogRecord field of
    newer OTLP) or simply carries ``ml.ground_truth``; ``ml.model.name`` (record or resource),
    ``ml.prediction.id`` and ``ml.ground_truth`` are required, ``ml.batch.size`` makes both arrays. A record is
    taken whole or rejected whole with a reason, by the rules spans obey (otlp.py: ``id_problem``,
    ``truth_problem``, the clock skew limit). Counts are in the result's span fields (a record counts like a span).
    ``gen_ai.evaluation.result`` records are LLM calls' evaluation results (decode/evaluations.py; ignored without
    ``evaluations``).

    >>> req = ExportLogsServiceRequest()
    >>> rec = req.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=10**18)
    >>> for k, v in (("ml.model.name", "churn"), ("ml.prediction.id", "r1"), ("ml.ground_truth", "yes")):
    ...     rec.attributes.add(key=k).value.string_value = v
    >>> r = decode_logs_request(req.SerializeToString())
    >>> r.labels[0].model, r.labels[0].label.tolist(), r.spans_accepted
    ('churn', ['yes'], 1)
    """
    limits = limits or DecodeLimits()
    if not isinstance(data, ExportLogsServiceRequest):
        data = parse_protobuf(ExportLogsServiceRequest, data)
    now_ns = time.time_ns()
    result = DecodeResult(batches=[], received_ns=now_ns)
    groups: dict[tuple[str, str], _LabelRows] = {}
    future_limit = now_ns + limits.max_clock_skew_seconds * 1e9
    results = EvaluationRows()
    rejected_before = 0

    def reject(reason: str, detail: str) -> None:
        result.rejected[reason] += 1
        result.examples.setdefault(reason, detail)

    for rl in data.resource_logs:
        res_model = res_version = None
        for kv in rl.resource.attributes:
            if kv.key == semconv.MODEL_NAME:
                res_model = kv.value
            elif kv.key == semconv.MODEL_VERSION:
                res_version = kv.value
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                result.spans_received += 1
                attrs = {kv.key: kv.value for kv in rec.attributes
                         if kv.key.startswith(("ml.", "event.name", "gen_ai.evaluation.", semconv.GENAI_RESPONSE_ID))}
                event = getattr(rec, "event_name", "") or (_id_text(attrs["event.name"]) if "event.name" in attrs
                                                           else "")
                if event == semconv.GENAI_EVALUATION_EVENT and evaluations:
                    _evaluation_record(rec, attrs, results, now_ns, future_limit, reject)
                    result.spans_accepted += not result.rejected.total() - rejected_before
                    rejected_before = result.rejected.total()
                    continue
                gt = attrs.get(semconv.GROUND_TRUTH)
                if gt is None:
                    if event == semconv.GROUND_TRUTH_EVENT:
                        reject("ground_truth_missing_value", f"an {event} event without {semconv.GROUND_TRUTH}")
                    else:
                        result.spans_ignored += 1
                    continue
                model_v = attrs.get(semconv.MODEL_NAME, res_model)
                model = _id_text(model_v) if model_v is not None and model_v.WhichOneof("value") == "string_value" \
                    else ""
                if not model:
                    reject("invalid_model_name", f"{semconv.MODEL_NAME} must be a non-empty string")
                    continue
                version_v = attrs.get(semconv.MODEL_VERSION, res_version)
                version = _id_text(version_v) if version_v is not None else ""
                if len(model) > limits.max_name_length or len(version) > limits.max_name_length:
                    reject("name_too_long", f"a model or version name is over {limits.max_name_length} characters")
                    continue
                id_v = attrs.get(semconv.PREDICTION_ID)
                batch_v = attrs.get(semconv.BATCH_SIZE)
                if batch_v is not None:
                    n = batch_v.int_value if batch_v.WhichOneof("value") == "int_value" else 0
                    if not 1 <= n <= limits.max_batch_size:
                        reject("invalid_batch_size",
                               f"{semconv.BATCH_SIZE} must be an int in [1, {limits.max_batch_size}]")
                        continue
                    if id_v is None or id_v.WhichOneof("value") != "array_value" or \
                            gt.WhichOneof("value") != "array_value" or len(id_v.array_value.values) != n or \
                            len(gt.array_value.values) != n:
                        reject("batch_length_mismatch", f"{semconv.PREDICTION_ID} and {semconv.GROUND_TRUTH} must "
                               f"be arrays of {semconv.BATCH_SIZE} values")
                        continue
                    id_values, gt_values = list(id_v.array_value.values), list(gt.array_value.values)
                else:
                    if id_v is not None and id_v.WhichOneof("value") == "array_value":
                        reject("array_without_batch_size", f"{semconv.PREDICTION_ID} is an array but the record has "
                               f"no {semconv.BATCH_SIZE}")
                        continue
                    id_values, gt_values = ([id_v] if id_v is not None else []), [gt]
                problem = next((p for p in (*(id_problem(v, limits.max_id_length) for v in id_values),
                                            *(truth_problem(v) for v in gt_values)) if p is not None), None)
                if problem is not None:
                    reject(*problem)
                    continue
                ids = [_id_text(v) for v in id_values]
                if not ids or not all(ids):
                    reject("ground_truth_without_id",
                           f"a {semconv.GROUND_TRUTH} record without {semconv.PREDICTION_ID}")
                    continue
                t = rec.time_unix_nano or rec.observed_time_unix_nano or now_ns
                if t > future_limit:
                    reject("timestamp_in_future", f"log record {(t - now_ns) / 1e9:.0f}s in the future (limit "
                           f"{limits.max_clock_skew_seconds:.0f}s)")
                    continue
                rows = groups.setdefault((model, version), _LabelRows())
                for i, v in zip(ids, gt_values):
                    value = _scalar(v)
                    rows.ids.append(i)
                    rows.values.append(value if isinstance(value, float) else math.nan)
                    rows.labels.append(value[:limits.max_category_length] if isinstance(value, str) else "")
                    rows.times.append(t)
                result.spans_accepted += 1
    for (model, version), rows in groups.items():
        if rows.ids:
            text = np.array(rows.ids)
            result.labels.append(LabelBatch(model, version, id_hash(model, text),
                                            np.array(rows.values, dtype=np.float64), np.array(rows.labels),
                                            np.array(rows.times, dtype=np.int64), text[:ID_TEXT_SAMPLE]))
    result.labels.extend(results.batches())
    return result


def _evaluation_record(rec: Any, attrs: dict[str, AnyValue], evaluations: EvaluationRows, now_ns: int,
                       future_limit: float, reject: Callable[[str, str], None]) -> None:
    """A ``gen_ai.evaluation.result`` log record: a result for the call whose span it is parented to."""
    ev = read_evaluation(attrs)
    if not isinstance(ev, Evaluation):
        reject(*ev)
        return
    t = rec.time_unix_nano or rec.observed_time_unix_nano or now_ns
    if t > future_limit:
        reject("timestamp_in_future", f"log record {(t - now_ns) / 1e9:.0f}s in the future")
    elif not evaluations.add(ev, rec.span_id, t):
        reject("evaluation_without_call", f"a {semconv.GENAI_EVALUATION_EVENT} record with neither the span context "
               f"of the call it evaluates nor its {semconv.GENAI_RESPONSE_ID}")
