"""Settings of the receivers (YAML section ``receiver``): endpoints, worker processes, TLS, authentication."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from otel_ml.errors import ConfigError


@dataclass(frozen=True)
class OtlpGrpcReceiverConfig:
    endpoint: str = "127.0.0.1:4317"
    max_message_bytes: int = 64 * 1024 * 1024
    """Requests over this size are refused with RESOURCE_EXHAUSTED (the OTLP answer for too large)."""
    max_workers: int = 16
    """Threads taking requests; admission beyond ``limits.max_inflight_*`` is refused, not queued."""
    max_connection_idle_seconds: float = 60.0
    """A connection with no RPC in progress for this long is closed (GOAWAY): idle clients hold no slot."""
    max_connection_age_seconds: float = 30.0
    """Every connection is asked to go away (GOAWAY) after this long, and closed ``max_connection_age_grace``
    later: a stream that never finishes its message cannot hold a connection open (gRPC clients reconnect at once;
    like the Collector's ``keepalive.server_parameters``, which load balancers rely on too)."""
    max_connection_age_grace_seconds: float = 15.0
    """How long RPCs in progress at ``max_connection_age`` have to finish."""
    worker_processes: int = -1
    """Processes that receive and decode OTLP/gRPC requests beside the main process, which applies them (see
    receiver/workers.py): ingest then uses more than one core. -1: one per CPU beyond the first, at most 4
    (0 on a 1-CPU machine); 0: receive and decode in the main process."""

    def worker_count(self) -> int:
        return process_count(self.worker_processes)


def process_count(setting: int) -> int:
    """Worker processes for a ``*_processes`` setting: -1 is one per CPU beyond the first, at most 4."""
    return setting if setting >= 0 else max(0, min(4, available_cpus() - 1))


def available_cpus() -> int:
    """CPUs this process may use: its affinity, and a container's CPU quota (cgroup v2 ``cpu.max``), which
    affinity does not show (a pod limited to 1 CPU on a 16-CPU node sees 16 in its affinity)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))  # ceil
    except (OSError, ValueError):
        pass
    return cpus


@dataclass(frozen=True)
class OtlpHttpReceiverConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:4318"
    """Serves POST /v1/traces (binary protobuf or JSON, optionally gzip)."""
    max_message_bytes: int = 20 * 1024 * 1024
    """A request body (and its decompressed size) over this is refused with 413: the Collector's confighttp
    default. Bodies count against ``limits.max_inflight_bytes`` from their first byte."""


@dataclass(frozen=True)
class TlsConfig:
    """TLS on both receivers when cert_file and key_file are set; mutual TLS when client_ca_file is set too."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    """CA that client certificates must chain to; set: clients without such a certificate are refused."""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True)
class AuthConfig:
    """Bearer-token authentication on both receivers (``authorization: Bearer <token>``)."""

    bearer_token_env: str | None = None
    """Name of the environment variable holding the token (keeps the secret out of the config file)."""
    bearer_token_file: str | None = None

    def token(self) -> str | None:
        if self.bearer_token_env:
            value = os.environ.get(self.bearer_token_env)
            if not value:
                raise ConfigError(f"receiver.auth: environment variable {self.bearer_token_env} is empty")
            return value
        if self.bearer_token_file:
            return Path(self.bearer_token_file).read_text().strip()
        return None


@dataclass(frozen=True)
class KafkaReceiverConfig:
    """YAML ``receiver.kafka``."""

    brokers: str = ""
    """Bootstrap servers, ``host:port[,host:port]``; empty: no Kafka receiver."""
    topic: str = "otel-ml-spans"
    logs_topic: str = ""
    """Also consume this topic of ExportLogsServiceRequests (the kafka exporter's ``logs`` with ``otlp_proto``):
    ground truth as log records. Empty: none. Not with ``changelog_topic``."""
    group: str = "otel-ml"
    """Consumer group: replicas in one group share the topic's partitions."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Larger messages are skipped (``too_large``)."""
    client_options: dict[str, str] = field(default_factory=dict)
    """Further librdkafka settings (TLS, SASL for managed Kafka: ``security.protocol``, ``sasl.mechanism``, ...)."""
    changelog_topic: str = ""
    """Shared mode when set: replicas in ``group`` share models, each keeping the windows of its partitions and
    publishing them to this compacted topic (created if absent), which is also the state: no local journal.
    Empty: this processor owns whatever it consumes, its state in ``state.dir`` (docs/scaling.md)."""
    session_timeout_ms: int = 10_000
    """How soon a replica that died without leaving loses its partitions to the others."""
    decode_processes: int = -1
    """Processes that decode the messages each poll returns while the consumer thread applies them (see
    receiver/decode_pool.py). -1: one per CPU beyond the first, at most 4; 0: decode in the consumer thread."""

    @property
    def enabled(self) -> bool:
        return bool(self.brokers)


def kafka_error_text(e: BaseException) -> str:
    """A KafkaException's one-line reason."""
    return e.args[0].str() if e.args and hasattr(e.args[0], "str") else str(e)


KINESIS_COMPRESSIONS = ("none", "gzip", "zlib", "flate")
"""The awskinesis exporter's ``encoding.compression`` values (``noop`` is its alias of none)."""


@dataclass(frozen=True)
class KinesisReceiverConfig:
    """YAML ``receiver.kinesis``: a Kinesis data stream of OTLP records, as the Collector's ``awskinesis`` exporter
    writes them. One processor reads every shard of its stream (docs/scaling.md says why, and how to scale)."""

    stream: str = ""
    """Stream name; empty: no Kinesis receiver."""
    logs_stream: str = ""
    """Also read this stream of OTLP log records (the exporter's ``logs`` in another pipeline): ground truth."""
    region: str = ""
    """AWS region; empty: the AWS way (``AWS_REGION``/``AWS_DEFAULT_REGION``, the profile's region)."""
    endpoint: str = ""
    """Endpoint URL (a VPC endpoint, or a Kinesis-compatible server in tests); empty: the region's."""
    compression: str = "none"
    """What the exporter's ``encoding.compression`` is: none, gzip, zlib or flate (raw deflate has no header to
    recognise it by, so it is declared; gzip and zlib records are also recognised by their header)."""
    max_message_bytes: int = 64 * 1024 * 1024
    """A record decompressing to more is skipped (``too_large``)."""
    records_per_call: int = 10_000
    """GetRecords' ``Limit`` (Kinesis' maximum)."""
    poll_interval_seconds: float = 0.2
    """Least time between two reads of one shard: Kinesis allows 5 per second per shard."""
    shard_sync_interval_seconds: float = 10.0
    """How often the shard list is read again (after a split or merge, children are read once their parents
    are finished)."""
    decode_processes: int = -1
    """Processes that decode the records of each read (as for Kafka). -1: one per CPU beyond the first, at most
    4; 0: decode in the reading thread."""

    @property
    def enabled(self) -> bool:
        return bool(self.stream)


RECORD_HEADER = "otel-ml-record"
"""A message that holds a decoded request (``DecodeResult.to_bytes``) rather than an OTLP export: what a replica in
shared mode writes to the input topic for what its OTLP receivers took, and the rows and labels it routes to the
partition their prediction ids hash to."""


@dataclass(frozen=True)
class ReceiverConfig:
    otlp_grpc: OtlpGrpcReceiverConfig = field(default_factory=OtlpGrpcReceiverConfig)
    otlp_http: OtlpHttpReceiverConfig = field(default_factory=OtlpHttpReceiverConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    kafka: KafkaReceiverConfig = field(default_factory=KafkaReceiverConfig)
    """A Kafka topic of OTLP messages as another way in (off unless ``brokers`` is set)."""
    kinesis: KinesisReceiverConfig = field(default_factory=KinesisReceiverConfig)
    """A Kinesis data stream of OTLP records as another way in (off unless ``stream`` is set)."""
