"""The processor, ``otel-ml serve``: its stages wired once from one config, started, stopped.

    sources ─► decode (worker processes) ─► Pipeline.submit ─► StateBackend.commit ─► LiveModels.apply
    (gRPC, HTTP, Kafka)                      (core/pipeline)     (state/local|shared)   (core/live)
    Evaluator (core/evaluator) ─► Snapshot ─► MetricsExporter (export/), UiServer (ui/), the demo

The state backend is the one choice of mode, made here (``_state_backend``): a single processor keeps its state in
its state directory (``LocalState``); replicas sharing a Kafka topic keep it in a changelog topic
(``SharedState``). No stage asks which one it got.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
from pathlib import Path

import numpy as np

from otel_ml import semconv as sc
from otel_ml.analyze.fairness import fairness_text
from otel_ml.config import ServiceConfig, record_settings
from otel_ml.core.counters import Counters
from otel_ml.core.evaluator import Evaluator
from otel_ml.core.live import LiveConfig, LiveModels, MergedViews, Ownership, OwnViews
from otel_ml.core.pipeline import Pipeline
from otel_ml.core.references import ReferenceStore
from otel_ml.decode.privacy import hash_classes, hashes_prediction, load_key
from otel_ml.export.metrics import MetricsExporter
from otel_ml.http_server import HttpServer, server_tls_context
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.receiver.common import AdmissionControl
from otel_ml.receiver.ingest import decode_for_ingest
from otel_ml.receiver.kafka import KafkaTraceReceiver
from otel_ml.receiver.kinesis import KinesisTraceReceiver
from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver
from otel_ml.receiver.otlp_http import OtlpHttpTraceReceiver
from otel_ml.receiver.workers import ReceiverWorkers, WorkerSpec, refuse_taken_ports
from otel_ml.state.local import LocalState
from otel_ml.state.shared import SharedState
from otel_ml.ui.server import UiServer, UiSource

log = logging.getLogger(__name__)


def _hashed_positive_class(config: ServiceConfig, key: bytes | None) -> ServiceConfig:
    """With privacy hashing, classes arrive hashed (decode/privacy.py); so must the positive class and each
    fairness model's favorable class be."""
    perf = config.performance
    if key is None or not hashes_prediction(config.privacy.hash_features):
        return config

    def hashed(cls: object) -> str:
        return str(hash_classes(np.array([fairness_text(cls)]), key)[0])

    fairness = {m: {**entry, "favorable": hashed(entry["favorable"])} for m, entry in perf.fairness.items()}
    return dataclasses.replace(config, performance=dataclasses.replace(
        perf, positive_class=hashed(perf.positive_class) if perf.positive_class else perf.positive_class,
        fairness=fairness))


def _id_partition(ownership: Ownership, ids: np.ndarray) -> np.ndarray:
    """Shared mode: the partition a prediction id's label meets it in (the id hash modulo the partition count)."""
    return (ids % np.uint64(max(ownership.partitions, 1))).astype(np.int64)


class ProcessorService:
    """``start()``, then the receivers feed the pipeline and the evaluator publishes snapshots; ``shutdown()``."""

    def __init__(self, config: ServiceConfig) -> None:
        hash_key = load_key(config.privacy.hash_key_env)
        self.config = config = _hashed_positive_class(config, hash_key)
        token = config.receiver.auth.token()
        self.counters = Counters()
        self.counters.start_at_zero()
        self.instance_id = config.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        """``service.instance.id`` of the exported metrics (replicas never write the same series)."""
        self._decode = functools.partial(decode_for_ingest, limits=config.limits.decode_limits(), hash_key=hash_key,
                                         hash_features=config.privacy.hash_features, genai=config.genai)
        self.http = HttpServer(config.http)
        """Every HTTP surface: OTLP/HTTP, the Prometheus endpoint, the pages."""
        kafka = config.receiver.kafka
        self.live, self.backend = self._state_backend(config)
        self.evaluator = Evaluator(self.live, config.drift, config.performance, config.evaluation.interval_seconds)
        self.pipeline = Pipeline(self.live, self.backend, self.counters,
                                 AdmissionControl(config.limits.max_inflight_bytes, config.limits.retry_after_seconds,
                                                  on_refuse=self._count_refused), self._decode)
        # Sources. In shared mode what the OTLP receivers take goes to the input topic (SharedState.forward).
        shared = isinstance(self.backend, SharedState)
        workers = config.receiver.otlp_grpc.worker_count()
        self.receiver: OtlpTraceReceiver | ReceiverWorkers = (
            ReceiverWorkers(WorkerSpec(config.receiver.otlp_grpc, config.receiver.tls, token, self._decode,
                                       config.limits.max_inflight_bytes, config.limits.retry_after_seconds,
                                       logging.getLogger().level), workers, self.pipeline.submit_record,
                            on_refused=self._count_refused)
            if workers else OtlpTraceReceiver(config.receiver.otlp_grpc, self.pipeline.consume, config.receiver.tls,
                                              token))
        self.http_receiver = (OtlpHttpTraceReceiver(config.receiver.otlp_http, self.pipeline.consume,
                                                    config.receiver.tls, token, readiness=self.readiness,
                                                    server=self.http, admission=self.pipeline.inflight)
                              if config.receiver.otlp_http.enabled else None)
        self.kafka = (KafkaTraceReceiver(kafka, self._decode, self.pipeline.submit, self.backend.resume_offset,
                                         self.backend.partition_callbacks() if shared else None)  # type: ignore[union-attr]
                      if kafka.enabled else None)
        self.kinesis = (KinesisTraceReceiver(config.receiver.kinesis, self._decode, self.pipeline.submit,
                                             self.backend.resume_offset, self.counters.count)
                        if config.receiver.kinesis.enabled else None)
        if shared:
            self.backend.source = self.kafka  # type: ignore[union-attr]
            self.backend.on_ownership = self.evaluator.wake  # type: ignore[union-attr]
        # Readers of the snapshots.
        tls = config.receiver.tls
        protect = config.export.prometheus.protected
        tls_context = server_tls_context(tls.cert_file, tls.key_file, tls.client_ca_file) \
            if tls.enabled else None  # type: ignore[arg-type]
        self.exporter = MetricsExporter(config.export, self.counters, self.instance_id, self.backend.health,
                                        self.http, self.readiness,
                                        tls_context if protect else None, token if protect else None)
        self.evaluator.subscribe(self.exporter.publish)
        self.ui = (UiServer(config.ui, UiSource(config.state.dir if self._archived(config) else None, config.drift,
                                                config.export.effect_size, config.performance,
                                                self.live.performance_windows, self.live.archive_gate),
                            self.http, tls_context, token, self.readiness) if config.ui.enabled else None)
        if self.ui is not None:
            self.evaluator.subscribe(self.ui.publish)

    @staticmethod
    def _archived(config: ServiceConfig) -> bool:
        """Windows leaving the horizon are archived: durable local state, or shared mode (every replica)."""
        shared = config.receiver.kafka.enabled and bool(config.receiver.kafka.changelog_topic)
        return config.state.archive.enabled and (config.state.durable or shared)

    def _state_backend(self, config: ServiceConfig) -> tuple[LiveModels, LocalState | SharedState]:
        """The one place the mode is decided: replicas sharing a Kafka topic (``receiver.kafka.changelog_topic``)
        keep their state in a changelog and evaluate the merge of every partition; a single processor keeps it in
        its state directory and evaluates its own window sets."""
        kafka = config.receiver.kafka
        shared = kafka.enabled and bool(kafka.changelog_topic)
        ownership = Ownership()
        live_config = LiveConfig(config.windows, config.sketch, config.models,
                                 config.limits.max_profiled_features_per_model,
                                 10 if config.drift.learned_thresholds else 0, self._archived(config),
                                 config.drift.correlation_features,
                                 {m: tuple(by) for m, by in config.segments.by.items()}, config.segments.max_per_model,
                                 dict(config.segments.bins))
        references = ReferenceStore(config.baseline_dir, config.state.dir, pinned_files=not shared,
                                    max_baseline_bytes=config.limits.max_baseline_bytes)
        live = LiveModels(live_config, references, self.counters, MergedViews(ownership) if shared else OwnViews(),
                          labels=functools.partial(self._ground_truth, config, shared),
                          routing=functools.partial(_id_partition, ownership) if shared else None)
        if shared:
            return live, SharedState(kafka, live, ownership, self.counters, self.instance_id,
                                     config.state.dir, min(config.evaluation.interval_seconds,
                                                           config.state.checkpoint_interval_seconds),
                                     config.state.archive)
        return live, LocalState(config.state, live, self.counters, config.evaluation.interval_seconds,
                                config.limits.retry_after_seconds)

    def _ground_truth(self, config: ServiceConfig, shared: bool, partition: int) -> GroundTruth:
        directory = Path(config.state.dir) / "pending"
        # Shared mode archives the windows of the partitions a replica owns (SharedState._take_over).
        return GroundTruth(str(directory / f"p{partition}" if shared else directory), config.labels, config.performance,
                           lambda m, v: self.live.performance_reference(m, v),
                           int(config.limits.max_clock_skew_seconds * 1e9),
                           archives=self._archived(config) and not shared, pass_labels=config.genai.pass_labels)

    def readiness(self) -> tuple[bool, str]:
        """Ready while requests can be made durable and every source is there (a Kinesis stream deleted: not)."""
        ready, why = self.backend.health.readiness()
        kinesis = getattr(self, "kinesis", None)  # the OTLP receivers are wired (and may ask) before it
        if ready and kinesis is not None:
            return kinesis.readiness()
        return ready, why

    def _count_refused(self) -> None:
        self.pipeline.count_refused()

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover, then open the receivers, then the listeners that tell readiness (/metrics, the pages): whoever
        waits for those finds every receiver accepting. Every fixed port is checked first, so a busy one fails the
        start before anything is received."""
        self.live.references.open()  # also proves the state directory is writable
        record_settings(self.config)  # `otel-ml report` decides with them
        self._check_ports()
        self.backend.open()
        try:
            self._start_components()
        except BaseException:
            self.shutdown()  # what started stops: no receiver worker outlives a failed start and is "restarted"
            raise

    def _start_components(self) -> None:
        self.http.start()
        if self.kafka is not None:
            for reason in ("not_otlp", "too_large"):
                self.counters.count(sc.METRIC_KAFKA_SKIPPED, 0, {sc.ATTR_REASON: reason})
            self.kafka.start()
        if self.kinesis is not None:
            self.kinesis.start()
        self.backend.start()
        self.receiver.start()
        if self.http_receiver is not None:
            self.http_receiver.start()
        self.exporter.start()
        if self.ui is not None:
            self.ui.start()
        self.evaluator.start()

    def _check_ports(self) -> None:
        """Fail the start, naming the setting, when a fixed port is taken (before anything is received): every
        taken port at once, not one per restart."""
        cfg = self.config
        refuse_taken_ports([(what, endpoint) for what, endpoint, used in (
            ("the OTLP/gRPC receiver (receiver.otlp_grpc.endpoint)", cfg.receiver.otlp_grpc.endpoint, True),
            ("the OTLP/HTTP receiver (receiver.otlp_http.endpoint)", cfg.receiver.otlp_http.endpoint,
             self.http_receiver is not None),
            ("the Prometheus endpoint (export.prometheus.endpoint)", cfg.export.prometheus.endpoint,
             cfg.export.prometheus.enabled),
            ("the UI (ui.endpoint)", cfg.ui.endpoint, self.ui is not None)) if used])

    def shutdown(self) -> None:
        if self.kafka is not None:
            self.kafka.shutdown()  # shared mode: leaving the group publishes this replica's partitions
        if self.kinesis is not None:
            self.kinesis.shutdown()
        self.receiver.shutdown()
        if self.http_receiver is not None:
            self.http_receiver.shutdown()
        self.evaluator.shutdown()
        self.backend.shutdown()
        if self.ui is not None:
            self.ui.shutdown()
        self.exporter.shutdown()
        self.http.shutdown()

    def request_reload(self) -> None:
        """Read the baseline directory again at the next evaluation, changed or not (SIGHUP)."""
        self.evaluator.request_reload()
