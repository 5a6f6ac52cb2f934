"""Requests to a processor through its state directory: ``otel-ml models retire`` writes one, the processor
applies it within one evaluation interval (or at its next start) and deletes it once the effect is durable.

Files, not a network call: the command needs no endpoint or credentials, works whether the processor runs
or not, and a request survives a processor restart.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from otel_ml.sealed import read_sealed, write_sealed

log = logging.getLogger(__name__)

CONTROL_DIR = "control"


def write_control_request(state_dir: str | Path, request: dict) -> Path:
    """Queue ``request`` (JSON-ready, with ``"action"``) for the processor using ``state_dir``; a directory no
    processor has used is refused (a mistyped path must not queue a request nobody reads)."""
    state = Path(state_dir)
    if not ((state / "otel-ml.db").exists() or (state / "pinned").is_dir()):
        raise FileNotFoundError(f"{state} is not an otel-ml state directory (no otel-ml.db or pinned/ in it); "
                                "give the processor's state.dir")
    directory = state / CONTROL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.json"
    write_sealed(path, json.dumps(request).encode())
    return path


def read_control_requests(state_dir: str | Path) -> Iterator[tuple[Path, dict]]:
    """The queued requests, oldest first; an unreadable one is logged and moved aside, not retried forever."""
    directory = Path(state_dir) / CONTROL_DIR
    if not directory.is_dir():
        return
    for path in sorted(p for p in directory.glob("*.json") if not p.name.startswith(".")):
        try:
            request = json.loads(read_sealed(path, path.name))
            if request.get("action") != "retire" or not isinstance(request.get("model"), str):
                raise ValueError("expected {'action': 'retire', 'model': ..., 'version': ...}")
        except (OSError, ValueError) as e:
            log.error("control request %s is not usable (%s): renamed to %s.bad", path, e, path.name)
            path.replace(path.with_suffix(".bad"))
            continue
        yield path, request
