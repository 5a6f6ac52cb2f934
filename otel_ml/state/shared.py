"""Shared state: replicas in one Kafka consumer group share models (a ``StateBackend``).

Each replica applies the messages of the input partitions it is assigned to those partitions' window sets
(otel_ml/core/live.py) and publishes each partition's state, with the offset it reached, to a compacted changelog
topic (changelog.py, records in partitions.py) in one Kafka transaction every evaluation interval and whenever it
loses a partition. Every replica reads the changelog, so the replica owning a model's *exporting partition*
evaluates the merge of every partition's window set (``MergedViews``) and is the only one exporting that model's
series. A replica that takes a partition over (a rebalance, ``kill -9`` of its owner) starts from the state
published with the group's committed offset and reads on from there: nothing lost, nothing counted twice, and no
local journal (the topic is the log).

Ground truth: a label must meet its prediction in one partition, whichever partitions they came in by. The
partition that reads a prediction with an id (or a label) keeps it if the id hashes to it, and otherwise sends it,
as a decoded record, to the partition it hashes to, in the transaction of its next publication (exactly once).
Each partition's pending store and performance windows are published with its windows (partitions.py), and a
replica taking a partition over restores them from the changelog. OTLP requests a replica receives directly are
written to the input topic the same way: rows with ids (and labels) to the partition their ids hash to.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from otel_ml import semconv as sc
from otel_ml.core.backend import Apply
from otel_ml.core.counters import Counters
from otel_ml.core.health import StorageHealth
from otel_ml.core.live import LiveModels, Ownership, exporting_partition
from otel_ml.core.memory import return_free_memory
from otel_ml.decode.batch import DecodeResult
from otel_ml.profile.model import ModelProfile
from otel_ml.receiver.common import StorageUnavailable
from otel_ml.receiver.config import RECORD_HEADER, KafkaReceiverConfig
from otel_ml.receiver.kafka import KafkaTraceReceiver, PartitionCallbacks
from otel_ml.state import partitions as records_of
from otel_ml.state.archive import ArchiveConfig, ArchiveRow, ArchiveWriter
from otel_ml.state.changelog import KafkaChangelog
from otel_ml.state.control import read_control_requests
from otel_ml.state.copies import COPIES_FILE, WindowCopies
from otel_ml.state.partitions import split_for_partitions

log = logging.getLogger(__name__)


class SharedState:
    """Partitions, changelog, merge and takeover. ``source`` (the Kafka source of the input topic) is given by the
    wiring once made (it needs this backend's ``resume_offset`` and ``partition_callbacks``); ``on_ownership``
    runs after partitions came or went (the evaluator evaluates at once, so series move with their partition)."""

    def __init__(self, config: KafkaReceiverConfig, live: LiveModels, ownership: Ownership, counters: Counters,
                 instance_id: str, state_dir: str, publish_interval: float = 10.0,
                 archive: ArchiveConfig | None = None) -> None:
        self.config = config
        self.live = live
        self.ownership = ownership
        self.counters = counters
        self.publish_interval = publish_interval
        self.health = StorageHealth(counters, state_dir, {
            "journal": "requests are answered UNAVAILABLE with RetryInfo",
            "checkpoint": "retried at the next publication; a replica taking a partition over reads on from its last "
                          "published offset",
            "reference": "the pinned reference is in use; published again at the next evaluation"})
        self.source: KafkaTraceReceiver | None = None
        self.on_ownership: Callable[[], None] = lambda: None
        self.state_dir = Path(state_dir)
        self._published_files: dict[int, set[str]] = {}
        """Per partition, the pending files its last publication named (later ones send only what is new)."""
        self._full: set[int] = set()
        """Partitions whose whole state this replica holds (the ones it owns, and those just revoked)."""
        self._no_metadata_since = 0.0
        """Since when the consumer has had no group metadata (a rebalance); 0: it has some."""
        self._exporting: set[int] = set()
        """Partitions whose exported models' windows of every other partition this replica holds."""
        self._producer = None
        """Writes what the OTLP receivers take to the input topic (idempotent; started with the backend)."""
        self._last_publication = time.monotonic()
        self._changelog_ready = threading.Event()
        self._archive_config = archive
        self.archive: ArchiveWriter | None = None
        self.copies: WindowCopies | None = None
        """The windows of the partitions this replica does not own, of the models it exports (on disk)."""
        """Every replica's own archive of every model: what the history pages and ``otel-ml report`` read."""
        self.changelog = KafkaChangelog(config, f"otel-ml-{config.group}-{instance_id}", self._on_publication,
                                        self._on_reference, self._on_archive)

    @property
    def owned(self) -> set[int]:
        """The input partitions this replica consumes now."""
        return self.ownership.owned

    def partition_callbacks(self) -> PartitionCallbacks:
        return PartitionCallbacks(self._assigned, self._revoked, self._polled)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def open(self) -> None:
        """Nothing local to recover: the changelog is the state (read once the source knows the partitions); the
        archive of this replica is opened."""
        if self._archive_config is not None and self._archive_config.enabled:
            self.archive = ArchiveWriter(str(self.state_dir), self._archive_config)
        self.copies = WindowCopies(self.state_dir / COPIES_FILE, self.live.config.sketch)
        self.ownership.others = self.copies.windows

    def start(self) -> None:
        assert self.source is not None
        log.info("shared Kafka mode: windows per partition of %r, state in the changelog %r",
                 self.config.topic, self.changelog.topic)
        self.ownership.partitions = self.source.partition_count
        self.changelog.start(self.source.partition_count)
        self._changelog_ready.set()
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": self.config.brokers, "enable.idempotence": True,
                                   "acks": "all", "linger.ms": 2, "message.max.bytes": self.config.max_message_bytes,
                                   "logger": logging.getLogger("otel_ml.kafka.client"), **self.config.client_options})

    def shutdown(self) -> None:
        self.changelog.shutdown()
        if self.archive is not None:
            self.archive.close()
        if self.copies is not None:
            self.copies.close()
        if self._producer is not None:
            self._producer.flush(10)

    # --- the write path --------------------------------------------------------------------------------------
    def commit(self, result: DecodeResult, apply: Apply, record: bytes | memoryview | None = None) -> None:
        """A message of the input topic, into its partition's window sets: made durable later, by a publication
        (with the offset it reached). What an OTLP receiver took goes to the input topic first (``forward``)."""
        if not result.offsets:
            self.forward(result)
            return
        _topic, partition, offset = result.offsets[0]
        with self.live.lock:
            apply(result, partition)
            state = self.live.partition(partition)
            state.offset = max(state.offset, offset)

    def forward(self, result: DecodeResult) -> None:
        """Write a request an OTLP receiver took to the input topic, as decoded records: rows with prediction ids and
        labels to the partition their ids hash to, the rest to any; returns once the brokers have them all (then
        the sender is answered). Raises StorageUnavailable when they could not take it (the sender retries)."""
        n = self.ownership.partitions
        if self._producer is None or not n:
            raise StorageUnavailable("otel-ml is not ready to take data yet (shared Kafka mode starting)", 1.0)
        errors: list[str] = []

        def delivered(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        for partition, part in split_for_partitions(result, n).items():
            while True:
                try:
                    self._producer.produce(self.config.topic, part.to_bytes(), partition=partition,
                                           headers=[(RECORD_HEADER, b"1")], on_delivery=delivered)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        left = self._producer.flush(30)
        if left or errors:
            self.health.failed("journal", RuntimeError(errors[0] if errors else f"{left} messages not delivered"))
            raise StorageUnavailable(f"the Kafka brokers did not take the request ({errors[0] if errors else 'timeout'}"
                                     "); retry later", 1.0)
        self.health.succeeded("journal")

    def resume_offset(self, topic: str, partition: int) -> int | None:
        """The offset of the state held for a partition (-1: none), where reading it resumes."""
        state = self.live.parts.get(partition)
        return -1 if state is None else state.offset

    # --- what the changelog brings -----------------------------------------------------------------------------
    def _on_publication(self, partition: int, records: list) -> None:
        """A partition's state as its owner published it: taken, for the models this replica exports, unless this
        replica owns the partition now."""
        with self.live.lock:
            if partition in self.owned:
                return
            if partition in self._full:  # revoked, not assigned again yet: held whole until the next assignment
                records_of.apply_records(self.live, partition, records)
            else:
                records_of.apply_records(self.live, partition, records, keep=self.ownership.exports,
                                         copies=self.copies)

    def _on_archive(self, partition: int, offset: int, records: list) -> None:
        """Windows a partition's publication archived: into this replica's archive, once per publication."""
        if self.archive is None:
            return
        window_ns = self.live.config.windows.window_ns
        rows = [ArchiveRow(k[1], k[2], int(k[3]), int(k[3]) + window_ns, "window", v) for k, v in records
                if k[0] == "a"]
        performance = [ArchiveRow(k[1], k[2], int(k[3]), int(k[4]), "window", v) for k, v in records if k[0] == "ga"]
        try:
            self.archive.insert_published(partition, offset, rows, performance)
            self.health.succeeded("checkpoint")
        except sqlite3.Error as e:  # a full disk: the pages lack these windows, the rest goes on
            self.health.failed("checkpoint", e)

    def _on_reference(self, key: list, value: bytes | None) -> None:
        if value is None:
            return
        data = json.loads(value)
        if key[0] == "x":  # retire: every replica releases the model's sets of its partitions, older than asked
            with self.live.lock:
                released = self.live.retire(key[1], key[2], data["drop_reference"], before_ns=data["before_ns"])
            if released:
                log.info("retire request for model %r%s: released %s", key[1],
                         f" version {key[2]!r}" if key[2] is not None else "", released)
            return
        with self.live.lock:
            if (key[1], key[2]) not in self.live.references.pinned:
                self.live.adopt_reference(ModelProfile.from_dict(data["reference"]), data["current_start_ns"])

    # --- the consumer group -----------------------------------------------------------------------------------
    def _assigned(self, committed: dict[int, int]) -> None:
        """Partitions given to this replica: first the state their previous owner published with the group's
        committed offset (the changelog read that far), then consumption resumes just past that state's offset."""
        self._changelog_ready.wait()
        deadline = time.monotonic() + 60
        while True:
            with self.live.lock:
                behind = [p for p, offset in committed.items() if offset > 0 and
                          (p not in self.live.parts or self.live.parts[p].offset < offset - 1)]
                if not behind or time.monotonic() > deadline or (self.source is not None and self.source.stopping):
                    break
            time.sleep(0.05)
        if behind:  # safe (the older state's offset is where consumption resumes), only slower
            log.warning("partitions %s: the changelog did not bring their committed state within 60 s; resuming "
                        "from the older state held", behind)
        self._take_over(sorted(committed))
        with self.live.lock:  # the seek points: the held states' offsets (a partition never written to: -1)
            offsets = {p: self.live.partition(p).offset for p in committed}
        log.info("partitions %s taken over at offsets %s (committed with their published state: %s)",
                 sorted(offsets), [offsets[p] for p in sorted(offsets)], [committed[p] for p in sorted(offsets)])
        self.on_ownership()

    def _take_over(self, assigned: list[int]) -> None:
        """Hold what the partitions now assigned need (memory scales out: a replica keeps its own partitions whole
        and, of the others, only the windows of the models it exports, on disk, in ``copies``): the whole state of
        partitions newly owned, and the others' windows of the models this replica exports now, read from the
        changelog; then let go of what is no longer needed."""
        assert self.copies is not None
        n = self.ownership.partitions
        new = [p for p in assigned if p not in self._full]
        lost = [p for p in self._full if p not in assigned]
        gained = [p for p in assigned if p not in self._exporting]
        others = [p for p in range(n) if p not in assigned]
        read = self.changelog.read_partitions(sorted({*new, *(others if gained else lost)}))
        losses = []
        with self.live.lock:
            self.owned.clear()
            self.owned.update(assigned)
            for p in new:
                self.copies.drop(p)  # its windows are held whole now, in memory
                records_of.apply_records(self.live, p, read[p])
                losses += [(p, loss) for loss in records_of.restore_labels(self.live.partition(p), read[p],
                                                                             self.state_dir)]
                self._published_files[p] = {key[1] for key, _v in read[p] if key[0] == "gs"}
            for p, state in self.live.parts.items():
                if p in assigned:  # owned now: what leaves their windows is archived by this replica
                    for wp in state.models.values():
                        wp.keep_evicted = self.archive is not None
                    if state.labels is not None:
                        state.labels.archives = self.archive is not None
                    continue
                for key in [k for k in state.models if not self.ownership.exports(k[0])]:
                    del state.models[key]
                for wp in state.models.values():  # their windows come from the changelog into the copies
                    wp.keep_evicted = False
                    wp.windows.clear()
                    wp.take_changes()
                if p in self._full:  # its pending store is the next owner's now
                    self.live.hand_over_labels(p, self.ownership.exports)
                    self._published_files.pop(p, None)
            self.copies.keep_models({key for state in self.live.parts.values() for key in state.models
                                     if self.ownership.exports(key[0])})
            through = set(gained)  # the models exported through a partition gained: every other partition's windows
            for p in others if gained else lost:
                records_of.apply_records(self.live, p, read.get(p, []), copies=self.copies,
                                         keep=self.ownership.exports if p in lost else
                                         lambda model: exporting_partition(model, n) in through)
            self._full = set(assigned)
            self._exporting = set(assigned)
        for p, loss in losses:
            log.error("partition %d's ground truth restored without %s: %s", p, loss.file, loss.what)
            self.counters.count(sc.METRIC_STATE_RECOVERED, 1, {sc.ATTR_KIND: loss.kind})

    def _revoked(self, partitions: list[int]) -> None:
        """Partitions leaving this replica: their state is published first, so the next owner resumes from it."""
        self.publish(partitions)
        with self.live.lock:  # held whole until the next assignment says which are kept (eager rebalances give
            self.owned.difference_update(partitions)  # most of them back at once)
            self._exporting.difference_update(partitions)
        self.on_ownership()

    def run_control_requests(self) -> None:
        """``otel-ml models retire`` requests left in this replica's state directory: published on the changelog,
        so that every replica releases the model from the partitions it holds (windows that data newer than the
        request brings again stay)."""
        assert self.source is not None
        for path, request in read_control_requests(str(self.state_dir)):
            n = self.source.partition_count
            value = json.dumps({"drop_reference": bool(request.get("drop_reference", False)),
                                "before_ns": max((st.lifecycle.clock_ns for st in self.live.parts.values()),
                                                 default=0) or time.time_ns()}).encode()
            try:
                self.changelog.publish([(exporting_partition(request["model"], n),
                                         ["x", request["model"], request.get("version")], value)], [], None)
            except Exception as e:
                log.error("retire request %s not published yet (%s); kept for a retry", path.name, e)
                continue
            path.unlink(missing_ok=True)

    def _polled(self, caught_up: dict[int, bool]) -> None:
        """After each poll: note which partitions are read to their end (the topic's watermark needs it), and
        publish the owned partitions' state every publication interval (at most)."""
        with self.live.lock:
            for p, done in caught_up.items():
                self.live.partition(p).caught_up = done
        if time.monotonic() - self._last_publication >= self.publish_interval:
            self.run_control_requests()
            self.publish(sorted(self.owned))

    # --- publications ----------------------------------------------------------------------------------------
    def publish(self, partitions: list[int]) -> None:
        """One changelog transaction: the partitions' changed windows, their offsets, new pinned references."""
        from confluent_kafka import TopicPartition

        assert self.source is not None
        metadata = None
        if partitions:
            try:
                metadata = self.source.group_metadata()
            except Exception as e:  # in a rebalance the consumer has no generation to commit offsets for
                since = self._no_metadata_since = self._no_metadata_since or time.monotonic()
                if time.monotonic() - since > 60:  # not a rebalance any more: say so
                    self.health.failed("checkpoint", e)
                return  # nothing taken: published once the group is stable
        self._no_metadata_since = 0.0
        self._last_publication = time.monotonic()
        topic = self.config.topic
        n = self.source.partition_count
        with self.live.lock:
            taken, labels_taken, pending, routed = {}, {}, {}, []
            records: list[tuple[int, list, bytes | None]] = []
            for p in partitions:
                state = self.live.partition(p)
                part_records, taken[p] = records_of.take_records(state)
                label_records, labels_taken[p], pending[p] = records_of.take_label_records(
                    state, self._published_files.get(p, set()))
                # the ground truth first: the closing ["p"] record of take_records ends the publication
                records += [(p, k, v) for k, v in label_records + part_records]
                routed += [(q, out.to_bytes()) for q, out in state.outbox.items()]
            outboxes = {p: self.live.partition(p).outbox for p in partitions}
            for p in partitions:
                self.live.partition(p).outbox = {}
            references = sorted(self.ownership.pinned)  # pinned here by the merges since the last publication
            self.ownership.pinned.clear()
            for key in references:
                ref = self.live.references.pinned[key]
                records.append((exporting_partition(key[0], n), ["r", *key], json.dumps({
                    "reference": ref.to_dict(), "current_start_ns": self.live.references.current_start.get(key)})
                    .encode()))
            offsets = [TopicPartition(topic, p, self.live.parts[p].offset + 1) for p in partitions
                       if self.live.parts[p].offset >= 0]
        if not records:
            return
        try:
            # the group's metadata only with offsets: before the first assignment the consumer has none to give
            self.changelog.publish(records, offsets, metadata if offsets else None, routed)
        except Exception as e:  # nothing of it is visible: published again next time
            with self.live.lock:
                for p, part in taken.items():
                    state = self.live.partition(p)
                    records_of.give_back(state, part)
                    records_of.give_back_labels(state, labels_taken[p])
                    for q, out in outboxes[p].items():  # what came since goes after what was taken
                        later = state.outbox.get(q)
                        if later is not None:
                            out.batches += later.batches
                            out.labels += later.labels
                        state.outbox[q] = out
                self.ownership.pinned.update(references)
            self.health.failed("checkpoint", e)
            return
        self.health.succeeded("checkpoint")
        return_free_memory()  # a publication serializes every changed window: give that back
        with self.live.lock:
            for p, state_pending in pending.items():
                state = self.live.partition(p)
                if state.labels is not None and state_pending:
                    state.labels.pending.committed(state_pending)
                    self._published_files[p] = {f"{s['name']}.seg" for s in state_pending["segments"]} | {
                        s["flags"] for s in state_pending["segments"] if s["flags"]}
