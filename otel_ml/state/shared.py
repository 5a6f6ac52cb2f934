"""Shared state: replicas in one Kafka consumer group share models (a ``StateBackend``).

Each replica applies the messages of the input partitions it is assigned to those partitions' window sets
(otel_ml/core/live.py) and publishes each partition's state, with the offset it reached, to a compacted changelog
topic (changelog.py, records in partitions.py) in one Kafka transaction every evaluation interval and whenever it
loses a partition. Every replica reads the changelog, so the replica owning a model's *exporting partition*
evaluates the merge of every partition's window set (``MergedViews``) and is the only one exporting that model's
series. A replica that takes a partition over (a rebalance, ``kill -9`` of its owner) starts from the state
published with the group's committed offset and reads on from there: nothing lost, nothing counted twice, and no
local journal (the topic is the log).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from otel_ml.core.backend import Apply
from otel_ml.core.counters import Counters
from otel_ml.core.health import StorageHealth
from otel_ml.core.live import LiveModels, Ownership, exporting_partition
from otel_ml.decode.batch import DecodeResult
from otel_ml.profile.model import ModelProfile
from otel_ml.receiver.config import KafkaReceiverConfig
from otel_ml.receiver.kafka import KafkaTraceReceiver, PartitionCallbacks
from otel_ml.state import partitions as records_of
from otel_ml.state.changelog import KafkaChangelog

log = logging.getLogger(__name__)


class SharedState:
    """Partitions, changelog, merge and takeover. ``source`` (the Kafka source of the input topic) is given by the
    wiring once made (it needs this backend's ``resume_offset`` and ``partition_callbacks``); ``on_ownership``
    runs after partitions came or went (the evaluator evaluates at once, so series move with their partition)."""

    def __init__(self, config: KafkaReceiverConfig, live: LiveModels, ownership: Ownership, counters: Counters,
                 instance_id: str, state_dir: str, publish_interval: float = 10.0) -> None:
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
        self._last_publication = time.monotonic()
        self._changelog_ready = threading.Event()
        self.changelog = KafkaChangelog(config, f"otel-ml-{config.group}-{instance_id}", self._on_publication,
                                        self._on_reference)

    @property
    def owned(self) -> set[int]:
        """The input partitions this replica consumes now."""
        return self.ownership.owned

    def partition_callbacks(self) -> PartitionCallbacks:
        return PartitionCallbacks(self._assigned, self._revoked, self._polled)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def open(self) -> None:
        """Nothing local to recover: the changelog is the state (read once the source knows the partitions)."""

    def start(self) -> None:
        assert self.source is not None
        log.info("shared Kafka mode: windows per partition of %r, state in the changelog %r",
                 self.config.topic, self.changelog.topic)
        self.ownership.partitions = self.source.partition_count
        self.changelog.start(self.source.partition_count)
        self._changelog_ready.set()

    def shutdown(self) -> None:
        self.changelog.shutdown()

    # --- the write path --------------------------------------------------------------------------------------
    def commit(self, result: DecodeResult, apply: Apply, record: bytes | None = None) -> None:
        """A message of the input topic, into its partition's window sets: made durable later, by a publication
        (with the offset it reached)."""
        if not result.offsets:
            raise ValueError("shared Kafka mode takes data from its input topic only")
        _topic, partition, offset = result.offsets[0]
        with self.live.lock:
            apply(result, partition)
            state = self.live.partition(partition)
            state.offset = max(state.offset, offset)

    def resume_offset(self, topic: str, partition: int) -> int | None:
        """The offset of the state held for a partition (-1: none), where reading it resumes."""
        state = self.live.parts.get(partition)
        return -1 if state is None else state.offset

    # --- what the changelog brings -----------------------------------------------------------------------------
    def _on_publication(self, partition: int, records: list) -> None:
        """A partition's state as its owner published it: taken unless this replica owns the partition now."""
        with self.live.lock:
            if partition in self.owned:
                return
            records_of.apply_records(self.live, partition, records)

    def _on_reference(self, key: list, value: bytes | None) -> None:
        if value is None:
            return
        data = json.loads(value)
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
                if not behind or time.monotonic() > deadline:
                    self.owned.update(committed)
                    break
            time.sleep(0.05)
        if behind:  # safe (the older state's offset is where consumption resumes), only slower
            log.warning("partitions %s: the changelog did not bring their committed state within 60 s; resuming "
                        "from the older state held", behind)
        with self.live.lock:  # the seek points: the held states' offsets (a partition never written to: -1)
            offsets = {p: self.live.partition(p).offset for p in committed}
        log.info("partitions %s taken over at offsets %s (committed with their published state: %s)",
                 sorted(offsets), [offsets[p] for p in sorted(offsets)], [committed[p] for p in sorted(offsets)])
        self.on_ownership()

    def _revoked(self, partitions: list[int]) -> None:
        """Partitions leaving this replica: their state is published first, so the next owner resumes from it."""
        self.publish(partitions)
        with self.live.lock:
            self.owned.difference_update(partitions)
        self.on_ownership()

    def _polled(self, caught_up: dict[int, bool]) -> None:
        """After each poll: note which partitions are read to their end (the topic's watermark needs it), and
        publish the owned partitions' state every publication interval (at most)."""
        with self.live.lock:
            for p, done in caught_up.items():
                self.live.partition(p).caught_up = done
        if time.monotonic() - self._last_publication >= self.publish_interval:
            self.publish(sorted(self.owned))

    # --- publications ----------------------------------------------------------------------------------------
    def publish(self, partitions: list[int]) -> None:
        """One changelog transaction: the partitions' changed windows, their offsets, new pinned references."""
        from confluent_kafka import TopicPartition

        assert self.source is not None
        self._last_publication = time.monotonic()
        topic = self.config.topic
        n = self.source.partition_count
        with self.live.lock:
            taken = {}
            records: list[tuple[int, list, bytes | None]] = []
            for p in partitions:
                state = self.live.partition(p)
                part_records, taken[p] = records_of.take_records(state)
                records += [(p, k, v) for k, v in part_records]
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
            self.changelog.publish(records, offsets, self.source.group_metadata())
        except Exception as e:  # nothing of it is visible: published again next time
            with self.live.lock:
                for p, part in taken.items():
                    records_of.give_back(self.live.partition(p), part)
                self.ownership.pinned.update(references)
            self.health.failed("checkpoint", e)
            return
        self.health.succeeded("checkpoint")
