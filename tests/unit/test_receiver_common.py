"""What receivers answer, decided once (receiver/common.py): refusals per exception, admission control."""

from __future__ import annotations

import threading
import zlib

import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2

from otel_ml.receiver.common import AdmissionControl, Overloaded, Refusal, Refused, StorageUnavailable, refusal_of


@pytest.mark.parametrize("error, grpc_code, http_status, retry", [
    (ValueError("truncated"), 3, 400, None),
    (zlib.error("bad gzip"), 3, 400, None),
    (json_format.ParseError("bad json"), 3, 400, None),
    (EOFError(), 3, 400, None),
    (Overloaded("busy", 2.0), 14, 503, 2.0),
    (StorageUnavailable("disk full", 1.0), 14, 503, 1.0),
    (TimeoutError("slow disk"), 14, 503, None),
    (OSError("I/O error"), 14, 503, None),
    (KeyError("a bug"), 13, 500, None),
])


def test_each_exception_has_one_answer(error: Exception, grpc_code: int, http_status: int,
                                       retry: float | None) -> None:
    refusal = refusal_of(error)
    assert (refusal.grpc_code, refusal.http_status, refusal.retry_after_seconds) == (grpc_code, http_status, retry)
    status = refusal.status()
    assert status.code == grpc_code and status.message == refusal.message
    if retry is not None:
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info) and info.retry_delay.ToNanoseconds() == retry * 1e9
    assert refusal_of(Refused(refusal)) == refusal  # a worker's main process decided: passed on unchanged


def test_a_bug_is_named_not_detailed() -> None:
    assert refusal_of(KeyError("secret internals")).message == "otel-ml failed on this request: KeyError"


def test_admission_refuses_past_the_limit_counts_and_releases() -> None:
    refused: list[int] = []
    gate = AdmissionControl(max_bytes=100, retry_after_seconds=3.0, on_refuse=lambda: refused.append(1))
    with gate.admit(500):  # one request is always admitted, however large
        assert gate.inflight == 500
        with pytest.raises(Overloaded) as e:
            gate.admit(1).__enter__()
        assert e.value.retry_after_seconds == 3.0 and refused == [1]
    assert gate.inflight == 0
    with gate.admit(60), gate.admit(40):
        assert gate.inflight == 100
    assert gate.inflight == 0


def test_admission_holds_under_concurrency() -> None:
    gate = AdmissionControl(max_bytes=1000)
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak
        for _ in range(200):
            try:
                with gate.admit(300), lock:
                    peak = max(peak, gate.inflight)
            except Overloaded:
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gate.inflight == 0 and 300 <= peak <= 900  # never past the limit once anything is in flight


def test_refusal_is_a_plain_picklable_value() -> None:
    import pickle

    r = Refusal("m", 14, 503, 1.0)
    assert pickle.loads(pickle.dumps(r)) == r  # it crosses the worker pipe
