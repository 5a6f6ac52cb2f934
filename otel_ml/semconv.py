"""Attribute and metric names of otel-ml, in one place.

OpenTelemetry has no semantic conventions for classic ML inference yet (see
open-telemetry/semantic-conventions#3420); these are ours, documented in
``docs/semantic-conventions.md``. This module imports nothing outside the standard library so the
instrumentation side can use it with opentelemetry-api alone.
"""

from __future__ import annotations

# --- span attributes (client → processor) -------------------------------------------------------
MODEL_NAME = "ml.model.name"
"""string, required (span or resource attribute): model identity."""
MODEL_VERSION = "ml.model.version"
"""string, optional (span or resource attribute): model version; default ``""``."""
FEATURE_PREFIX = "ml.feature."
"""``ml.feature.<name>``: int/double → numeric feature; string/bool → categorical feature."""
SEGMENT_PREFIX = "ml.segment."
"""``ml.segment.<key>``: string/bool/int, the prediction's segment by ``<key>`` (``ml.segment.region = "north"``; in
a batch span one array). A model whose spans carry them is segmented by those keys (at most 4, by name) without
configuration; not profiled as a feature. ``segments.by`` may also name the key (``[region]``)."""
SEGMENT_COLUMN_PREFIX = "segment."
"""Columns ``segment.<key>``: the decoded ``ml.segment.<key>`` (so no ``ml.feature.`` name may start with it)."""
ATTRIBUTION_PREFIX = "ml.attribution."
"""``ml.attribution.<feature>``: double, the prediction's attribution to ``<feature>`` (a SHAP value the serving code
computed, say; in a batch span one array). Profiled as the numeric feature ``attribution.<feature>`` (its
distribution's drift like any feature's); each feature's mean absolute attribution is its global importance, and the
ranking by importance is compared with the reference's (the row ``(attribution)``, otel_ml/analyze/attribution.py)."""
ATTRIBUTION_COLUMN_PREFIX = "attribution."
"""Columns ``attribution.<feature>``: the decoded ``ml.attribution.<feature>`` (no ``ml.feature.`` name may start
with it)."""
PREDICTION = "ml.prediction"
"""int/double (regression, score) or string/bool (class label): the model output."""
PREDICTION_SCORE = "ml.prediction.score"
"""double: confidence / probability of the predicted class."""
PREDICTION_ID = "ml.prediction.id"
"""string (or int): joins a later ground-truth label; not profiled."""
PREDICTION_PROBABILITY = "ml.prediction.probability"
"""double in [0, 1]: probability of the *positive* class of a binary classifier (``ml.prediction.score`` is the
confidence of the *predicted* class). Profiled as the feature ``prediction.probability``; what label-free
performance estimates and ROC AUC, log loss and Brier score are computed from."""
CLASS_PROBABILITY_PREFIX = "ml.prediction.probability."
"""``ml.prediction.probability.<class>``: double in [0, 1], the probability of ``<class>`` (a multiclass classifier
sends one per class, in a batch span one array per class). Profiled as the features ``prediction.probability.<class>``;
what multiclass ROC AUC, log loss and the multiclass label-free estimates are computed from."""
GROUND_TRUTH = "ml.ground_truth"
"""int/double/string/bool: the true outcome of the prediction ``ml.prediction.id`` names. A span (or log record
with ``event.name`` = ``ml.ground_truth``) carrying it is a label, not a prediction."""
GROUND_TRUTH_EVENT = "ml.ground_truth"
"""``event.name`` of a ground-truth log record."""
EMBEDDING = "ml.embedding"
"""double array: the model's input (or output) embedding, d numbers; in a batch span the N vectors one after another
(N·d numbers). Never kept: projected on 16 fixed random directions and profiled as the numeric features
``(embedding).0`` … ``(embedding).15`` and ``(embedding).norm`` (otel_ml/decode/embedding.py)."""
EMBEDDING_DIMENSION = "ml.embedding.dimension"
"""int: d, the length of one ``ml.embedding`` vector. Optional (d is the array's length divided by
``ml.batch.size``); when given, the array must have exactly N·d numbers."""
BATCH_SIZE = "ml.batch.size"
"""int: the span carries N predictions; every ``ml.feature.*``/``ml.prediction*`` is an array of length N."""
SAMPLING_RATIO = "ml.sampling.ratio"
"""double in (0, 1]: fraction of predictions recorded; volumes are scaled by 1/ratio."""
SEQUENCE = "ml.sequence"
"""int >= 0: position of the span's first prediction among every prediction this sender recorded (after
sampling) for the model; a batch span covers ``ml.sequence`` .. ``ml.sequence + ml.batch.size - 1``. Gaps the
processor never receives are predictions lost on the way (``ml.predictions.lost.ratio``)."""
SEQUENCE_STREAM = "ml.sequence.stream"
"""int, not 0: which sender's sequence (random per ``ModelMonitor``); required with ``ml.sequence``."""

# Names under which the model output is profiled like a feature.
# GenAI spans as predictions (otel_ml/decode/genai.py): the features a model call becomes, named by the GenAI
# conventions where they name it, else after them; also what a Vertex AI capture's generative rows become.
GENAI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GENAI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GENAI_FINISH_REASON = "gen_ai.response.finish_reason"
"""Categorical: the finish reasons of the call's choices, joined with ``,`` (``stop``; ``length,stop``)."""
GENAI_DURATION = "gen_ai.client.operation.duration"
"""Seconds, from the span's start and end (the conventions' metric of the same name)."""
GENAI_PROMPT_MESSAGES = "gen_ai.prompt.messages"
GENAI_PROMPT_CHARACTERS = "gen_ai.prompt.characters"
GENAI_RESPONSE_CHARACTERS = "gen_ai.response.characters"
GENAI_CALL_ID_COLUMN = "gen_ai.call.id"
"""Decoded like a column for each GenAI call (its span id's low 53 bits), then taken out of the batch as the call's
``prediction_id`` (a hash of it in ``GENAI_CALLS``): what its evaluation results join it by."""
GENAI_CALL_RESPONSE_COLUMN = "gen_ai.call.response_id"
"""Decoded like a column for each GenAI call with a ``gen_ai.response.id`` (its key: ``response_key``), then taken
out of the batch as its ``call_alias``: what a result that names only the response joins it by."""
GENAI_CALLS = "gen_ai.call"
GENAI_RESPONSES = "gen_ai.response"
"""The id namespace of ``gen_ai.response.id``: a result without a span context names its call by it."""
GENAI_RESPONSE_ID = "gen_ai.response.id"
"""The id namespace of GenAI calls: a call's id hash does not depend on its model, since an evaluation result
does not name one."""
GENAI_EVALUATION_EVENT = "gen_ai.evaluation.result"
GENAI_EVALUATION_NAME = "gen_ai.evaluation.name"
GENAI_EVALUATION_SCORE = "gen_ai.evaluation.score.value"
GENAI_EVALUATION_LABEL = "gen_ai.evaluation.score.label"
GENAI_EVALUATIONS = "gen_ai.evaluation"
"""The ``LabelBatch.model`` of evaluation results (their version: the evaluation's name) on their way to the join,
and the model their unmatched counts are reported under."""

PREDICTION_FEATURE = "prediction"
PREDICTION_SCORE_FEATURE = "prediction.score"
PREDICTION_PROBABILITY_FEATURE = "prediction.probability"
CLASS_PROBABILITY_COLUMN_PREFIX = "prediction.probability."
"""Columns ``prediction.probability.<class>``: the decoded ``ml.prediction.probability.<class>``."""
MULTIVARIATE_FEATURE = "(multivariate)"
"""The column a row's PCA reconstruction error is profiled under (a baseline built with ``--multivariate``):
multivariate drift, tested like a feature (otel_ml/profile/reconstruction.py)."""
EMBEDDING_COLUMN_PREFIX = "(embedding)."
"""The columns an ``ml.embedding`` becomes: ``(embedding).<j>`` (its projections) and ``(embedding).norm``."""
ATTRIBUTION_FEATURE = "(attribution)"
"""The drift report row of the test for a change of the features' importance ranking (NDCG against the reference's,
otel_ml/analyze/attribution.py); reserved so that no feature is reported under it."""
CORRELATION_FEATURE = "(correlation)"
"""The drift report row of the test for a change of the features' correlations (otel_ml/analyze/correlation.py);
reserved so that no feature is reported under it."""
PREDICTION_ID_COLUMN = "prediction.id"
"""Decoded like a column, then taken out of the batch as a 64-bit hash (``ColumnarBatch.prediction_id``)."""
GROUND_TRUTH_COLUMN = "ground_truth"
"""Decoded like a column; rows carrying it leave the batch as ``LabelBatch``es."""
SEGMENT_COLUMN = "(segment)"
"""A segmented model's rows on their way to the label join carry their segment label in this column, so that
their outcomes count in their segment's performance (never profiled)."""
RESERVED_FEATURE_NAMES = frozenset({PREDICTION_FEATURE, PREDICTION_SCORE_FEATURE, PREDICTION_PROBABILITY_FEATURE,
                                    PREDICTION_ID_COLUMN, GROUND_TRUTH_COLUMN, MULTIVARIATE_FEATURE,
                                    CORRELATION_FEATURE, ATTRIBUTION_FEATURE, SEGMENT_COLUMN, GENAI_CALL_ID_COLUMN,
                                    GENAI_CALL_RESPONSE_COLUMN})
"""``ml.feature.<name>`` may not use these names (nor ``prediction.probability.<anything>``,
``(embedding).<anything>``, ``segment.<anything>`` or ``attribution.<anything>``): they would merge with the model
output or a derived column. The processor rejects such spans (``reserved_feature_name``); the instrumentation drops
the value and counts it."""



def is_input_column(name: str) -> bool:
    """A column of the model's inputs (a feature, an embedding's projection), not its output nor a test's row: what
    the multivariate tests (correlations, reconstruction) are fitted on."""
    return not is_reserved_feature(name) or name.startswith(EMBEDDING_COLUMN_PREFIX)


def is_reserved_feature(name: str) -> bool:
    """A feature name the model output is profiled under (``RESERVED_FEATURE_NAMES``, a class's probability), or a
    derived or decoded column's (an embedding's projection, a segment key, an attribution)."""
    return name in RESERVED_FEATURE_NAMES or name.startswith((CLASS_PROBABILITY_COLUMN_PREFIX, EMBEDDING_COLUMN_PREFIX,
                                                              SEGMENT_COLUMN_PREFIX, ATTRIBUTION_COLUMN_PREFIX))


# --- metric attributes (processor → backend) -----------------------------------------------------
ATTR_MODEL_NAME = "ml.model.name"
ATTR_MODEL_VERSION = "ml.model.version"
ATTR_FEATURE_NAME = "ml.feature.name"
ATTR_DRIFT_METHOD = "ml.drift.method"
ATTR_SAMPLE = "ml.sample"  # "reference" | "current"
ATTR_QUANTILE = "ml.quantile"
ATTR_CATEGORY = "ml.category"
ATTR_REASON = "reason"
ATTR_KIND = "kind"
REJECTION_REASONS = (
    "invalid_model_name", "model_name_missing", "invalid_model_version", "invalid_batch_size", "batch_value_not_array",
    "batch_length_mismatch", "array_without_batch_size", "invalid_sampling_ratio", "too_many_features",
    "name_too_long", "reserved_feature_name", "duplicate_attribute", "timestamp_in_future", "too_many_models",
    "invalid_sequence", "ground_truth_without_id", "ground_truth_missing_value", "ground_truth_unsupported",
    "invalid_ground_truth", "invalid_prediction_id", "prediction_id_too_long", "invalid_embedding",
    "embedding_length_mismatch", "embedding_too_large", "embedding_dimension_mismatch", "invalid_probability",
    "invalid_evaluation", "evaluation_without_call",
)
"""Every ``reason`` of ``otel_ml.spans.rejected`` (docs/semantic-conventions.md#rejected-spans); each series is
exported from the start at 0."""

# --- metric names ---------------------------------------------------------------------------------
METRIC_DRIFT_SCORE = "ml.drift.score"
METRIC_DRIFT_P_VALUE = "ml.drift.p_value"
METRIC_DRIFT_DETECTED = "ml.drift.detected"
METRIC_DRIFT_DETECTIONS = "ml.drift.detections"
METRIC_SEGMENT_DRIFT_DETECTED = "ml.segment.drift.detected"
METRIC_SEGMENT_SHARE = "ml.segment.share"
METRIC_SEGMENT_CONTRIBUTION = "ml.segment.contribution"
METRIC_SEGMENT_PERFORMANCE_CONTRIBUTION = "ml.segment.performance.contribution"
METRIC_SEGMENT_PREDICTIONS = "ml.segment.predictions"
METRIC_SEGMENT_FEATURE_P_VALUE = "ml.segment.feature.p_value"
METRIC_SEGMENT_FEATURE_MISSING_RATIO = "ml.segment.feature.missing_ratio"
ATTR_SEGMENT = "ml.segment"  # "region=north", "region=north,tier=gold", "(other)", "(missing)"
ATTR_ATTRIBUTION = "ml.attribution"  # "mix" | "within"
SEGMENT_CONTRIBUTIONS_EXPORTED = 3
"""Segments exported per numeric feature in ml.segment.contribution: the largest contributions."""
METRIC_DRIFT_THRESHOLD = "ml.drift.threshold"
METRIC_DRIFT_WITHHELD = "ml.drift.withheld"
METRIC_SAMPLE_COUNT = "ml.drift.sample.count"
METRIC_MISSING_RATIO = "ml.feature.missing.ratio"
METRIC_TYPE_MISMATCH_RATIO = "ml.feature.type_mismatch.ratio"
METRIC_UNSEEN_RATIO = "ml.feature.unseen.ratio"
METRIC_OUT_OF_RANGE_RATIO = "ml.feature.out_of_range.ratio"
METRIC_FEATURE_MEAN = "ml.feature.mean"
METRIC_FEATURE_QUANTILE = "ml.feature.quantile"
METRIC_CATEGORY_SHARE = "ml.feature.category.share"
METRIC_PREDICTIONS = "ml.predictions"
METRIC_LATENCY = "ml.prediction.latency"
METRIC_ERROR_RATIO = "ml.prediction.error.ratio"
METRIC_LOST_RATIO = "ml.predictions.lost.ratio"
METRIC_REFERENCE_READY = "ml.reference.ready"
METRIC_REFERENCE_PENDING_ROWS = "ml.reference.pending_rows"
METRIC_FEATURES_UNPROFILED = "otel_ml.features.unprofiled"
METRIC_SPANS_RECEIVED = "otel_ml.spans.received"
METRIC_SPANS_ACCEPTED = "otel_ml.spans.accepted"
METRIC_SPANS_REJECTED = "otel_ml.spans.rejected"
METRIC_SPANS_IGNORED = "otel_ml.spans.ignored"
METRIC_ROWS_LATE = "otel_ml.rows.late"
METRIC_REQUESTS_REFUSED = "otel_ml.requests.refused"
METRIC_FEATURE_VALUES_DROPPED = "otel_ml.feature_values.dropped"
METRIC_LOG_LOSS_WITHHELD = "otel_ml.log_loss.withheld"
METRIC_STORAGE_ERRORS = "otel_ml.storage.errors"
METRIC_STORAGE_HEALTHY = "otel_ml.storage.healthy"
METRIC_MODELS_RELEASED = "otel_ml.models.released"
METRIC_CLIENT_VALUES_DROPPED = "otel_ml.client.values.dropped"
"""Counted by the instrumentation in the serving app (its MeterProvider): values it could not record, by reason."""
METRIC_MODELS_LIVE = "otel_ml.models.live"
METRIC_EXPORT_OVERFLOW = "otel_ml.export.overflow"
METRIC_KAFKA_SKIPPED = "otel_ml.kafka.messages.skipped"
METRIC_KINESIS_SKIPPED = "otel_ml.kinesis.records.skipped"
METRIC_KINESIS_THROTTLED = "otel_ml.kinesis.throttled"
KINESIS_SKIP_PREFIX = "kinesis:"
"""A ``DecodeResult.skipped_messages`` reason with this prefix is a Kinesis record's (counted under
METRIC_KINESIS_SKIPPED); without, a Kafka message's (the journal's records from before Kinesis)."""
METRIC_APPLY_ERRORS = "otel_ml.apply.errors"
METRIC_STATE_RECOVERED = "otel_ml.state.recovered"
STATE_KINDS = ("database", "window", "journal_record", "pending_pred", "pending_early", "pending_gone", "pending_spans",
               "pending_flags", "performance_window", "pinned_reference")
"""Every ``kind`` of ``otel_ml.state.recovered``: what recovery could not use and dropped, saying so."""
METRIC_LABELS_WAITING = "otel_ml.labels.waiting"
METRIC_LABELS_WAITING_BYTES = "otel_ml.labels.waiting.bytes"
METRIC_LABELS_WAITING_LIMIT = "otel_ml.labels.waiting.limit"
METRIC_PERFORMANCE = "ml.performance"
METRIC_PERFORMANCE_ESTIMATED = "ml.performance.estimated"
METRIC_PERFORMANCE_REFERENCE = "ml.performance.reference"
METRIC_PERFORMANCE_DEGRADED = "ml.performance.degraded"
METRIC_PERFORMANCE_ESTIMATED_DEGRADED = "ml.performance.estimated_degraded"
METRIC_PERFORMANCE_ESTIMATE_GAP = "ml.performance.estimate_gap"
METRIC_PERFORMANCE_ESTIMATE_OFF = "ml.performance.estimate_off"
METRIC_PERFORMANCE_ESTIMATE_UNSUPPORTED = "ml.performance.estimate_unsupported"
METRIC_PERFORMANCE_OBJECTIVE = "ml.performance.objective"
METRIC_GENAI_EVALUATION_PASS_RATE = "ml.genai.evaluation.pass_rate"
METRIC_GENAI_EVALUATION_SCORE = "ml.genai.evaluation.score"
METRIC_GENAI_EVALUATION_RESULTS = "ml.genai.evaluation.results"
METRIC_GENAI_EVALUATION_DEGRADED = "ml.genai.evaluation.degraded"
ATTR_GENAI_EVALUATION = GENAI_EVALUATION_NAME
METRIC_ATTRIBUTION_NDCG = "ml.attribution.ndcg"
METRIC_ATTRIBUTION_DRIFT_DETECTED = "ml.attribution.drift_detected"
METRIC_ATTRIBUTION_IMPORTANCE = "ml.attribution.importance"  # mean |attribution| per feature and ml.sample
METRIC_FAIRNESS = "ml.fairness"
METRIC_FAIRNESS_VIOLATION = "ml.fairness.violation"
ATTR_FAIRNESS_METRIC = "ml.fairness.metric"  # selection_rate ... disparate_impact ... (analyze/fairness.py)
ATTR_FAIRNESS_ATTRIBUTE = "ml.fairness.attribute"  # "sex", or "sex,age_band" (intersectional)
ATTR_GROUP = "ml.group"  # "F", or "sex=F,age_band=[18..30)"
ATTR_FAIRNESS_TEST = "ml.fairness.test"  # violation (beyond the threshold) | changed (from the reference's)
METRIC_VERSION_DIFFERENCE = "ml.version.difference"
METRIC_VERSION_REGRESSION = "ml.version.regression"
ATTR_VERSION_A = "ml.version.a"
ATTR_VERSION_B = "ml.version.b"
ATTR_COMPARE = "ml.compare"  # inputs | outputs | a performance metric | error_ratio | latency, latency_p95_seconds
ATTR_GENAI_EVALUATION_TEST = "ml.genai.evaluation.test"  # "pass_rate" | "mean_score"
METRIC_GROUND_TRUTH = "ml.ground_truth"
METRIC_GROUND_TRUTH_UNMATCHED = "ml.ground_truth.unmatched"
METRIC_GROUND_TRUTH_COVERAGE = "ml.ground_truth.coverage"
METRIC_GROUND_TRUTH_DELAY = "ml.ground_truth.delay"
ATTR_PERFORMANCE_METRIC = "ml.performance.metric"
ATTR_CLASS = "ml.class"

OVERALL_METHOD = "overall"
