"""Checkpoints, in process: only changed windows are written, and they are restored."""

from __future__ import annotations

import time
from pathlib import Path


def test_checkpoints_write_only_changed_windows_and_restore_them(tmp_path: Path) -> None:
    from otel_ml.config import load_config
    from otel_ml.service import ProcessorService
    from otel_ml.state.journal import Checkpoint
    from tests.support import request

    cfg = load_config(overrides={"state.dir": str(tmp_path), "windows.window_seconds": 1,
                                 "windows.horizon_seconds": 10,
                                 "export.prometheus.endpoint": "127.0.0.1:0", "ui.endpoint": "127.0.0.1:0"},
                      environ={})
    t0 = (time.time_ns() // 10**9 - 100) * 10**9

    def send(service: ProcessorService, second: int) -> None:
        req = request({"ml.model.name": "m", "ml.feature.x": float(second)})
        req.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = t0 + second * 10**9
        service.pipeline.consume(req.SerializeToString())

    service = ProcessorService(cfg)
    service.exporter.start()
    service.backend.open()
    written: list[int] = []
    real = service.backend.journal.checkpoint

    def spy(checkpoint: Checkpoint) -> None:
        written.append(len(checkpoint.window_upserts))
        return real(checkpoint)

    service.backend.journal.checkpoint = spy  # type: ignore[method-assign]
    for second in range(5):
        send(service, second)
    service.backend.checkpoint()
    send(service, 4)  # only the newest window changes
    service.backend.checkpoint()
    service.backend.checkpoint()  # nothing changed
    assert written == [5, 1, 0]
    windows = {s: w.rows for s, w in service.live.partition(0).models[("m", "")].windows.items()}
    service.backend.journal.close()
    service.exporter.shutdown()

    restarted = ProcessorService(cfg)
    restarted.exporter.start()
    restarted.backend.open()
    try:
        assert {s: w.rows for s, w in restarted.live.partition(0).models[("m", "")].windows.items()} == windows
    finally:
        restarted.backend.journal.close()
        restarted.exporter.shutdown()
