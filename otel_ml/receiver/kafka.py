"""Where spans come in from Kafka: a topic of OTLP messages, as the Collector's ``kafka`` exporter writes them
(``encoding: otlp_proto``: one ExportTraceServiceRequest per message).

Exactly once across ``kill -9``, without Kafka transactions: each message's topic, partition and offset travel in
the journal record of what the message added (``DecodeResult.offsets``), so they become durable in the same commit
as the rows. The service keeps the newest applied offset of every partition (in its checkpoint, and again from
the journal it replays); when this consumer is assigned a partition it seeks just past that offset. A message is
therefore either applied and never read again, or not applied and read again. Kafka's own committed offsets are
not used. A message that is not OTLP, is truncated or is over ``max_message_bytes`` is counted, logged and
skipped; it never stalls its partition. An overloaded or failing processor (UNAVAILABLE) is retried after its
retry delay, the consumer holding its place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from otel_ml.decode.batch import DecodeResult
from otel_ml.receiver.common import submit_until_taken
from otel_ml.receiver.config import RECORD_HEADER, KafkaReceiverConfig, kafka_error_text, process_count
from otel_ml.receiver.decode_pool import DecodePool, Job

log = logging.getLogger(__name__)


@dataclass
class PartitionCallbacks:
    """Shared mode: what the service does when this replica gains or loses partitions (in the consumer thread,
    before it reads from them / after it stopped), and after each poll (publishing its state when due)."""

    assigned: Callable[[dict[int, int]], None]
    """Called with each partition's offset committed with its last published state (-1: none)."""
    revoked: Callable[[list[int]], None]
    polled: Callable[[dict[int, bool]], None]
    """Called with, per partition held, whether everything written to it so far has been read."""


class KafkaTraceReceiver:
    """Consumes ``config.topic`` in one thread: each poll's messages are decoded by ``decode`` in
    ``config.decode_processes`` processes into records, which the thread hands in order to ``submit(result, size,
    record)`` (the pipeline: commit + apply, raising a refusal when the processor cannot take it now).
    ``resume_offset(topic, partition)`` is the newest offset already applied for a partition (None: none). A message
    left out is submitted too, as an empty result that says why (``skipped_messages``): its offset and its count
    become durable like any other's."""

    def __init__(self, config: KafkaReceiverConfig, decode: Callable[..., DecodeResult],
                 submit: Callable[[DecodeResult, int, bytes | None], object],
                 resume_offset: Callable[[str, int], int | None],
                 partitions: PartitionCallbacks | None = None) -> None:
        self.config = config
        self._partitions = partitions
        self.partition_count = 0
        self._held: list[int] = []
        """Partitions of ``config.topic`` (known after ``start``)."""
        self._decoding = DecodePool(decode, process_count(config.decode_processes))
        self._submit = submit
        self._resume_offset = resume_offset
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = None

    def start(self) -> None:
        try:
            from confluent_kafka import Consumer, KafkaException
        except ImportError as e:
            raise RuntimeError("receiver.kafka needs confluent-kafka: pip install 'otel-ml[kafka]'") from e
        try:
            self._consumer = Consumer({
                "bootstrap.servers": self.config.brokers, "group.id": self.config.group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "fetch.max.bytes": max(self.config.max_message_bytes, 1 << 20) + (1 << 20),
                "max.partition.fetch.bytes": max(self.config.max_message_bytes, 1 << 20) + (1 << 20),
                "session.timeout.ms": self.config.session_timeout_ms,
                # Members learn of a rebalance at their next heartbeat and the group waits for the last one: a
                # short interval keeps the time a partition (and its models' series) has no owner short.
                "heartbeat.interval.ms": min(500, self.config.session_timeout_ms // 3),
                "logger": logging.getLogger("otel_ml.kafka.client"),  # librdkafka's lines through our log
                **self.config.client_options})
        except KafkaException as e:  # an unknown or malformed librdkafka option
            raise RuntimeError(f"receiver.kafka: {kafka_error_text(e)}") from e
        try:
            # A mistyped address fails the start in one line instead of a serving process that never reads.
            metadata = self._consumer.list_topics(self.config.topic, timeout=15)
        except KafkaException as e:
            self._consumer.close()
            raise OSError(f"cannot reach the Kafka brokers {self.config.brokers} (receiver.kafka.brokers): "
                          f"{kafka_error_text(e)}") from e
        self.partition_count = self._count_partitions(metadata)
        waited = 0.0
        while self._partitions is not None and not self.partition_count:
            # Shared mode: the topic's partition count fixes the changelog's and each model's exporting partition.
            if waited % 30 == 0:
                log.warning("Kafka topic %r does not exist yet; shared mode waits for it (create it with as many "
                            "partitions as replicas you may run, e.g. kafka-topics.sh --create --partitions 12)",
                            self.config.topic)
            time.sleep(2)
            waited += 2
            self.partition_count = self._count_partitions(self._consumer.list_topics(self.config.topic, timeout=15))
        self._decoding.start()  # before joining the group: a rebalance must not wait for interpreters to start
        topics = [self.config.topic, *([self.config.logs_topic] if self.config.logs_topic else [])]
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread = threading.Thread(target=self._run, name="otel-ml-kafka", daemon=True)
        self._thread.start()
        log.info("Kafka receiver: %s on %s, group %r", " and ".join(map(repr, topics)), self.config.brokers,
                 self.config.group)

    def _count_partitions(self, metadata) -> int:
        topic = metadata.topics.get(self.config.topic)
        return len(topic.partitions) if topic is not None and topic.error is None else 0

    def _on_assign(self, consumer, partitions) -> None:
        if self._partitions is not None:  # take the partitions' state over first: its offsets are the seek points
            # Committed with the state in one transaction; a stable read waits for that transaction's markers.
            committed = consumer.committed(partitions, timeout=60)
            self._partitions.assigned({tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in committed})
            self._held = sorted({*self._held, *(tp.partition for tp in partitions)})
        for tp in partitions:
            done = self._resume_offset(tp.topic, tp.partition)
            if done is not None:
                tp.offset = done + 1  # just past what is applied (journaled) already
        consumer.assign(partitions)
        mine = {tp.partition for tp in partitions if tp.topic == self.config.topic}
        if self._partitions is None and self.partition_count and len(mine) < self.partition_count:
            log.warning("group %r has other members: this processor got %d of topic %r's %d partitions and exports "
                        "partial numbers for its models, as do the others. Replicas sharing a group need "
                        "receiver.kafka.changelog_topic (--kafka-changelog-topic, docs/scaling.md)",
                        self.config.group, len(mine), self.config.topic, self.partition_count)
        log.info("Kafka partitions assigned: %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}"
                                                             for tp in partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        if self._partitions is not None and partitions:
            self._partitions.revoked([tp.partition for tp in partitions])
            self._held = [p for p in self._held if p not in {tp.partition for tp in partitions}]
        log.info("Kafka partitions revoked: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _caught_up(self, consumer) -> dict[int, bool]:
        """Per partition held: read up to its end (the position, past any transaction marker, at the high
        watermark of the last fetch; no broker round trip)."""
        from confluent_kafka import TopicPartition

        if not self._held:
            return {}
        positions = consumer.position([TopicPartition(self.config.topic, p) for p in self._held])
        out = {}
        for tp in positions:
            high = consumer.get_watermark_offsets(tp, cached=True)[1]
            # no message read yet: the position is unset; where reading started is
            applied = self._resume_offset(tp.topic, tp.partition)
            done = tp.offset if tp.offset >= 0 else (-1 if applied is None else applied) + 1
            out[tp.partition] = 0 <= high <= done
        return out

    def group_metadata(self):
        """The consumer's group generation, for offsets committed in a changelog transaction."""
        assert self._consumer is not None
        return self._consumer.consumer_group_metadata()

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stop.is_set():
            try:
                messages = consumer.consume(256, 0.5)
            except Exception as e:  # a broker gone: librdkafka reconnects by itself
                log.warning("Kafka consume failed: %s", e)
                time.sleep(1)
                continue
            for m in messages:
                if m.error() is not None:
                    log.warning("Kafka: %s", m.error())
            self._handle([m for m in messages if m.error() is None])
            if self._partitions is not None:
                self._partitions.polled(self._caught_up(consumer))

    def _handle(self, messages: list) -> None:
        """Decode a poll's messages (in the processes) and submit them in order; a message left out is
        submitted as an empty result that says why. Returns early only when stopping (the rest is read again)."""
        jobs: list[Job] = []
        for m in messages:
            value = m.value() or b""
            if len(value) <= self.config.max_message_bytes and (RECORD_HEADER, b"1") not in (m.headers() or ()):
                jobs.append((value, "logs" if m.topic() == self.config.logs_topic else "traces",
                             [(m.topic(), m.partition(), m.offset())]))
        decoded = self._decoding.decode(jobs)
        for m in messages:
            value = m.value() or b""
            where = f"{m.topic()}[{m.partition()}]@{m.offset()}"
            result: DecodeResult | None = None
            record: bytes | None = None
            if len(value) > self.config.max_message_bytes:
                reason, detail = "too_large", f"{len(value)} bytes"
            elif (RECORD_HEADER, b"1") in (m.headers() or ()):  # decoded already: an otel-ml replica wrote it
                try:
                    result = DecodeResult.from_bytes(value)
                    result.offsets = [(m.topic(), m.partition(), m.offset())]
                except ValueError as e:
                    reason, detail = "not_otlp", str(e)
            else:
                out = next(decoded)
                if isinstance(out, ValueError):
                    reason, detail = "not_otlp", str(out)
                else:
                    result, record = DecodeResult.from_bytes(out), out
            if result is None:
                log.warning("Kafka message %s skipped (%s): %s", where, reason, detail[:200])
                result = DecodeResult(batches=[])
                result.skipped_messages[reason] += 1
                result.offsets = [(m.topic(), m.partition(), m.offset())]
            if not submit_until_taken(self._submit, self._stop, result, len(value), record, f"Kafka message {where}"):
                return

    @property
    def stopping(self) -> bool:
        """Shutdown has begun: a rebalance callback waiting for something cuts its wait short."""
        return self._stop.is_set()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._decoding.shutdown()
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group: on_revoke publishes this replica's state first
            except Exception as e:  # stopping anyway (e.g. a start that failed half-way): what was published stays
                log.warning("Kafka consumer did not close cleanly: %s", kafka_error_text(e))
            self._consumer = None
