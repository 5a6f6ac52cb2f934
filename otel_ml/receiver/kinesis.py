"""Where spans come in from Kinesis: a data stream of OTLP records, as the Collector's ``awskinesis`` exporter
writes them.

What that exporter writes (exporter/awskinesisexporter, read at v0.145.0): one record per resource of each export
(an ExportTraceServiceRequest holding one ResourceSpans, or a logs export holding one ResourceLogs), encoded as
``otlp``/``otlp_proto`` (protobuf) or ``otlp_json``, compressed as its ``encoding.compression`` says (none, gzip,
zlib or flate, each Go's BestSpeed), under a random partition key (so a model's records are spread over every
shard). No KPL aggregation. This receiver reads all of that: protobuf or JSON (told apart by the first byte),
decompressed as ``receiver.kinesis.compression`` declares (gzip and zlib records are also recognised by their
header; raw flate has none). Zipkin and Jaeger encodings are not OTLP and are skipped as ``not_otlp``.

Exactly once across ``kill -9``, as for Kafka: each record's stream, shard and sequence number travel in the
journal record of what it added (``DecodeResult.offsets``: topic ``kinesis/<stream>``, partition the shard's
number, offset the sequence number), so they become durable in the same commit as the rows; a shard is read
again just after the newest sequence number applied (``AFTER_SEQUENCE_NUMBER``), from ``TRIM_HORIZON`` when none.
Resharding: a shard that was split or merged is closed; when its last record is read an empty record carrying the
shard's ending sequence number is committed, and a child shard is read only once every parent it has is finished
(or gone past retention), so a partition key's records are applied in order through a split, and a restart knows
which parents are done. Kinesis' own checkpointing (the KCL's DynamoDB leases) is not used.

Throttling (``ProvisionedThroughputExceededException``, ``LimitExceededException``) is backed off per shard
(0.5 s doubling to 10 s) and counted; every other failure of a call is logged and retried the same way. A record
that is not OTLP, or decompresses past ``max_message_bytes``, is counted, logged and skipped; it never stalls its
shard. An overloaded or failing processor is retried after its retry delay, the shard holding its place.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml import semconv as sc
from otel_ml.decode.batch import DecodeResult
from otel_ml.receiver.common import decompress, submit_until_taken
from otel_ml.receiver.config import KinesisReceiverConfig, process_count
from otel_ml.receiver.decode_pool import DecodePool, Job
from otel_ml.receiver.ingest import LOGS, TRACES

log = logging.getLogger(__name__)

THROTTLED = ("ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException")
BACKOFF_SECONDS = (0.5, 10.0)
"""The first and the longest wait after a throttled or failed call to a shard."""
_SHARD_ID = re.compile(r"^shardId-(\d{1,18})$")


class TooLarge(ValueError):
    """A record decompresses to more than ``max_message_bytes``."""


KPL_MAGIC = b"\xf3\x89\x9a\xc2"


def kpl_user_records(data: bytes) -> list[bytes]:
    """The user records' data of a record in the KPL's aggregation format (magic, AggregatedRecord protobuf: field
    3 repeated Record, whose field 3 is the data; then the protobuf's MD5). ValueError when it is not one.

    >>> import hashlib
    >>> body = bytes([0x1a, 4, 0x1a, 2]) + b"hi" + bytes([0x1a, 5, 0x08, 0, 0x1a, 1]) + b"!"
    >>> kpl_user_records(KPL_MAGIC + body + hashlib.md5(body).digest())
    [b'hi', b'!']
    """
    body, digest = data[len(KPL_MAGIC):-16], data[-16:]
    if not data.startswith(KPL_MAGIC) or len(data) < len(KPL_MAGIC) + 16 or hashlib.md5(body).digest() != digest:
        raise ValueError("not a KPL aggregated record (magic number or MD5 wrong)")
    out = []
    for field, value in _fields(body):
        if field == 3:
            out += [v for f, v in _fields(value) if f == 3]
    return out


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """(field number, bytes) of every length-delimited field of a protobuf message; other wire types skipped."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > len(data):
                raise ValueError("a KPL aggregated record is cut short")
            out.append((key >> 3, data[pos:pos + n]))
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"a KPL aggregated record holds wire type {wire}")
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("a KPL aggregated record is cut short")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return value, pos


def decode_record(data: bytes, signal: str, decode: Callable[..., DecodeResult], compression: str,
                  limit: int) -> DecodeResult:
    """One Kinesis record → what it adds; ValueError (TooLarge) says why it is not taken. Module-level, so a
    ``functools.partial`` of it pickles to the decoding processes. A KPL aggregated record: its user records'
    results in one (a bad user record counted as skipped).

    >>> import gzip
    >>> from otel_ml.decode import DecodeLimits
    >>> from otel_ml.receiver.ingest import decode_for_ingest
    >>> decode = functools.partial(decode_for_ingest, limits=DecodeLimits(), hash_key=None, hash_features=[])
    >>> decode_record(gzip.compress(b""), "traces", decode, "none", 100).spans_received
    0
    >>> decode_record(b'{"resourceSpans": []}', "traces", decode, "none", 100).spans_received
    0
    >>> decode_record(gzip.compress(bytes(200)), "traces", decode, "gzip", 100)
    Traceback (most recent call last):
    ...
    otel_ml.receiver.kinesis.TooLarge: decompressed request is over the limit of 100 bytes
    """
    if data.startswith(KPL_MAGIC):
        combined = DecodeResult(batches=[])
        for user_record in kpl_user_records(data):
            try:
                one = _decode_one(user_record, signal, decode, compression, limit)
            except ValueError as e:
                reason = "too_large" if isinstance(e, TooLarge) else "not_otlp"
                combined.skipped_messages[sc.KINESIS_SKIP_PREFIX + reason] += 1
                log.warning("a user record of a KPL aggregated Kinesis record skipped (%s): %s", reason, str(e)[:200])
                continue
            _absorb(combined, one)
        return combined
    return _decode_one(data, signal, decode, compression, limit)


def _absorb(into: DecodeResult, one: DecodeResult) -> None:
    """Add one user record's result to its aggregate's."""
    into.batches += one.batches
    into.labels += one.labels
    into.spans_received += one.spans_received
    into.spans_accepted += one.spans_accepted
    into.spans_ignored += one.spans_ignored
    into.rejected.update(one.rejected)
    for reason, example in one.examples.items():
        into.examples.setdefault(reason, example)
    into.received_ns = max(into.received_ns, one.received_ns)


def _decode_one(data: bytes, signal: str, decode: Callable[..., DecodeResult], compression: str,
                limit: int) -> DecodeResult:
    if data[:2] == b"\x1f\x8b":
        compression = "gzip"
    elif compression != "flate" and _zlib_header(data):
        compression = "zlib"
    if compression not in ("none", "noop"):
        try:
            data = decompress(data, limit, compression)
        except ValueError as e:
            if "over the limit" in str(e):
                raise TooLarge(str(e)) from None
            raise
    elif len(data) > limit:
        raise TooLarge(f"{len(data)} bytes, over the limit of {limit}")
    if data.lstrip()[:1] == b"{":  # the exporter's otlp_json
        try:
            message = json_format.Parse(data.decode("utf-8"), ExportLogsServiceRequest() if signal == LOGS
                                        else ExportTraceServiceRequest(), ignore_unknown_fields=True)
        except json_format.ParseError as e:
            raise ValueError(f"not an OTLP JSON export: {e}") from None
        return decode(message.SerializeToString(), signal=signal)
    return decode(data, signal=signal)


def _zlib_header(data: bytes) -> bool:
    """A zlib stream's first two bytes (RFC 1950: deflate, window <= 32 KiB, check bits): never how an OTLP
    protobuf (0x0a) or JSON (``{``) export begins."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0


@dataclass
class Shard:
    """What the reader knows of one shard."""

    stream: str
    signal: str
    id: str
    number: int
    parents: tuple[str, ...]
    ending: int | None
    """The ending sequence number of a closed shard (split or merged); None while it is open."""
    iterator: str | None = None
    next_read: float = 0.0
    backoff: float = 0.0

    @property
    def topic(self) -> str:
        return f"kinesis/{self.stream}"

    @property
    def where(self) -> str:
        return f"{self.stream}/{self.id}"


def shard_number(shard_id: str) -> int:
    """The number in a shard id (``shardId-000000000007`` → 7): the partition of its records' offsets.

    >>> shard_number("shardId-000000000012")
    12
    """
    m = _SHARD_ID.match(shard_id)
    if m is None:
        raise ValueError(f"unexpected Kinesis shard id {shard_id!r} (expected shardId-<number>)")
    return int(m.group(1))


class KinesisTraceReceiver:
    """Reads every shard of ``config.stream`` (and ``config.logs_stream``) in one thread: each GetRecords call's
    records are decoded in ``config.decode_processes`` processes and handed in order to ``submit(result, size,
    record)`` (the pipeline: commit + apply, raising a refusal when the processor cannot take it now).
    ``resume_offset(topic, partition)`` is the newest sequence number already applied for a shard (None: none);
    ``count(metric, n, attributes)`` counts throttled calls (the service's counters)."""

    def __init__(self, config: KinesisReceiverConfig, decode: Callable[..., DecodeResult],
                 submit: Callable[[DecodeResult, int, bytes | None], object],
                 resume_offset: Callable[[str, int], int | None],
                 count: Callable[[str, float, dict[str, str]], None]) -> None:
        self.config = config
        self._decoding = DecodePool(functools.partial(decode_record, decode=decode, compression=config.compression,
                                                      limit=config.max_message_bytes),
                                    process_count(config.decode_processes))
        self._submit = submit
        self._resume_offset = resume_offset
        self._count = count
        self._streams = {config.stream: TRACES, **({config.logs_stream: LOGS} if config.logs_stream else {})}
        self.shards: dict[tuple[str, str], Shard] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self._get_records: Callable[..., dict] | None = None
        self._next_sync = 0.0
        self._last_error = ""
        """The error code of the last failed call ("" after a success)."""
        self.missing: set[str] = set()
        """Streams the last shard sync found gone (ResourceNotFoundException): not ready while any is."""

    def start(self) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise RuntimeError("receiver.kinesis needs boto3: pip install 'otel-ml[kinesis]'") from e
        import botocore.exceptions

        # No retries inside botocore: this reader backs off per shard and counts what was throttled.
        session = boto3.Session(region_name=self.config.region or None)
        self._client = session.client("kinesis", endpoint_url=self.config.endpoint or None,
                                      config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                    connect_timeout=10, read_timeout=30))
        self._get_records = self._client.get_records
        where = self.config.endpoint or f"region {self._client.meta.region_name}"
        for stream in self._streams:
            try:
                self._client.describe_stream_summary(StreamName=stream)
            except botocore.exceptions.NoCredentialsError as e:
                raise OSError(f"no AWS credentials for the Kinesis stream {stream!r} (environment, profile or "
                              f"instance role): {e}") from e
            except botocore.exceptions.ClientError as e:
                if _code(e) != "ResourceNotFoundException":
                    raise OSError(f"cannot read the Kinesis stream {stream!r} at {where}: {e}") from e
                log.warning("Kinesis stream %r does not exist yet at %s; reading it once it does", stream, where)
            except botocore.exceptions.BotoCoreError as e:  # unreachable endpoint, no region, ...
                raise OSError(f"cannot reach Kinesis at {where} (receiver.kinesis): {e}") from e
        for reason in ("not_otlp", "too_large"):
            self._count(sc.METRIC_KINESIS_SKIPPED, 0, {sc.ATTR_REASON: reason})
        for operation in ("GetRecords", "GetShardIterator", "ListShards"):
            self._count(sc.METRIC_KINESIS_THROTTLED, 0, {"operation": operation})
        self._decoding.start()
        self._thread = threading.Thread(target=self._run, name="otel-ml-kinesis", daemon=True)
        self._thread.start()
        log.info("Kinesis receiver: %s at %s", " and ".join(map(repr, self._streams)), where)

    # --- shards --------------------------------------------------------------------------------------------
    def _sync_shards(self) -> None:
        """Read every stream's shard list; keep what is known of shards seen before (their iterators)."""
        for stream, signal in self._streams.items():
            listed, token = [], None
            while True:
                kwargs = {"NextToken": token} if token else {"StreamName": stream}
                page = self._call("ListShards", None, **kwargs)
                if page is None:
                    if self._last_error == "ResourceNotFoundException" and stream not in self.missing:
                        self.missing.add(stream)
                        log.warning("Kinesis stream %r is gone (deleted, or not created yet): not ready until it "
                                    "is there again", stream)
                    return  # throttled or failed: keep the shards known, try again at the next sync
                if stream in self.missing:
                    self.missing.discard(stream)
                    log.info("Kinesis stream %r is there again", stream)
                listed += page.get("Shards", [])
                token = page.get("NextToken")
                if not token:
                    break
            for s in listed:
                ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                key = (stream, s["ShardId"])
                known = self.shards.get(key)
                if known is not None:
                    known.ending = int(ending) if ending is not None else None
                    continue
                parents = tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)
                self.shards[key] = Shard(stream, signal, s["ShardId"], shard_number(s["ShardId"]), parents,
                                         int(ending) if ending is not None else None)
        self._next_sync = time.monotonic() + self.config.shard_sync_interval_seconds

    def readiness(self) -> tuple[bool, str]:
        """Not ready while a stream it reads is gone."""
        if self.missing:
            return False, f"Kinesis stream(s) {', '.join(sorted(map(repr, self.missing)))} not found"
        return True, "ready"

    def finished(self, shard: Shard) -> bool:
        """A closed shard whose every record is applied (its ending sequence number committed)."""
        done = self._resume_offset(shard.topic, shard.number)
        return shard.ending is not None and done is not None and done >= shard.ending

    def readable(self, shard: Shard) -> bool:
        """Not finished, and every parent finished or gone (past retention, no longer listed)."""
        if self.finished(shard):
            return False
        for parent in shard.parents:
            known = self.shards.get((shard.stream, parent))
            if known is not None and not self.finished(known):
                return False
        return True

    # --- reading -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() >= self._next_sync:
                    self._sync_shards()
                now = time.monotonic()
                due = [s for s in self.shards.values() if self.readable(s)]
                for shard in sorted(due, key=lambda s: s.next_read):
                    if self._stop.is_set():
                        return
                    if shard.next_read <= time.monotonic():
                        self._read(shard)
                wake = min([s.next_read for s in due] + [self._next_sync])
                self._stop.wait(max(0.01, min(wake - now, self.config.poll_interval_seconds)))
            except Exception:  # never let the reading thread die: log, pause, go on
                log.exception("Kinesis reader failed; continuing in 1 s")
                self._stop.wait(1.0)

    def _read(self, shard: Shard) -> None:
        if shard.iterator is None:
            done = self._resume_offset(shard.topic, shard.number)
            start = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": str(done)}
                     if done is not None else {"ShardIteratorType": "TRIM_HORIZON"})
            got = self._call("GetShardIterator", shard, StreamName=shard.stream, ShardId=shard.id, **start)
            if got is None:
                return
            shard.iterator = got["ShardIterator"]
        page = self._call("GetRecords", shard, ShardIterator=shard.iterator, Limit=self.config.records_per_call)
        if page is None:
            return
        shard.next_read = time.monotonic() + self.config.poll_interval_seconds
        records = page.get("Records", [])
        if not self._handle(shard, records):
            shard.iterator = None  # stopping: the rest is read again after the newest applied
            return
        shard.iterator = page.get("NextShardIterator")
        if shard.iterator is None:  # a closed shard read to its end: commit that it is finished
            if shard.ending is None:
                self._sync_shards()  # split after the last sync: its ending is listed now
            if shard.ending is not None:
                marker = DecodeResult(batches=[])
                marker.offsets = [(shard.topic, shard.number, shard.ending)]
                if submit_until_taken(self._submit, self._stop, marker, 0, None, f"Kinesis shard {shard.where} end"):
                    log.info("Kinesis shard %s finished (closed by a split or merge); its children are read next",
                             shard.where)

    def _handle(self, shard: Shard, records: list[dict]) -> bool:
        """Decode one call's records (in the processes) and submit them in order; a record left out is submitted
        as an empty result that says why. False: stopping before all were taken."""
        jobs: list[Job] = [(r["Data"], shard.signal, [(shard.topic, shard.number, int(r["SequenceNumber"]))])
                           for r in records]
        decoded = self._decoding.decode(jobs)
        for r in records:
            sequence = int(r["SequenceNumber"])
            out = next(decoded)
            record: bytes | None = None
            if isinstance(out, ValueError):
                reason = "too_large" if isinstance(out, TooLarge) else "not_otlp"
                log.warning("Kinesis record %s@%s skipped (%s): %s", shard.where, sequence, reason, str(out)[:200])
                result = DecodeResult(batches=[])
                result.skipped_messages[sc.KINESIS_SKIP_PREFIX + reason] += 1
                result.offsets = [(shard.topic, shard.number, sequence)]
            else:
                result, record = DecodeResult.from_bytes(out), out
            if not submit_until_taken(self._submit, self._stop, result, len(r["Data"]), record,
                                      f"Kinesis record {shard.where}@{sequence}"):
                return False
        return True

    def _call(self, operation: str, shard: Shard | None, **kwargs) -> dict | None:
        """One Kinesis call; None after a refusal (throttled: counted) or failure, the shard backing off."""
        import botocore.exceptions

        method = {"ListShards": self._client.list_shards, "GetShardIterator": self._client.get_shard_iterator,
                  "GetRecords": self._get_records}[operation]
        try:
            out = method(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            code = self._last_error = _code(e) or type(e).__name__
            if code in THROTTLED:
                self._count(sc.METRIC_KINESIS_THROTTLED, 1, {"operation": operation})
            elif code == "ExpiredIteratorException" and shard is not None:
                shard.iterator = None  # read again after the newest applied
                return None
            else:  # a stream not created yet was said at start; the rest each time
                # A stream gone is said once by the shard sync (and readiness), not at every read of every shard.
                log.log(logging.DEBUG if code == "ResourceNotFoundException" else logging.WARNING,
                        "Kinesis %s%s failed: %s", operation, f" of {shard.where}" if shard else "", e)
            self._back_off(shard)
            return None
        if shard is not None:
            shard.backoff = 0.0
        self._last_error = ""
        return out

    def _back_off(self, shard: Shard | None) -> None:
        first, longest = BACKOFF_SECONDS
        if shard is None:  # the shard list: again a little later
            self._next_sync = time.monotonic() + min(4 * first, self.config.shard_sync_interval_seconds)
            return
        shard.backoff = min(longest, shard.backoff * 2 if shard.backoff else first)
        shard.next_read = time.monotonic() + shard.backoff

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._decoding.shutdown()


def _code(e: BaseException) -> str:
    return getattr(e, "response", {}).get("Error", {}).get("Code", "") if hasattr(e, "response") else ""
