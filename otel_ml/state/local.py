"""Local state: a single processor's live models kept in its state directory (a ``StateBackend``).

What a request that carried ML spans added (its DecodeResult, as ``to_bytes`` encodes it) is journaled
(journal.py) and applied in memory only once that commit succeeded, before the request is answered: an
acknowledged span survives ``kill -9``, and a refused one (disk full: UNAVAILABLE with RetryInfo) leaves no trace,
so the sender's retry counts once. A checkpoint of the whole state every ``state.checkpoint_interval_seconds``
(checkpoint.py) keeps recovery short; windows that leave the horizon go to the archive (archive.py) with it.
Kafka offsets ride in the journal records and the checkpoint, so a Kafka source resumes exactly where the state
is. ``state.durable: false`` applies without a journal (a restart loses the live windows).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from otel_ml import semconv as sc
from otel_ml.core.backend import Apply
from otel_ml.core.counters import Counters
from otel_ml.core.health import StorageHealth
from otel_ml.core.live import LiveModels
from otel_ml.core.memory import return_free_memory
from otel_ml.decode.batch import DecodeResult
from otel_ml.profile.window import WindowedProfile
from otel_ml.receiver.common import StorageUnavailable
from otel_ml.sealed import Loss, opened
from otel_ml.state.archive import ArchiveConfig
from otel_ml.state.checkpoint import StateStore
from otel_ml.state.control import read_control_requests
from otel_ml.state.journal import DB_FILE, Journal, StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateConfig:
    """YAML ``state``."""

    dir: str = "./otel-ml-state"
    """Where the processor keeps what must survive a restart: journal, checkpoints, pinned references."""
    durable: bool = True
    """Answer an OTLP export only once it is on disk (journal + fsync). Off: faster, loses data on a crash."""
    checkpoint_interval_seconds: float = 30.0
    """How often the whole state is written, bounding how much journal a restart replays."""
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    """Windows that leave the horizon are archived here, compacted by merging as they age."""


def kafka_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class LocalState:
    """Journal, checkpoints, recovery and archive in ``config.dir``, for the live models in partition 0.
    ``chores_interval``: how often pinned references are written and control requests read (the evaluation
    interval)."""

    def __init__(self, config: StateConfig, live: LiveModels, counters: Counters, chores_interval: float = 10.0,
                 retry_after_seconds: float = 1.0) -> None:
        self.config = config
        self.live = live
        self.counters = counters
        self.chores_interval = chores_interval
        self.retry_after_seconds = retry_after_seconds
        self.health = StorageHealth(counters, config.dir, {
            "journal": "requests are answered UNAVAILABLE with RetryInfo and nothing of them is kept; not ready "
                       "until a write succeeds",
            "checkpoint": "the journal keeps everything; retried at the next checkpoint",
            "reference": "the pinned reference is in use; written again at the next evaluation"})
        self.journal = Journal(config.dir, archive_config=config.archive) if config.durable else None
        self.store = (StateStore(self.journal, live.config.windows, live.config.sketch, live.window_options())
                      if self.journal is not None else None)
        self.kafka_offsets: dict[str, int] = {}
        """Newest applied offset per Kafka ``topic:partition`` (checkpointed; the journal records each message's)."""
        self.last_seq = 0
        self._last_checkpoint = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def open(self) -> None:
        if self.journal is None:
            log.info("state.durable is false: requests are not journaled (a restart loses the live windows); "
                     "only pinned references are written to %s", self.config.dir)
            labels = self.live.partition(0).labels
            if labels is not None:
                labels.restore({})  # not durable: waiting predictions of an earlier run are not valid
        else:
            self._recover()
            self.journal.start()
        self.run_control_requests()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-ml-checkpoint", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.save_pinned_references()
        if self.journal is not None:
            try:
                self.checkpoint()
            except (StorageError, TimeoutError) as e:
                log.error("final checkpoint failed (the journal still holds every acknowledged request): %s", e)
            self.journal.close()

    def _run(self) -> None:
        while not self._stop.wait(min(self.chores_interval, self.config.checkpoint_interval_seconds)):
            try:
                self.run_control_requests()
                self.save_pinned_references()
                self.report_losses(self.live.references.take_losses())
                # Also when no request comes: a quiet model's windows still reach the archive (which the pages and
                # `otel-ml report` read) and a restart replays less.
                self.maybe_checkpoint()
            except Exception:
                log.exception("state maintenance failed")

    # --- the write path ------------------------------------------------------------------------------------
    def commit(self, result: DecodeResult, apply: Apply, record: bytes | memoryview | None = None) -> None:
        if self.journal is None or not (result.batches or result.labels or result.offsets):
            self._apply(result, apply)  # nothing to make durable (only counts), or not durable by configuration
            return
        # The journal keeps the decoded rows, not the request: a replay applies them without decoding again, and
        # the record is ~3.5x smaller. The journal's writer applies them once committed, in sequence order, so
        # memory holds exactly what a replay of the journal would rebuild. Not sealed: the journal's files check
        # each record themselves (request_log.py), and a second checksum and copy of 100 KB was 4% of a request.
        try:
            self.journal.append(record if record is not None else result.to_bytes(),
                                lambda seq: self._apply(result, apply, seq))
        except StorageError as e:
            self.health.failed(e.op, e.cause)
            raise StorageUnavailable(f"otel-ml cannot write its state ({e.cause}); nothing of this request was "
                                     "kept, retry later", self.retry_after_seconds) from e
        self.health.succeeded("journal")
        self.maybe_checkpoint()

    def _apply(self, result: DecodeResult, apply: Apply, seq: int | None = None) -> None:
        """Apply, and note what it covers (journal sequence, Kafka offsets) in the same critical section, so a
        checkpoint never holds one without the other."""
        with self.live.lock:
            apply(result, 0)
            for topic, partition, offset in result.offsets:
                key = kafka_key(topic, partition)
                self.kafka_offsets[key] = max(offset, self.kafka_offsets.get(key, -1))
            if seq is not None:
                result.seq = self.last_seq = seq

    def resume_offset(self, topic: str, partition: int) -> int | None:
        return self.kafka_offsets.get(kafka_key(topic, partition))

    # --- checkpoints -----------------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write the state; raises StorageError (counted, logged once per episode) when it could not."""
        if self.store is None:
            return
        with self.live.archive_gate:  # a range read sees these windows in memory or in the archive, never neither
            self._checkpoint()

    def _checkpoint(self) -> None:
        started = time.perf_counter()
        live = self.live
        with live.lock:
            state = live.partition(0)
            try:  # seals waiting predictions into files the checkpoint names
                labels = state.labels.state() if state.labels is not None else {}
            except OSError as e:  # nothing of the checkpoint is written; the rows stay in memory and the journal
                error = StorageError("checkpoint", e)
                self.health.failed(error.op, error.cause)
                raise error from e
            released, state.released = state.released, []
            cp, changes = self.store.capture(state.models.values(), released, self.counters.to_state(),
                                             self.last_seq, {"lifecycle": state.lifecycle.to_state(),
                                                             "window_ns": live.config.windows.window_ns,
                                                             "ground_truth": labels,
                                                             "kafka_offsets": dict(self.kafka_offsets)})
            performance = state.labels.take_changes() if state.labels is not None else None
            if performance is not None:
                cp.performance_upserts, cp.performance_deletes, cp.performance_archive = performance
        try:
            self.store.write(cp)
        except BaseException as e:
            with live.lock:  # not written: the next checkpoint writes these windows again
                self.store.give_back(state.models, changes)
                if state.labels is not None and performance is not None:
                    state.labels.give_back(performance)
            if isinstance(e, StorageError):
                self.health.failed(e.op, e.cause)
            raise
        self.health.succeeded("checkpoint")
        return_free_memory()  # a checkpoint serializes every changed window: give that back
        with live.lock:
            if state.labels is not None:
                state.labels.pending.committed(labels["pending"])
        self._last_checkpoint = time.monotonic()
        log.debug("checkpoint at seq %d: %d bytes in %.3fs", cp.seq, len(cp.state), time.perf_counter() - started)

    def maybe_checkpoint(self) -> None:
        if self.store is None or time.monotonic() - self._last_checkpoint < self.config.checkpoint_interval_seconds:
            return
        self._last_checkpoint = time.monotonic()  # one thread takes it; the others go on
        try:
            self.checkpoint()
        except (StorageError, TimeoutError) as e:  # the requests themselves are durable
            log.debug("checkpoint failed (the journal still holds everything; retried later): %s", e)

    def _recover(self) -> None:
        assert self.store is not None and self.journal is not None
        started = time.perf_counter()
        live = self.live
        recovered = self.store.recover()
        losses = list(recovered.losses)
        with live.lock:
            state = live.partition(0)
            for wp in recovered.models:
                live.attach_reference(wp)
                state.models[(wp.model, wp.version)] = wp
                if wp.reference_source == "pinned" and not live.references.pinned_file_ok(wp.reference):
                    wp.just_pinned = True  # the checkpoint holds it: its file (missing, damaged) is written again
            if state.labels is not None:
                losses += state.labels.restore(recovered.service.get("ground_truth", {}),
                                               self.journal.performance_rows(), Path(self.config.dir))
            self.kafka_offsets.update({k: int(v) for k, v in recovered.service.get("kafka_offsets", {}).items()})
            if "lifecycle" in recovered.service:
                state.lifecycle.restore(recovered.service["lifecycle"])
            else:  # a checkpoint from before lifecycles: every model was active at its newest event
                for wp in recovered.models:
                    state.lifecycle.touch((wp.model, wp.version), wp.newest_event_ns or 0)
            self.counters.restore(recovered.counter_totals)
            self.last_seq = recovered.seq
        replayed = 0
        for seq, payload in recovered.journal:
            try:
                result = DecodeResult.from_bytes(opened(payload, f"journal entry {seq}"))
            except ValueError as e:
                losses.append(Loss("journal_record", f"{DB_FILE}: journal entry {seq}", 0,
                                   f"{e}: the request it recorded ({len(payload)} bytes) is lost"))
                self.last_seq = seq
                continue
            try:
                self._apply(result, self._replay_apply, seq)
            except Exception:  # applied as far as it went, as it was live: the same state, and no crash loop
                log.exception("journal entry %d failed to apply again (as it did live); carrying on", seq)
                self.last_seq = seq
            replayed += 1
        if recovered.models or replayed:
            log.info("restored %d model(s) from the checkpoint and replayed %d journaled request(s) in %.2fs",
                     len(live.partition(0).models), replayed, time.perf_counter() - started)
        self.report_losses(losses + self.live.references.take_losses())
        self.save_pinned_references()

    def report_losses(self, losses: list[Loss]) -> None:
        """Say and count each part of the state that recovery could not use (otel_ml.state.recovered{kind})."""
        for loss in losses:
            log.error("state recovered without %s: %s", loss.file, loss.what)
            self.counters.count(sc.METRIC_STATE_RECOVERED, 1, {sc.ATTR_KIND: loss.kind})

    def _replay_apply(self, result: DecodeResult, partition: int) -> None:
        self.live.apply(result, partition)

    # --- chores ----------------------------------------------------------------------------------------------
    def save_pinned_references(self) -> None:
        """Write references pinned since the last call (a restart keeps them)."""
        with self.live.lock:
            pinned = self.live.newly_pinned()
        for wp in pinned:
            self._save_pinned(wp)

    def _save_pinned(self, wp: WindowedProfile) -> None:
        assert wp.reference is not None
        try:
            path = self.live.references.save_pinned(wp.reference)
        except OSError as e:  # in use from memory already; written at the next evaluation
            wp.just_pinned = True
            self.health.failed("reference", e)
            return
        self.health.succeeded("reference")
        log.info("model %r version %r: pinned reference recorded in %s", wp.model, wp.version, path)
        with self.live.lock:
            if (wp.model, wp.version) not in self.live.model_keys():
                # Released before its reference was recorded: on disk for its return, not held in memory (the
                # release forgot it before save_pinned put it back; tests/e2e/test_model_churn.py saw 7 of 4).
                self.live.references.forget((wp.model, wp.version))

    def run_control_requests(self) -> None:
        """Requests ``otel-ml models retire`` left in ``<state dir>/control``: applied, made durable, deleted."""
        for path, request in read_control_requests(self.config.dir):
            with self.live.lock:
                released = self.live.retire(request["model"], request.get("version"),
                                            request.get("drop_reference", False))
            log.info("retire request %s: released %s", path.name, released or "nothing (not live)")
            if self.journal is not None:
                try:
                    self.checkpoint()  # the release is durable before the request is gone
                except (StorageError, TimeoutError) as e:
                    log.error("retire request %s applied but not durable yet (%s); kept for a retry", path.name, e)
                    continue
            Path(path).unlink(missing_ok=True)
