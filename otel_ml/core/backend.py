"""What a state backend does for the pipeline: make a request durable (or hand it on) and apply it, recover at
start, write periodically. Two implementations, chosen once at wiring (otel_ml/state/): ``LocalState`` (a journal,
checkpoints and an archive on disk) and ``SharedState`` (Kafka partitions and a changelog topic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from otel_ml.core.health import StorageHealth
from otel_ml.decode.batch import DecodeResult

Apply = Callable[[DecodeResult, int], None]
"""Apply a committed request to the live models, in partition ``int`` (the pipeline's ``apply``)."""


class StateBackend(Protocol):
    health: StorageHealth

    def open(self) -> None:
        """Recover what was kept into the live models; before any source starts."""
        ...

    def commit(self, result: DecodeResult, apply: Apply, record: bytes | memoryview | None = None) -> None:
        """Make ``result`` durable, then ``apply`` it (or hand it to where it is applied: shared mode sends what an
        OTLP receiver took to the input topic). Raises StorageUnavailable (nothing of it was kept: the sender
        retries) or what ``apply`` raised. ``record`` is ``result.to_bytes()`` when the caller has it already."""
        ...

    def resume_offset(self, topic: str, partition: int) -> int | None:
        """The newest offset of a Kafka partition already applied (a source resumes just past it); None: none."""
        ...

    def start(self) -> None:
        """Begin periodic writing (checkpoints, publications)."""
        ...

    def shutdown(self) -> None:
        """A last write, then stop."""
        ...
