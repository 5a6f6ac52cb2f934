"""The processor: wires receiver → decoder → windowed profiles → analyzer → exporter from one config."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml import semconv as sc
from otel_ml.analyze.drift import ModelReport, compare
from otel_ml.config import ServiceConfig
from otel_ml.decode import DecodeResult, decode_request
from otel_ml.export.metrics import MetricsExporter
from otel_ml.profile.window import WindowedProfile
from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver
from otel_ml.receiver.otlp_http import OtlpHttpTraceReceiver
from otel_ml.store.baselines import ReferenceStore

log = logging.getLogger(__name__)


class ProcessorService:
    """``otel-ml serve``: start(), then the receiver feeds ``consume`` and a thread evaluates drift."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.references = ReferenceStore(config.baseline_dir, config.state_dir)
        self.models: dict[tuple[str, str], WindowedProfile] = {}
        self._lock = threading.Lock()
        self._reports: list[ModelReport] = []
        self._stop = threading.Event()
        self._evaluator: threading.Thread | None = None
        self.receiver = OtlpTraceReceiver(config.receiver.otlp_grpc, self.consume)
        self.http_receiver = (OtlpHttpTraceReceiver(config.receiver.otlp_http, self.consume)
                              if config.receiver.otlp_http.enabled else None)
        self.exporter = MetricsExporter(config.export, self.reports, config.instance_id)
        self.rejected_total: Counter[str] = Counter()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.references.open()
        self.exporter.start()
        self.receiver.start()
        if self.http_receiver is not None:
            self.http_receiver.start()
        self._evaluator = threading.Thread(target=self._evaluate_loop, name="otel-ml-evaluate", daemon=True)
        self._evaluator.start()

    def shutdown(self) -> None:
        self._stop.set()
        self.receiver.shutdown()
        if self.http_receiver is not None:
            self.http_receiver.shutdown()
        if self._evaluator is not None:
            self._evaluator.join(timeout=10)
        self._save_new_references()
        self.exporter.shutdown()

    # --- ingest ----------------------------------------------------------------------------------
    def _windowed(self, model: str, version: str) -> WindowedProfile:
        wp = self.models.get((model, version))
        if wp is None:
            found = self.references.find(model, version)
            wp = WindowedProfile(model, version, self.config.windows, self.config.sketch)
            if found is not None:
                wp.set_reference(found[0], found[1])
            else:
                log.info("model %r version %r: no baseline; the first %ss horizon will be pinned as reference",
                         model, version, self.config.windows.horizon_seconds)
            self.models[(model, version)] = wp
        return wp

    def consume(self, data: bytes | ExportTraceServiceRequest) -> DecodeResult:
        """Decode one ExportTraceServiceRequest and apply it; raises ValueError on malformed bytes."""
        result = decode_request(data, self.config.limits)
        late: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for batch in result.batches:
                late[batch.key] += self._windowed(batch.model, batch.version).update(batch)
        ex = self.exporter
        ex.spans_received.add(result.spans_received)
        ex.spans_accepted.add(result.spans_accepted)
        if result.spans_ignored:
            ex.spans_ignored.add(result.spans_ignored)
        for reason, n in result.rejected.items():
            ex.spans_rejected.add(n, {sc.ATTR_REASON: reason})
            self.rejected_total[reason] += n
        for batch in result.batches:
            ex.predictions.add(float(batch.row_weight.sum()),
                               {sc.ATTR_MODEL_NAME: batch.model, sc.ATTR_MODEL_VERSION: batch.version})
        for (model, version), n in late.items():
            if n:
                ex.rows_late.add(n, {sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version})
        if result.spans_rejected:
            log.warning("rejected %d span(s): %s", result.spans_rejected, result.message())
        return result

    # --- evaluation ------------------------------------------------------------------------------
    def reports(self) -> list[ModelReport]:
        return self._reports

    def evaluate(self) -> list[ModelReport]:
        """Compare every model's current horizon with its reference; the result feeds the gauges."""
        with self._lock:
            snapshot = [(wp.reference, wp.reference_source, wp.current()) for wp in self.models.values()]
        reports = [compare(reference, current, self.config.drift, source) for reference, source, current in snapshot]
        self._reports = reports
        return reports

    def _save_new_references(self) -> None:
        with self._lock:
            pinned = [wp for wp in self.models.values() if wp.just_pinned]
            for wp in pinned:
                wp.just_pinned = False
        for wp in pinned:
            assert wp.reference is not None
            path = self.references.save_pinned(wp.reference)
            log.info("model %r version %r: pinned reference recorded in %s", wp.model, wp.version, path)

    def _evaluate_loop(self) -> None:
        interval = self.config.evaluation.interval_seconds
        while not self._stop.wait(interval):
            try:
                started = time.perf_counter()
                self._save_new_references()
                reports = self.evaluate()
                log.debug("evaluated %d model(s) in %.3fs", len(reports), time.perf_counter() - started)
            except Exception:
                log.exception("drift evaluation failed")
