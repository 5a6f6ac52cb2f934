"""The processor: wires receiver → decoder → windowed profiles → analyzer → exporter from one config.

Durability: what a request that carried ML spans added (its DecodeResult, as ``to_bytes`` encodes it) is
journaled (store/journal.py), and applied in memory only once that commit succeeded, before the request is
answered: an acknowledged span survives ``kill -9``, and a refused one (disk full: UNAVAILABLE with RetryInfo)
leaves no trace, so the sender's retry counts once. A checkpoint of the whole state every
``state.checkpoint_interval_seconds`` keeps recovery short. Storage failures are counted by operation, logged
once per episode, and make the processor not ready until a write succeeds again.

Cores: OTLP/gRPC requests are received and decoded in receiver worker processes (receiver/workers.py) when
the machine has more than one CPU; everything stateful stays here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml import semconv as sc
from otel_ml.analyze.drift import ModelReport, compare
from otel_ml.analyze.performance import PerformanceReport, assess
from otel_ml.config import ServiceConfig
from otel_ml.decode import DecodeResult
from otel_ml.decode.privacy import hash_classes, hashes_prediction, load_key
from otel_ml.export.metrics import MetricsExporter
from otel_ml.http_server import HttpServer, server_tls_context
from otel_ml.profile.ground_truth import UNMATCHED_REASONS, GroundTruth
from otel_ml.profile.lifecycle import ModelLifecycle
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.partitioned import PartitionedWindows, PartitionState, exporting_partition
from otel_ml.profile.window import WindowedProfile
from otel_ml.receiver.common import AdmissionControl, StorageUnavailable
from otel_ml.receiver.ingest import decode_for_ingest
from otel_ml.receiver.kafka import KafkaTraceReceiver, PartitionCallbacks, partition_key
from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver
from otel_ml.receiver.otlp_http import OtlpHttpTraceReceiver
from otel_ml.receiver.workers import ReceiverWorkers, WorkerSpec, refuse_if_taken
from otel_ml.store.baselines import ReferenceStore
from otel_ml.store.changelog import KafkaChangelog
from otel_ml.store.control import read_control_requests
from otel_ml.store.journal import Journal, StorageError
from otel_ml.store.state import StateStore
from otel_ml.ui.history import ScoreHistory
from otel_ml.ui.server import UiServer, UiSource

log = logging.getLogger(__name__)

STORAGE_OPS = ("journal", "checkpoint", "reference")
"""What ``otel_ml.storage.errors`` counts by ``op``: request journal, checkpoint (windows, archive), pinned
reference files."""


class RateLimitedRejectionLog:
    """At most one warning per ``interval`` seconds about rejected spans, with the counts since the last one,
    so a sender stuck on bad data cannot flood the log."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._example = ""
        self._last = 0.0

    def warn(self, result: DecodeResult) -> None:
        with self._lock:
            self._pending.update(result.rejected)
            self._example = result.message()
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            counts = ", ".join(f"{reason}={n}" for reason, n in sorted(self._pending.items()))
            self._pending.clear()
        log.warning("rejected spans since the last report: %s; latest: %s", counts, self._example)


class ProcessorService:
    """``otel-ml serve``: start(), then the receivers feed ``consume`` and a thread evaluates drift."""

    def __init__(self, config: ServiceConfig) -> None:
        self._hash_key = load_key(config.privacy.hash_key_env)
        positive = config.performance.positive_class
        if self._hash_key is not None and positive and hashes_prediction(config.privacy.hash_features):
            # classes arrive hashed (decode/privacy.py); so is the positive class they are compared with
            config = dataclasses.replace(config, performance=dataclasses.replace(
                config.performance, positive_class=str(hash_classes(np.array([positive]), self._hash_key)[0])))
        self.config = config
        self.references = ReferenceStore(config.baseline_dir, config.state.dir)
        kafka = config.receiver.kafka
        self.shared = kafka.enabled and bool(kafka.changelog_topic)
        """Shared Kafka mode: models spread over replicas by partition; state in the changelog, not a journal."""
        self.journal = (Journal(config.state.dir, archive_config=config.state.archive)
                        if config.state.durable and not self.shared else None)
        self.models: dict[tuple[str, str], WindowedProfile] = {}
        """The live (model, version)s; which ones, and until when, ``lifecycle`` decides. Shared mode: the merged
        window sets of the models this replica exports, rebuilt at each evaluation."""
        self.lifecycle = ModelLifecycle(config.models)
        self._lock = threading.Lock()
        self._reports: list[ModelReport] = []
        self._performance: list[PerformanceReport] = []
        self.ground_truth = GroundTruth(str(Path(config.state.dir) / "pending"), config.labels, config.performance,
                                        self._positive_class)
        """Predictions waiting for labels (on disk), and performance per window of prediction time."""
        self._stop = threading.Event()
        self._evaluator: threading.Thread | None = None
        token = config.receiver.auth.token()
        self._decode = functools.partial(decode_for_ingest, limits=config.limits.decode_limits(),
                                         hash_key=self._hash_key, hash_features=config.privacy.hash_features)
        workers = config.receiver.otlp_grpc.worker_count()
        self.receiver: OtlpTraceReceiver | ReceiverWorkers | None = None if self.shared else (
            ReceiverWorkers(WorkerSpec(config.receiver.otlp_grpc, config.receiver.tls, token, self._decode,
                                       config.limits.max_inflight_bytes, config.limits.retry_after_seconds,
                                       logging.getLogger().level), workers, self.apply_decoded,
                            on_refused=self._count_refused)
            if workers else OtlpTraceReceiver(config.receiver.otlp_grpc, self.consume, config.receiver.tls, token))
        self.kafka_offsets: dict[str, int] = {}
        """Newest applied offset per Kafka ``topic:partition`` (checkpointed; the journal records each message's)."""
        self.kafka = (KafkaTraceReceiver(kafka, self._decode, self._consume_kafka,
                                         self._partition_offset if self.shared else self.kafka_offsets.get,
                                         PartitionCallbacks(self._assigned, self._revoked, self._polled)
                                         if self.shared else None) if kafka.enabled else None)
        self.http = HttpServer(config.http)
        """Every HTTP surface: OTLP/HTTP and the Prometheus endpoint."""
        self.http_receiver = (OtlpHttpTraceReceiver(config.receiver.otlp_http, self.consume, config.receiver.tls,
                                                    token, readiness=self.readiness, server=self.http)
                              if config.receiver.otlp_http.enabled and not self.shared else None)
        tls = config.receiver.tls
        protect = config.export.prometheus.protected
        self.exporter = MetricsExporter(config.export, self.reports, config.instance_id,
                                        storage_healthy=lambda: not self._storage_failing,
                                        live_models=lambda: len(self.models), http=self.http,
                                        readiness=self.readiness,
                                        ssl_context=server_tls_context(tls.cert_file, tls.key_file, tls.client_ca_file)
                                        if protect and tls.enabled else None,  # type: ignore[arg-type]
                                        bearer_token=token if protect else None,
                                        waiting_baselines=lambda: [k for k in self.references.baselines
                                                                   if k not in self.models],
                                        performance=lambda: self._performance)
        self.history = ScoreHistory(config.ui.history_points if config.ui.enabled else 0, config.export.effect_size)
        """Each feature's last evaluations, for the UI's "over time" view."""
        self.ui = (UiServer(config.ui, UiSource(self.reports, self.profiles, self.history,
                                                config.state.dir if self.journal is not None else None,
                                                config.drift, config.export.effect_size, self.performance_of),
                                     self.http,
                            ssl_context=server_tls_context(tls.cert_file, tls.key_file, tls.client_ca_file)
                            if tls.enabled else None,  # type: ignore[arg-type]
                            token=token, readiness=self.readiness) if config.ui.enabled else None)
        self._last_seq = 0
        self._last_checkpoint = time.monotonic()
        self._window_options = {"max_features": config.limits.max_profiled_features_per_model,
                                "reference_chunks": 10 if config.drift.learned_thresholds else 0,
                                "keep_evicted": self.journal is not None and config.state.archive.enabled}
        self.state = (StateStore(self.journal, config.windows, config.sketch, self._window_options)
                      if self.journal is not None else None)
        self.partitioned = (PartitionedWindows(config.windows, config.sketch,
                                               {**self._window_options, "keep_evicted": False}, self._prepare_shared)
                            if self.shared else None)
        """Shared mode: every Kafka partition's window sets (profile/partitioned.py)."""
        self.owned: set[int] = set()
        """Shared mode: the input partitions this replica consumes now."""
        self.shared_references: dict[tuple[str, str], tuple[ModelProfile, int | None]] = {}
        """Shared mode: references pinned from live traffic (by whichever replica exported the model then), and
        where the current horizon starts after them; kept in the changelog."""
        self._references_to_publish: set[tuple[str, str]] = set()
        self._last_publication = time.monotonic()
        self._changelog_ready = threading.Event()
        self.changelog = (KafkaChangelog(kafka, f"otel-ml-{kafka.group}-{self.exporter.instance_id}",
                                         self._on_publication, self._on_reference) if self.shared else None)
        self._evaluate_now = threading.Event()
        self._rejection_log = RateLimitedRejectionLog()
        self.admission = AdmissionControl(config.limits.max_inflight_bytes, config.limits.retry_after_seconds,
                                          on_refuse=self._count_refused)
        self._reload_requested = threading.Event()
        self._pending_logged: set[tuple[str, str]] = set()
        """Models whose 'no drift decisions until a reference' was logged (once each)."""
        self._storage_lock = threading.Lock()
        self._storage_failing: dict[str, str] = {}
        """Per op of STORAGE_OPS, what its last write failed with, until one succeeds again."""

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover, then open the receivers, then the listeners that tell readiness (/metrics, the pages): whoever
        waits for those finds every receiver accepting. Every fixed port is checked first, so a busy one fails the
        start before anything is received."""
        self.references.open()  # also proves the state directory is writable
        self._check_ports()
        # Every self-telemetry series from the start at 0: an alert on rate() sees the first increment.
        for metric in (sc.METRIC_SPANS_RECEIVED, sc.METRIC_SPANS_ACCEPTED, sc.METRIC_SPANS_IGNORED):
            self.exporter.count(metric, 0)
        for reason in sc.REJECTION_REASONS:
            self.exporter.count(sc.METRIC_SPANS_REJECTED, 0, {sc.ATTR_REASON: reason})
        self.exporter.count(sc.METRIC_REQUESTS_REFUSED, 0, {sc.ATTR_REASON: "overloaded"})
        for reason in ("idle", "limit", "retired"):
            self.exporter.count(sc.METRIC_MODELS_RELEASED, 0, {sc.ATTR_REASON: reason})
        for op in STORAGE_OPS:
            self.exporter.count(sc.METRIC_STORAGE_ERRORS, 0, {"op": op})
        if self.journal is None and not self.shared:
            log.info("state.durable is false: requests are not journaled (a restart loses the live windows); "
                     "only pinned references are written to %s", self.config.state.dir)
        if self.journal is not None:
            self._recover()
            self.journal.start()
        else:
            self.ground_truth.restore({})  # not durable: waiting predictions of an earlier run are not valid
        self._run_control_requests()
        self.http.start()
        if self.kafka is not None:
            for reason in ("not_otlp", "too_large"):
                self.exporter.count(sc.METRIC_KAFKA_SKIPPED, 0, {sc.ATTR_REASON: reason})
            self.kafka.start()
        if self.changelog is not None and self.kafka is not None:
            log.info("shared Kafka mode: windows per partition of %r, state in the changelog %r; OTLP receivers "
                     "off (everything comes through the topic)", self.config.receiver.kafka.topic,
                     self.changelog.topic)
            self.changelog.start(self.kafka.partition_count)
            self._changelog_ready.set()
        if self.receiver is not None:
            self.receiver.start()
        if self.http_receiver is not None:
            self.http_receiver.start()
        self.exporter.start()
        if self.ui is not None:
            self.ui.start()
        self._evaluator = threading.Thread(target=self._evaluate_loop, name="otel-ml-evaluate", daemon=True)
        self._evaluator.start()

    def _check_ports(self) -> None:
        """Fail the start, naming the setting, when a fixed port is taken (before anything is received)."""
        cfg = self.config
        ports = [("the OTLP/gRPC receiver (receiver.otlp_grpc.endpoint)", cfg.receiver.otlp_grpc.endpoint,
                  self.receiver is not None),
                 ("the OTLP/HTTP receiver (receiver.otlp_http.endpoint)", cfg.receiver.otlp_http.endpoint,
                  self.http_receiver is not None),
                 ("the Prometheus endpoint (export.prometheus.endpoint)", cfg.export.prometheus.endpoint,
                  cfg.export.prometheus.enabled),
                 ("the UI (ui.endpoint)", cfg.ui.endpoint, self.ui is not None)]
        for what, endpoint, used in ports:
            if used:
                refuse_if_taken(endpoint, what)

    def shutdown(self) -> None:
        self._stop.set()
        self._evaluate_now.set()
        if self.kafka is not None:
            self.kafka.shutdown()  # shared mode: leaving the group publishes this replica's partitions
        if self.changelog is not None:
            self.changelog.shutdown()
        if self.receiver is not None:
            self.receiver.shutdown()
        if self.http_receiver is not None:
            self.http_receiver.shutdown()
        if self._evaluator is not None:
            self._evaluator.join(timeout=10)
        self._save_new_references()
        if self.journal is not None:
            try:
                self.checkpoint()
            except (StorageError, TimeoutError) as e:
                log.error("final checkpoint failed (the journal still holds every acknowledged request): %s", e)
            self.journal.close()
        if self.ui is not None:
            self.ui.shutdown()
        self.exporter.shutdown()
        self.http.shutdown()

    # --- ingest ----------------------------------------------------------------------------------
    def _windowed(self, model: str, version: str) -> WindowedProfile:
        wp = self.models.get((model, version))
        if wp is None:  # new, or back after a release
            wp = WindowedProfile(model, version, self.config.windows, self.config.sketch, **self._window_options)
            self._attach_reference(wp)
            if wp.reference is None:
                log.info("model %r version %r: no baseline; the first %ss horizon will be pinned as reference",
                         model, version, self.config.windows.horizon_seconds)
            self.models[(model, version)] = wp
        return wp

    def _attach_reference(self, wp: WindowedProfile) -> None:
        """A baseline file wins; else a pinned reference (from the state or the pinned/ directory)."""
        found = self.references.find(wp.model, wp.version)
        if found is not None and (found[1] == "baseline" or wp.reference is None):
            wp.set_reference(found[0], found[1])

    def _count_refused(self) -> None:
        self.exporter.count(sc.METRIC_REQUESTS_REFUSED, 1, {sc.ATTR_REASON: "overloaded"})

    def consume(self, data: bytes | ExportTraceServiceRequest, signal: str = "traces") -> DecodeResult:
        """Decode one ExportTraceServiceRequest (or, ``signal="logs"``, an ExportLogsServiceRequest of ground
        truth), apply it, make it durable; raises ValueError on malformed bytes, Overloaded when too much is in
        flight, and OSError/TimeoutError when it could not be made durable (the sender should retry)."""
        size = len(data) if isinstance(data, bytes) else data.ByteSize()
        with self.admission.admit(size):
            return self._consume(self._decode(data, signal=signal))

    def apply_decoded(self, record: bytes, size: int) -> DecodeResult:
        """``consume`` for a request a receiver worker process decoded, as ``DecodeResult.to_bytes`` encoded it;
        ``size`` is the size of the request as received."""
        with self.admission.admit(size):
            return self._consume(DecodeResult.from_bytes(record), record)

    def _consume_kafka(self, result: DecodeResult, size: int) -> DecodeResult:
        """A Kafka message's decoded result (its offset in ``result.offsets``; ``size``: the message's bytes):
        journaled even when it carried no ML data, so its offset is durable and it is not read again."""
        with self.admission.admit(size):
            return self._consume(result)

    def _consume(self, result: DecodeResult, record: bytes | None = None) -> DecodeResult:
        """Journal, then apply; ``record`` is ``result.to_bytes()`` when the caller has it already."""
        if self.journal is None or not (result.batches or result.labels or result.offsets):
            self._apply(result)  # nothing to make durable (only counts), or not durable by configuration
        else:
            # The journal keeps the decoded rows, not the request: a replay applies them without decoding
            # again, and the record is ~3.5x smaller. The journal's writer applies them once committed, in
            # sequence order, so memory holds exactly what a replay of the journal would rebuild.
            try:
                self.journal.append(record if record is not None else result.to_bytes(),
                                    functools.partial(self._apply, result))
            except StorageError as e:
                self._storage_failed(e.op, e.cause)
                raise StorageUnavailable(f"otel-ml cannot write its state ({e.cause}); nothing of this request "
                                         "was kept, retry later", self.config.limits.retry_after_seconds) from e
            self._storage_succeeded("journal")
            self._maybe_checkpoint()
        if result.spans_rejected:
            self._rejection_log.warn(result)
        return result

    # --- storage health --------------------------------------------------------------------------
    def _storage_failed(self, op: str, cause: BaseException) -> None:
        """Count a failed state write; log it once per episode of ``op`` (a full disk fails every request)."""
        self.exporter.count(sc.METRIC_STORAGE_ERRORS, 1, {"op": op})
        with self._storage_lock:
            first = op not in self._storage_failing
            self._storage_failing[op] = f"{type(cause).__name__}: {cause}"
        if first:
            consequence = {"journal": "requests are answered UNAVAILABLE with RetryInfo and nothing of them is kept; "
                                      "not ready until a write succeeds",
                           "checkpoint": "retried at the next publication; a replica taking a partition over reads "
                                         "on from its last published offset" if self.shared else
                                         "the journal keeps everything; retried at the next checkpoint",
                           "reference": "the pinned reference is in use; written again at the next evaluation"}[op]
            log.error("cannot write state in %s (%s: %s): %s", self.config.state.dir, op, cause, consequence)

    def _storage_succeeded(self, op: str) -> None:
        if op not in self._storage_failing:  # the common case, without the lock
            return
        with self._storage_lock:
            was = self._storage_failing.pop(op, None)
        if was is not None:
            log.warning("state writes (%s) succeed again after: %s", op, was)

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): not ready while requests cannot be journaled (they are refused)."""
        failure = self._storage_failing.get("journal")
        if failure is not None:
            return False, f"state storage failing ({failure}); requests are refused with RetryInfo"
        return True, "ready"

    def _apply(self, result: DecodeResult, seq: int | None = None) -> DecodeResult:
        """Apply a decoded request to the windows and counters; ``seq`` is its journal sequence number."""
        if self.partitioned is not None:
            return self._apply_shared(result)
        late: Counter[tuple[str, str]] = Counter()
        dropped: Counter[tuple[str, str]] = Counter()
        with self._lock:
            kept = []
            busy = {batch.key for batch in result.batches}
            # The event clock follows the data, but never past when the request was received (journaled with it, so
            # a replay moves it the same way): one client's clock running ahead cannot age every other model.
            bound = result.received_ns or 2**63 - 1
            for batch in result.batches:
                if len(batch.span_end_ns):
                    self.lifecycle.advance(min(int(batch.span_end_ns.max()), bound))
            for batch in result.batches:
                if batch.key not in self.models:
                    admitted, release = self.lifecycle.admit(batch.key, self.models, busy)
                    if release is not None:
                        self._release(release, "limit")
                    if not admitted:
                        n = len(batch.span_end_ns)
                        result.rejected["too_many_models"] += n
                        result.spans_accepted -= n
                        result.examples.setdefault(
                            "too_many_models", f"models.max_models={self.config.models.max_models} live, none "
                            f"releasable (models.when_full={self.config.models.when_full}, release_min_idle_seconds="
                            f"{self.config.models.release_min_idle_seconds:g}); model {batch.model!r} version "
                            f"{batch.version!r} not admitted")
                        continue
                wp = self._windowed(batch.model, batch.version)
                before = wp.dropped_feature_values
                late[batch.key] += wp.update(batch)
                dropped[batch.key] += wp.dropped_feature_values - before
                self.lifecycle.touch(batch.key, min(wp.newest_event_ns or 0, bound))
                kept.append(batch)
            result.batches = kept
            for batch in kept:
                self.ground_truth.on_predictions(batch)
            for labels in result.labels:
                self.ground_truth.on_labels(labels)
            self._count_ground_truth()
            if self.lifecycle.sweep_due(self.config.windows.window_ns):
                self._release_idle()
            for topic, partition, offset in result.offsets:
                key = partition_key(topic, partition)
                self.kafka_offsets[key] = max(offset, self.kafka_offsets.get(key, -1))
            if seq is not None:
                result.seq = self._last_seq = seq
            self._count_result(result)
            for batch in result.batches:
                self.exporter.count(sc.METRIC_PREDICTIONS, float(batch.row_weight.sum()),
                            {sc.ATTR_MODEL_NAME: batch.model, sc.ATTR_MODEL_VERSION: batch.version})
            for (model, version), n in late.items():
                self.exporter.count(sc.METRIC_ROWS_LATE, n, {sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version})
            for (model, version), n in dropped.items():
                self.exporter.count(sc.METRIC_FEATURE_VALUES_DROPPED, n,
                            {sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version})
        return result

    def _count_result(self, result: DecodeResult) -> None:
        self.exporter.count(sc.METRIC_SPANS_RECEIVED, result.spans_received)
        self.exporter.count(sc.METRIC_SPANS_ACCEPTED, result.spans_accepted)
        self.exporter.count(sc.METRIC_SPANS_IGNORED, result.spans_ignored)
        for reason, n in result.rejected.items():
            self.exporter.count(sc.METRIC_SPANS_REJECTED, n, {sc.ATTR_REASON: reason})
        for reason, n in result.skipped_messages.items():
            self.exporter.count(sc.METRIC_KAFKA_SKIPPED, n, {sc.ATTR_REASON: reason})

    # --- shared Kafka mode: partitions, the changelog, one exporter per model ------------------------------
    def _apply_shared(self, result: DecodeResult) -> DecodeResult:
        """One Kafka message into its partition's window sets (profile/partitioned.py). Ground truth needs the
        prediction and its label in one place, which partitions spread over replicas do not give: labels are
        rejected here (``ground_truth_unsupported``), predictions are profiled."""
        assert self.partitioned is not None and len(result.offsets) == 1
        _topic, partition, offset = result.offsets[0]
        with self._lock:
            for labels in result.labels:
                n = len(labels.prediction_id)
                result.rejected["ground_truth_unsupported"] += n
                result.spans_accepted -= n
                result.examples.setdefault("ground_truth_unsupported", "ground truth needs one processor per "
                                           "consumer group (receiver.kafka.changelog_topic unset)")
            result.labels = []
            late = self.partitioned.update(partition, offset, result.batches)
            self._count_result(result)
            for (model, version), n in late.items():
                if n:
                    self.exporter.count(sc.METRIC_ROWS_LATE, n, {sc.ATTR_MODEL_NAME: model,
                                                                 sc.ATTR_MODEL_VERSION: version})
        if result.spans_rejected:
            self._rejection_log.warn(result)
        return result

    def _prepare_shared(self, wp: WindowedProfile) -> None:
        """A window set's reference in shared mode: a baseline file, else the reference pinned from live traffic
        that the changelog carries (local pinned files are not used: the changelog is the state)."""
        found = self.references.find(wp.model, wp.version)
        if found is not None and found[1] == "baseline":
            wp.set_reference(found[0], "baseline")
            return
        shared = self.shared_references.get((wp.model, wp.version))
        if shared is not None:
            wp.set_reference(shared[0], "pinned")
            if shared[1] is not None:
                wp.current_start_ns = max(wp.current_start_ns or 0, shared[1])

    def _adopt_reference(self, key: tuple[str, str], reference: ModelProfile, current_start_ns: int | None) -> None:
        """A reference pinned from the merge of every partition: every window set of the model uses it. Call under
        ``_lock``."""
        assert self.partitioned is not None
        self.shared_references[key] = (reference, current_start_ns)
        for state in self.partitioned.parts.values():
            wp = state.models.get(key)
            if wp is not None and wp.reference_source != "baseline":
                self._prepare_shared(wp)

    def _on_reference(self, key: list, value: bytes | None) -> None:
        if value is None:
            return
        data = json.loads(value)
        with self._lock:
            if (key[1], key[2]) not in self.shared_references:
                self._adopt_reference((key[1], key[2]), ModelProfile.from_dict(data["reference"]),
                                      data["current_start_ns"])

    def _on_publication(self, partition: int, records: list) -> None:
        """A partition's state as its owner published it: taken unless this replica owns the partition now."""
        assert self.partitioned is not None and self.kafka is not None
        with self._lock:
            if partition in self.owned:
                return
            self.partitioned.apply_records(partition, records)

    def _partition_offset(self, key: str) -> int:
        """Shared mode: the offset of the state held for a partition (``topic:partition``; -1: none), where
        reading it resumes."""
        assert self.partitioned is not None
        state = self.partitioned.parts.get(int(key.rpartition(":")[2]))
        return -1 if state is None else state.offset

    def _assigned(self, committed: dict[int, int]) -> None:
        """Partitions given to this replica: first the state their previous owner published with the group's
        committed offset (the changelog read that far), then consumption resumes just past that state's offset."""
        assert self.partitioned is not None
        self._changelog_ready.wait()
        deadline = time.monotonic() + 60
        while True:
            with self._lock:
                behind = [p for p, offset in committed.items() if offset > 0 and
                          (p not in self.partitioned.parts or self.partitioned.parts[p].offset < offset - 1)]
                if not behind or time.monotonic() > deadline:
                    self.owned.update(committed)
                    break
            time.sleep(0.05)
        if behind:  # safe (the older state's offset is where consumption resumes), only slower
            log.warning("partitions %s: the changelog did not bring their committed state within 60 s; resuming "
                        "from the older state held", behind)
        with self._lock:  # the seek points: the held states' offsets (a partition never written to: a state at -1)
            offsets = {p: self.partitioned.parts.setdefault(p, PartitionState()).offset for p in committed}
        log.info("partitions %s taken over at offsets %s (committed with their published state: %s)",
                 sorted(offsets), [offsets[p] for p in sorted(offsets)], [committed[p] for p in sorted(offsets)])
        self._evaluate_now.set()

    def _revoked(self, partitions: list[int]) -> None:
        """Partitions leaving this replica: their state is published first, so the next owner resumes from it."""
        self._publish(partitions)
        with self._lock:
            self.owned.difference_update(partitions)
        self._evaluate_now.set()

    def _polled(self, caught_up: dict[int, bool]) -> None:
        """After each poll: note which partitions are read to their end (the topic's watermark needs it), and
        publish the owned partitions' state every evaluation interval (at most)."""
        assert self.partitioned is not None
        with self._lock:
            for p, done in caught_up.items():
                self.partitioned.parts.setdefault(p, PartitionState()).caught_up = done
        if time.monotonic() - self._last_publication >= min(self.config.evaluation.interval_seconds,
                                                            self.config.state.checkpoint_interval_seconds):
            self._publish(sorted(self.owned))

    def _publish(self, partitions: list[int]) -> None:
        """One changelog transaction: the partitions' changed windows, their offsets, new pinned references."""
        from confluent_kafka import TopicPartition

        assert self.partitioned is not None and self.changelog is not None and self.kafka is not None
        self._last_publication = time.monotonic()
        topic = self.config.receiver.kafka.topic
        idle_ns = int(self.config.models.idle_ttl_seconds * 1e9)
        with self._lock:
            taken = {}
            records: list[tuple[int, list, bytes | None]] = []
            for p in partitions:
                for key in self.partitioned.drop_idle(p, idle_ns):
                    log.info("model %r version %r: no data in partition %d for models.idle_ttl_seconds; its "
                             "windows there dropped", *key, p)
                taken[p] = self.partitioned.take_records(p)
                records += [(p, k, v) for k, v in taken[p][0]]
            references = sorted(self._references_to_publish)
            self._references_to_publish.clear()
            for key in references:
                ref, start = self.shared_references[key]
                records.append((exporting_partition(key[0], self.kafka.partition_count), ["r", *key],
                                json.dumps({"reference": ref.to_dict(), "current_start_ns": start}).encode()))
            offsets = [TopicPartition(topic, p, self.partitioned.parts[p].offset + 1) for p in partitions
                       if p in self.partitioned.parts and self.partitioned.parts[p].offset >= 0]
        if not records:
            return
        try:
            self.changelog.publish(records, offsets, self.kafka.group_metadata())
        except Exception as e:  # nothing of it is visible: published again next time
            with self._lock:
                for _recs, changes in taken.values():
                    self.partitioned.give_back(changes)
                self._references_to_publish.update(references)
            self._storage_failed("checkpoint", e)
            return
        with self._lock:
            for p in taken:
                self.partitioned.published(p)
        self._storage_succeeded("checkpoint")

    def _merge_shared(self) -> None:
        """Shared mode: the merged window sets of the models whose exporting partition this replica owns (one
        replica exports each model), and their ``ml.predictions`` totals from every partition."""
        assert self.partitioned is not None and self.kafka is not None
        n = self.kafka.partition_count
        with self._lock:
            keys = sorted(k for k in self.partitioned.model_keys() if exporting_partition(k[0], n) in self.owned)
            watermark = self.partitioned.watermark_ns(n)
        views = {}
        for key in keys:
            with self._lock:  # one model at a time: ingest waits for one merge, not all
                wp = self.partitioned.merged(key, watermark)
                if wp is None:
                    continue
                if wp.just_pinned and wp.reference is not None:
                    wp.just_pinned = False
                    self._adopt_reference(key, wp.reference, wp.current_start_ns)
                    self._references_to_publish.add(key)
                    log.info("model %r version %r: reference pinned from every partition's first horizon "
                             "(%d rows); published to the changelog", *key, wp.reference.rows)
            views[key] = wp
        self.models = views
        self.exporter.set_counter(sc.METRIC_PREDICTIONS, {
            ((sc.ATTR_MODEL_NAME, m), (sc.ATTR_MODEL_VERSION, v)): wp.predictions for (m, v), wp in views.items()})

    def _count_ground_truth(self) -> None:
        applied, unmatched = self.ground_truth.take_counts()
        for (model, version), n in applied.items():
            self.exporter.count(sc.METRIC_GROUND_TRUTH, n, {sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version})
        for (model, version), _ in applied.items():
            for reason in UNMATCHED_REASONS:  # every reason's series from the first label on, at 0
                self.exporter.count(sc.METRIC_GROUND_TRUTH_UNMATCHED, 0, {
                    sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version, sc.ATTR_REASON: reason})
        for (model, version, reason), n in unmatched.items():
            self.exporter.count(sc.METRIC_GROUND_TRUTH_UNMATCHED, n, {
                sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version, sc.ATTR_REASON: reason})

    def _positive_class(self, model: str, version: str) -> str | None:
        wp = self.models.get((model, version))
        ref = wp.reference if wp is not None else None
        return ref.performance.positive_class if ref is not None and ref.performance is not None else None

    # --- model lifecycle (profile/lifecycle.py decides, this applies) -------------------------------
    def _release(self, key: tuple[str, str], reason: str) -> None:
        """Release a live (model, version): windows to the archive, memory and exported series freed. Its baseline
        or pinned reference stays on disk for its return. Call under ``_lock``."""
        wp = self.models.pop(key)
        if wp.just_pinned and wp.reference is not None:  # not written yet: write it now, or it is lost
            try:
                self.references.save_pinned(wp.reference)
            except OSError as e:
                self._storage_failed("reference", e)
        changes = wp.close()
        if self.state is not None:
            self.state.released(changes)
        self.exporter.forget_model(*key)
        self.references.forget(key)
        self.ground_truth.forget(*key)
        idle_ns = self.lifecycle.clock_ns - self.lifecycle.last_active.get(key, self.lifecycle.clock_ns)
        self.lifecycle.release(key)
        self.exporter.count(sc.METRIC_MODELS_RELEASED, 1, {sc.ATTR_REASON: reason})
        log.info("model %r version %r released (%s; idle %.0f s of event time): %d live", key[0], key[1], reason,
                 idle_ns / 1e9, len(self.models))

    def _release_idle(self) -> None:
        """Release every model idle past models.idle_ttl_seconds, and delete expired pinned references. Runs
        inside ``_apply`` as the event clock moves, so a journal replay releases at the same points."""
        for key in self.lifecycle.idle():
            self._release(key, "idle")
        for key in self.lifecycle.expired_references():
            if key not in self.models and self.references.delete_pinned(key):
                log.info("model %r version %r: pinned reference deleted (released longer than "
                         "models.pinned_reference_ttl_seconds)", *key)

    def retire(self, model: str, version: str | None = None, drop_reference: bool = False) -> list[tuple[str, str]]:
        """Release ``model`` (one version, or all) now, as ``otel-ml models retire`` asks; returns what was."""
        with self._lock:
            keys = [k for k in self.models if k[0] == model and (version is None or k[1] == version)]
            for key in keys:
                self._release(key, "retired")
            if drop_reference:
                for key in [k for k in self.lifecycle.released
                            if k[0] == model and (version is None or k[1] == version)]:
                    self.references.delete_pinned(key)
                    self.lifecycle.released.pop(key, None)
        return keys

    def _run_control_requests(self) -> None:
        """Requests ``otel-ml models retire`` left in ``<state dir>/control``: applied, made durable, deleted."""
        for path, request in read_control_requests(self.config.state.dir):
            released = self.retire(request["model"], request.get("version"), request.get("drop_reference", False))
            log.info("retire request %s: released %s", path.name, released or "nothing (not live)")
            if self.journal is not None:
                try:
                    self.checkpoint()  # the release is durable before the request is gone
                except (StorageError, TimeoutError) as e:
                    log.error("retire request %s applied but not durable yet (%s); kept for a retry", path.name, e)
                    continue
            path.unlink(missing_ok=True)

    # --- durability ------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write the state; raises StorageError (counted, logged once per episode) when it could not."""
        if self.state is None:
            return
        started = time.perf_counter()
        with self._lock:
            try:
                ground_truth = self.ground_truth.state()  # seals waiting predictions into files the checkpoint names
            except OSError as e:  # nothing of the checkpoint is written; the rows stay in memory and the journal
                error = StorageError("checkpoint", e)
                self._storage_failed(error.op, error.cause)
                raise error from e
            cp, changes = self.state.capture(self.models.values(), self.exporter.counter_totals(), self._last_seq,
                                             {"lifecycle": self.lifecycle.to_state(),
                                              "window_ns": self.config.windows.window_ns,
                                              "ground_truth": ground_truth,
                                              "kafka_offsets": dict(self.kafka_offsets)})
            cp.performance_upserts, cp.performance_deletes = self.ground_truth.take_changes()
        try:
            self.state.write(cp)
        except BaseException as e:
            with self._lock:  # not written: the next checkpoint writes these windows again
                self.state.give_back(self.models, changes)
                self.ground_truth.give_back(cp.performance_upserts, cp.performance_deletes)
            if isinstance(e, StorageError):
                self._storage_failed(e.op, e.cause)
            raise
        self._storage_succeeded("checkpoint")
        with self._lock:
            self.ground_truth.pending.committed(ground_truth["pending"])
        self._last_checkpoint = time.monotonic()
        log.debug("checkpoint at seq %d: %d bytes in %.3fs", cp.seq, len(cp.state), time.perf_counter() - started)

    def _maybe_checkpoint(self) -> None:
        if time.monotonic() - self._last_checkpoint >= self.config.state.checkpoint_interval_seconds:
            self._last_checkpoint = time.monotonic()  # one thread takes it; the others go on
            try:
                self.checkpoint()
            except (StorageError, TimeoutError) as e:  # the request itself is durable: answer it OK
                log.debug("checkpoint failed (the journal still holds everything; retried later): %s", e)

    def _recover(self) -> None:
        assert self.state is not None
        started = time.perf_counter()
        recovered = self.state.recover()
        for wp in recovered.models:
            self._attach_reference(wp)
            self.models[(wp.model, wp.version)] = wp
        assert self.journal is not None
        self.ground_truth.restore(recovered.service.get("ground_truth", {}), self.journal.performance_rows())
        self.kafka_offsets.update({k: int(v) for k, v in recovered.service.get("kafka_offsets", {}).items()})
        if "lifecycle" in recovered.service:
            self.lifecycle.restore(recovered.service["lifecycle"])
        else:  # a checkpoint from before lifecycles: every model was active at its newest event
            for wp in recovered.models:
                self.lifecycle.touch((wp.model, wp.version), wp.newest_event_ns or 0)
        self.exporter.restore_counter_totals(recovered.counter_totals)
        self._last_seq = recovered.seq
        replayed = 0
        for seq, payload in recovered.journal:
            try:
                self._apply(DecodeResult.from_bytes(payload), seq)
            except ValueError as e:
                log.error("journal entry %d is not a valid record (%s); skipped", seq, e)
            self._last_seq = seq
            replayed += 1
        if recovered.models or replayed:
            log.info("restored %d model(s) from the checkpoint and replayed %d journaled request(s) in %.2fs",
                     len(self.models), replayed, time.perf_counter() - started)
        self._save_new_references()

    # --- evaluation ------------------------------------------------------------------------------
    def reports(self) -> list[ModelReport]:
        return self._reports

    def profiles(self, model: str, version: str) -> tuple[ModelProfile | None, ModelProfile | None] | None:
        """(reference, current horizon merged) of a live model version; None when it is not live."""
        with self._lock:
            wp = self.models.get((model, version))
            if wp is None:
                return None
            return wp.reference, wp.current()

    def evaluate(self) -> list[ModelReport]:
        """Compare every model's current horizon with its reference; the result feeds the gauges."""
        if self.partitioned is not None:
            self._merge_shared()
        with self._lock:
            models = list(self.models.values())
        snapshot = []
        for wp in models:
            # One model at a time: merging a horizon takes milliseconds, and ingestion must not wait for all.
            with self._lock:
                snapshot.append((wp.reference, wp.reference_source, wp.current()))
        reports = []
        for (reference, source, current), wp in zip(snapshot, models):
            report = compare(reference, current, self.config.drift, source)
            pending = wp.reference_pending()
            if pending is not None:
                report = dataclasses.replace(report, reference_pending_rows=pending[0])
                if (wp.model, wp.version) not in self._pending_logged:
                    self._pending_logged.add((wp.model, wp.version))
                    log.info("model %r version %r: no drift decisions until a reference is pinned from live traffic "
                             "(%d more rows and %.0f s more of event time, or a baseline file); data quality is "
                             "reported meanwhile", wp.model, wp.version, pending[0], pending[1])
            reports.append(report)
        self._performance = self.evaluate_performance()
        self._reports = reports
        return reports

    def evaluate_performance(self) -> list[PerformanceReport]:
        """Realized and estimated performance of every model with labels, probabilities or a labelled baseline."""
        cfg = self.config.performance
        alpha = self.config.drift.evaluation_alpha
        with self._lock:
            self.ground_truth.advance()
            self._count_ground_truth()
            keys = set(self.ground_truth.windows) | {k for k, wp in self.models.items()
                                                     if wp.reference is not None and wp.reference.performance}
            inputs = [(key, self.ground_truth.current(*key),
                       self.models[key].reference.performance if key in self.models and  # type: ignore[union-attr]
                       self.models[key].reference is not None else None) for key in sorted(keys)]
        return [assess(model, version, current, reference, alpha, cfg.threshold, cfg.positive_class, cfg.min_labels,
                       cfg.tolerance) for (model, version), current, reference in inputs]

    def performance(self) -> list[PerformanceReport]:
        return self._performance

    def performance_of(self, model: str, version: str) -> PerformanceReport | None:
        return next((r for r in self._performance if r.model == model and r.version == version), None)

    def _save_new_references(self) -> None:
        with self._lock:
            pinned = [wp for wp in self.models.values() if wp.just_pinned]
            for wp in pinned:
                wp.just_pinned = False
        for wp in pinned:
            assert wp.reference is not None
            try:
                path = self.references.save_pinned(wp.reference)
            except OSError as e:  # in use from memory already; written at the next evaluation
                wp.just_pinned = True
                self._storage_failed("reference", e)
                continue
            self._storage_succeeded("reference")
            log.info("model %r version %r: pinned reference recorded in %s", wp.model, wp.version, path)

    def request_reload(self) -> None:
        """Read the baseline directory again at the next evaluation, changed or not (SIGHUP)."""
        self._reload_requested.set()

    def reload_baselines(self, force: bool = False) -> None:
        """Put baselines added or replaced since start in force for the live models (a baseline wins over a
        pinned reference); runs before every evaluation, so a new file takes effect within one interval."""
        changed = self.references.reload_baselines(force)
        if not changed:
            return
        with self._lock:
            for wp in self.models.values():
                found = self.references.find(wp.model, wp.version)
                if found is None or found[1] != "baseline" or not {(wp.model, wp.version), (wp.model, "")} & changed:
                    continue
                was = wp.reference_source or "none"
                wp.set_reference(found[0], "baseline")
                log.info("model %r version %r: baseline in force (was: %s)", wp.model, wp.version, was)

    def _evaluate_loop(self) -> None:
        interval = self.config.evaluation.interval_seconds
        while not self._stop.is_set():
            # Also right after a rebalance (shared mode), so a model's series move with its partition at once.
            self._evaluate_now.wait(interval)
            self._evaluate_now.clear()
            if self._stop.is_set():
                return
            try:
                started = time.perf_counter()
                force = self._reload_requested.is_set()
                self._reload_requested.clear()
                self.reload_baselines(force)
                self._run_control_requests()
                self._save_new_references()
                reports = self.evaluate()
                self.exporter.refresh()  # series built and rendered here, not in a scrape
                self.history.record(time.time(), reports)
                if self.journal is not None:
                    # Also when no request comes: a quiet model's windows still reach the archive (which the
                    # pages and `otel-ml report` read) and a restart replays less.
                    self._maybe_checkpoint()
                log.debug("evaluated %d model(s) in %.3fs", len(reports), time.perf_counter() - started)
            except Exception:
                log.exception("drift evaluation failed")
