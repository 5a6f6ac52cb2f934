"""Where state lives in shared Kafka mode: a compacted changelog topic of every partition's windows (like a Kafka
Streams state store's changelog), read by every replica.

Each publication of an input partition's state is one Kafka transaction: the changed window and model records
(profile/partitioned.py), an offset record that closes them, and the consumer group's offsets
(``send_offsets_to_transaction``, which also fences a replica that lost its partitions without noticing). Readers
use ``isolation.level=read_committed`` and apply a partition's records only when its offset record arrives, so a
state is seen whole or not at all. Changelog partition *p* holds input partition *p*'s state; references pinned
from live traffic (``["r", model, version]``) ride along in the partition of the model's exporter.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from otel_ml.receiver.config import RECORD_HEADER, KafkaReceiverConfig, kafka_error_text
from otel_ml.state.partitions import LABEL_FILES

log = logging.getLogger(__name__)

Record = tuple[list, bytes | None]
MAX_RECORD_BYTES = 64 * 1024 * 1024
"""The changelog topic's ``max.message.bytes``: one window of one model (sketches of every feature)."""


class KafkaChangelog:
    """``start(partitions)`` creates the topic if needed, opens the transactional producer and replays the topic
    into ``on_publication(partition, records)`` / ``on_reference(key, value)`` until caught up; a thread then
    follows it. ``publish`` writes records in one transaction."""

    def __init__(self, config: KafkaReceiverConfig, transactional_id: str,
                 on_publication: Callable[[int, list[Record]], None],
                 on_reference: Callable[[list, bytes | None], None],
                 on_archive: Callable[[int, int, list[Record]], None] = lambda p, o, r: None) -> None:
        self.config = config
        self.topic = config.changelog_topic
        self.transactional_id = transactional_id
        self._on_publication = on_publication
        self._on_reference = on_reference
        self._on_archive = on_archive
        """Windows a publication archived, with the offset that closed it (every replica keeps an archive)."""
        self._producer = None
        self._tail = None
        self._admin = None
        self._positions: dict[int, int] = {}
        """Next offset to read per changelog partition (updated by the reading thread)."""
        self._partitions = 0
        self._staged: dict[int, list[tuple[list, bytes | None]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _client(self) -> dict:
        return {"bootstrap.servers": self.config.brokers, "logger": logging.getLogger("otel_ml.kafka.client"),
                **self.config.client_options}

    def start(self, partitions: int) -> None:
        """Raises RuntimeError, in one line, when the topic cannot be created or read or transactions refused."""
        from confluent_kafka import KafkaException

        try:
            self._start(partitions)
        except KafkaException as e:  # e.g. no transaction coordinator, or ACLs refusing the transactional id
            raise RuntimeError(f"changelog topic {self.topic!r} (receiver.kafka.changelog_topic): "
                               f"{kafka_error_text(e)}") from e

    def _start(self, partitions: int) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self._client())
        topics = admin.list_topics(timeout=15).topics
        if self.topic not in topics:
            new = NewTopic(self.topic, num_partitions=partitions, config={
                "cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES)})
            try:
                admin.create_topics([new])[self.topic].result(30)
                log.info("changelog topic %r created: %d partitions, compacted", self.topic, partitions)
            except Exception as e:  # another replica created it at the same moment
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise RuntimeError(f"cannot create the changelog topic {self.topic!r}: {e}") from e
            deadline = time.monotonic() + 30
            while self.topic not in topics and time.monotonic() < deadline:  # metadata follows creation shortly
                time.sleep(0.2)
                topics = admin.list_topics(timeout=15).topics
        have = len(topics[self.topic].partitions)
        if have < partitions:
            raise RuntimeError(f"changelog topic {self.topic!r} has {have} partitions, the input topic "
                               f"{self.config.topic!r} {partitions}: give it as many (kafka-topics --alter)")
        self._partitions = partitions
        self._producer = self._new_producer()
        self._tail = Consumer({**self._client(), "group.id": f"{self.config.group}-changelog-reader",
                               "enable.auto.commit": False, "isolation.level": "read_committed",
                               "fetch.max.bytes": MAX_RECORD_BYTES + (1 << 20),
                               "max.partition.fetch.bytes": MAX_RECORD_BYTES + (1 << 20)})
        self._tail.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self._admin = admin
        self._thread = threading.Thread(target=self._run, name="otel-ml-changelog", daemon=True)
        self._thread.start()
        started = time.monotonic()
        self.wait_caught_up(range(partitions), timeout=120)
        log.info("changelog %r replayed in %.2fs", self.topic, time.monotonic() - started)

    def _new_producer(self):
        from confluent_kafka import Producer

        producer = Producer({**self._client(), "transactional.id": self.transactional_id,
                             # a replica killed inside a transaction blocks readers of its partitions this long
                             "transaction.timeout.ms": 10_000, "message.max.bytes": MAX_RECORD_BYTES,
                             "compression.type": "lz4", "queue.buffering.max.kbytes": 1 << 20, "linger.ms": 5})
        producer.init_transactions(30)
        return producer

    def _run(self) -> None:
        from confluent_kafka import TopicPartition

        tail = self._tail
        assert tail is not None
        while not self._stop.is_set():
            try:
                messages = tail.consume(256, 0.05)  # waits the whole timeout for fewer: a takeover waits on it
            except Exception as e:
                log.warning("changelog read failed: %s", e)
                time.sleep(1)
                continue
            for m in messages:
                if m.error() is not None:
                    log.warning("changelog: %s", m.error())
                    continue
                try:
                    self._handle(m.partition(), m.offset(), json.loads(m.key()), m.value())
                except Exception:  # one bad record must not stop the replica from following the others
                    log.exception("changelog record %s[%d]@%d not applied", self.topic, m.partition(), m.offset())
            # past transaction markers too, which are offsets without a message; read here, in the consuming thread
            self._positions = {tp.partition: tp.offset for tp in
                               tail.position([TopicPartition(self.topic, p) for p in range(self._partitions)])}

    def _handle(self, partition: int, offset: int, key: list, value: bytes | None) -> None:
        if key[0] in ("r", "x"):  # a pinned reference; a retire request (otel-ml models retire)
            self._on_reference(key, value)
            return
        if key[0] in LABEL_FILES:  # only a takeover reads them (read_partitions)
            return
        staged = self._staged.setdefault(partition, [])
        staged.append((key, value))
        if key[0] == "p":  # a publication is complete
            self._on_publication(partition, staged)
            archived = [(k, v) for k, v in staged if k[0] in ("a", "ga") and v is not None]
            if archived:
                self._on_archive(partition, offset, archived)
            self._staged[partition] = []

    def _stable_ends(self, partitions, patience: float = 30.0) -> dict[int, int]:
        """Per changelog partition, its last stable offset: what read_committed can reach (a transaction still open
        is waited for by a timeout, not here; a consumer's watermark query answered 0 for busy partitions now and
        then). A retriable error (a topic created a moment ago has no leader yet: "Not leader for partition") is
        retried for ``patience`` seconds."""
        from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        assert self._admin is not None
        deadline = time.monotonic() + patience
        while True:
            asked = self._admin.list_offsets({TopicPartition(self.topic, p): OffsetSpec.latest() for p in partitions},
                                             isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=15)
            try:
                return {tp.partition: future.result().offset for tp, future in asked.items()}
            except KafkaException as e:
                error = e.args[0] if e.args else None
                if not (error is not None and error.retriable()) or time.monotonic() > deadline:
                    raise
                log.info("changelog offsets not available yet (%s); asking again", kafka_error_text(e))
                time.sleep(0.5)

    def wait_caught_up(self, partitions, timeout: float = 60.0) -> bool:
        """Block until everything committed to these changelog partitions when called has been applied."""
        ends = self._stable_ends(partitions)
        deadline = time.monotonic() + timeout
        while True:
            behind = [p for p, end in ends.items() if end > 0 and self._positions.get(p, -1) < end]
            if not behind:
                log.debug("changelog caught up: ends %s, positions %s", ends, self._positions)
                return True
            if time.monotonic() > deadline:
                log.warning("changelog partitions %s not caught up after %.0f s: continuing from older state "
                            "(consumption resumes from that state's offset; nothing is counted twice)", behind,
                            timeout)
                return False
            time.sleep(0.05)

    def publish(self, records: list[tuple[int, list, bytes | None]], offsets: list, group_metadata,
                routed: list[tuple[int, bytes]] = ()) -> None:  # type: ignore[assignment]
        """One transaction: ``(changelog partition, key, value)`` records, the ``routed`` decoded requests to the
        input topic's partitions (rows and labels sent to meet where their ids hash to), then the input consumer's
        ``offsets`` (TopicPartitions, next offset to read) for ``group_metadata``. Raises RuntimeError when it did
        not commit (nothing of it is visible then)."""
        from confluent_kafka import KafkaException

        producer = self._producer
        assert producer is not None
        try:
            producer.begin_transaction()
            for partition, value in routed:
                self._produce(producer, self.config.topic, value, None, partition, [(RECORD_HEADER, b"1")])
            for partition, key, value in records:
                self._produce(producer, self.topic, value, json.dumps(key, separators=(",", ":")).encode(), partition)
            if offsets:
                producer.send_offsets_to_transaction(offsets, group_metadata, 30)
            producer.commit_transaction(60)
        except KafkaException as e:
            error = e.args[0] if e.args else None
            text = kafka_error_text(e)
            try:
                if error is not None and error.txn_requires_abort():
                    producer.abort_transaction(30)
                elif error is None or error.fatal():  # fenced: a new producer (same id) fences the old one out
                    self._producer = self._new_producer()
            except KafkaException as again:
                log.warning("changelog transaction recovery failed (%s); a new producer", kafka_error_text(again))
                self._producer = self._new_producer()
            raise RuntimeError(f"changelog publication failed: {text}") from e

    @staticmethod
    def _produce(producer, topic: str, value: bytes | None, key: bytes | None, partition: int,
                 headers: list | None = None) -> None:
        while True:
            try:
                producer.produce(topic, value, key=key, partition=partition, headers=headers)
                return
            except BufferError:
                producer.poll(0.05)

    def read_partitions(self, partitions: list[int], timeout: float = 120.0) -> dict[int, list[Record]]:
        """Every committed record of these changelog partitions, from their start (the ground truth's files, which
        the tailing reader skips, included): what a replica taking input partitions over restores. One reader for
        all of them: a takeover waits for this."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        assert self._admin is not None
        out: dict[int, list[Record]] = {p: [] for p in partitions}
        if not partitions:
            return out
        ends = self._stable_ends(partitions)
        todo = {p for p, end in ends.items() if end > 0}
        if not todo:
            return out
        reader = Consumer({**self._client(), "group.id": f"{self.config.group}-changelog-restore",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "fetch.max.bytes": MAX_RECORD_BYTES + (1 << 20),
                           "max.partition.fetch.bytes": MAX_RECORD_BYTES + (1 << 20)})
        try:
            reader.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
            deadline = time.monotonic() + timeout
            while todo and time.monotonic() < deadline:
                for m in reader.consume(512, 0.05):
                    if m.error() is None:
                        out[m.partition()].append((json.loads(m.key()), m.value()))
                for tp in reader.position([TopicPartition(self.topic, p) for p in sorted(todo)]):
                    if tp.offset >= ends[tp.partition]:
                        todo.discard(tp.partition)
            if todo:
                raise RuntimeError(f"changelog partitions {sorted(todo)} not read to their end within {timeout:.0f} s")
            return out
        finally:
            reader.close()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
