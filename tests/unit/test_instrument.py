"""The instrumentation: span shapes, batch form, sklearn wrapper, sampling, bad values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import StatusCode

from otel_ml.instrument import ModelMonitor


def test_context_manager_records_features_prediction_and_errors(provider, spans) -> None:
    m = ModelMonitor("fraud", "2", tracer_provider=provider)
    with m.predict({"amount": np.float64(12.5), "country": "NO", "n": np.int64(3), "flag": True}) as p:
        p.set_prediction("legit", score=0.97, prediction_id="abc")
    with pytest.raises(RuntimeError), m.predict({"amount": 1.0}):
        raise RuntimeError("model crashed")
    ok, failed = spans.get_finished_spans()
    stream = ok.attributes["ml.sequence.stream"]
    assert dict(ok.attributes) == {
        "ml.model.name": "fraud", "ml.model.version": "2", "ml.feature.amount": 12.5,
        "ml.feature.country": "NO", "ml.feature.n": 3, "ml.feature.flag": True, "ml.prediction": "legit",
        "ml.prediction.score": 0.97, "ml.prediction.id": "abc", "ml.sequence": 0, "ml.sequence.stream": stream}
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes["ml.sequence"], failed.attributes["ml.sequence.stream"]) == (1, stream)


def test_bad_values_are_dropped_and_counted_never_raised(provider, spans) -> None:
    m = ModelMonitor("m", tracer_provider=provider)
    with m.predict({"ok": 1, "obj": object(), "nan": math.nan, "none": None, "list": [1, 2]}) as p:
        p.set_prediction({"not": "scalar"})
    m.record_batch({"x": [1, 2], "y": [1]})  # lengths differ: dropped, not raised
    m.record_batch({"x": [1, "a"], "z": [1.0, 2.0]})  # mixed column dropped, the rest kept
    assert m.dropped_values == 5
    single, batch = spans.get_finished_spans()
    assert set(single.attributes) == {"ml.model.name", "ml.feature.ok", "ml.sequence", "ml.sequence.stream"}
    assert "ml.feature.x" not in batch.attributes and batch.attributes["ml.feature.z"] == (1.0, 2.0)


def test_record_keeps_each_output_as_the_attribute_it_can_be(provider, spans) -> None:
    """``record``'s outputs (prediction, score, id, probabilities, attributions): plain values as they are, numpy
    scalars as Python ones, NaN and "" left out as missing, an unusable value dropped and counted."""
    m = ModelMonitor("m", tracer_provider=provider)
    m.record({"x": 1.0}, prediction=True, score=np.float32(0.5), prediction_id="p1", probability={"a": 0.75, "b": 0.25},
             attributions={"x": np.float64(-0.1)})
    m.record({"x": 2.0}, prediction=math.nan, score=3, prediction_id="")
    m.record({"x": 3.0}, prediction=np.int64(7), score=object())
    first, second, third = (dict(s.attributes) for s in spans.get_finished_spans())
    assert {k: v for k, v in first.items() if not k.startswith(("ml.sequence", "ml.model"))} == {
        "ml.feature.x": 1.0, "ml.prediction": True, "ml.prediction.score": 0.5, "ml.prediction.id": "p1",
        "ml.prediction.probability.a": 0.75, "ml.prediction.probability.b": 0.25, "ml.attribution.x": -0.1}
    assert "ml.prediction" not in second and "ml.prediction.id" not in second and second["ml.prediction.score"] == 3
    assert third["ml.prediction"] == 7 and type(third["ml.prediction"]) is int and "ml.prediction.score" not in third
    assert m.dropped_values == 1


def test_a_feature_named_like_the_model_output_is_dropped_and_counted(provider, spans, caplog) -> None:
    """The processor rejects ``ml.feature.prediction`` (it would merge with ``ml.prediction``): the client drops
    that value, keeps the rest of the prediction, counts and logs it."""
    m = ModelMonitor("m", tracer_provider=provider)
    with m.predict({"prediction": 1.0, "age": 3}) as p:
        p.set_feature("prediction.score", 0.5)
        p.set_prediction(1)
    m.record({"prediction": 2.0, "age": 4}, prediction=0)
    m.record_batch({"prediction": [1, 2], "age": [5, 6]}, predictions=[0, 1])
    assert m.dropped_values == 4
    assert "ml.feature.prediction" in caplog.text and "rename the feature" in caplog.text
    for span in spans.get_finished_spans():
        assert not any(k.startswith("ml.feature.prediction") for k in span.attributes)
        assert "ml.feature.age" in span.attributes and "ml.prediction" in span.attributes


def test_dropped_values_are_counted_by_reason_in_the_apps_metrics(provider, spans, caplog) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    m = ModelMonitor("m", "1", tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]))
    m.record({"a": object(), "b": object(), "prediction": 1.0})  # 2 unsupported types, 1 reserved name
    m.record_batch({"x": [1, "a"], "y": [1.0, 2.0]})  # a column mixing numbers and text
    m.record_batch({"x": [1, 2], "y": [1.0]})  # columns of different lengths: the batch
    points = {dict(p.attributes)["reason"]: p.value
              for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
              if metric.name == "otel_ml.client.values.dropped" for p in metric.data.data_points}
    assert points == {"unsupported_type": 2, "reserved_name": 1, "mixed_types": 1, "length_mismatch": 1}
    assert m.dropped_by_reason == points and m.dropped_values == 5
    for reason in points:  # the first of each reason is logged, not only the first drop
        assert f"({reason}:" in caplog.text


def test_decorator(provider, spans) -> None:
    m = ModelMonitor("m", tracer_provider=provider)

    @m.trace
    def predict(features: dict) -> float:
        return features["a"] * 2.0

    assert predict({"a": 2}) == 4.0
    [s] = spans.get_finished_spans()
    assert s.attributes["ml.feature.a"] == 2 and s.attributes["ml.prediction"] == 4.0


def test_batch_form_with_missing_values(provider, spans) -> None:
    m = ModelMonitor("m", tracer_provider=provider)
    m.record_batch({"x": np.array([1.0, np.nan, 3.0]), "i": [1, None, 3], "c": ["a", None, "b"],
                    "b": [True, False, None]}, predictions=np.array([0, 1, 0]), scores=[0.9, 0.8, 0.7])
    [s] = spans.get_finished_spans()
    a = s.attributes
    assert a["ml.batch.size"] == 3
    assert a["ml.feature.x"][0] == 1.0 and math.isnan(a["ml.feature.x"][1])
    assert a["ml.feature.i"][2] == 3.0 and math.isnan(a["ml.feature.i"][1])
    assert a["ml.feature.c"] == ("a", "", "b")
    assert a["ml.feature.b"] == ("true", "false", "")
    assert a["ml.prediction"] == (0, 1, 0) and a["ml.prediction.score"] == (0.9, 0.8, 0.7)


def test_sampling(provider, spans) -> None:
    m = ModelMonitor("m", tracer_provider=provider, sampling_ratio=0.1)
    m._random.seed(3)
    for i in range(2000):
        m.record({"x": i}, prediction=1)
    got = spans.get_finished_spans()
    assert 140 < len(got) < 260
    assert all(s.attributes["ml.sampling.ratio"] == 0.1 for s in got)
    spans.clear()
    m.record_batch({"x": list(range(5000))})
    [s] = spans.get_finished_spans()
    assert 400 < s.attributes["ml.batch.size"] < 600


def test_sklearn_wrapper(provider, spans) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    monitored = ModelMonitor("iris", "1", tracer_provider=provider).wrap(model)
    pred = monitored.predict(X.iloc[:10])
    proba = monitored.predict_proba(X.iloc[:10].to_numpy())
    assert list(pred) == list(model.predict(X.iloc[:10]))
    assert monitored.classes_.tolist() == [0, 1, 2]  # passes through
    a, b = spans.get_finished_spans()
    assert a.attributes["ml.batch.size"] == 10
    assert a.attributes["ml.feature.sepal length (cm)"][0] == X.iloc[0, 0]
    assert b.attributes["ml.prediction"] == tuple(str(v) for v in pred)  # a classifier's labels, as text
    assert b.attributes["ml.prediction.score"][0] == pytest.approx(proba[0].max())
    assert "ml.feature.petal width (cm)" in b.attributes  # names from feature_names_in_


def test_wrapped_model_times_the_call_records_failures_counts_once_refuses_bad_names_and_pickles(
        provider, spans, caplog) -> None:
    import pickle
    import time

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)  # numpy: no column names
    model = LogisticRegression(max_iter=500).fit(X, y)
    names = ["sl", "sw", "pl", "pw"]
    monitor = ModelMonitor("iris", "1", tracer_provider=provider)

    class Slow:  # a model that takes 50 ms, then fails on an empty input
        n_features_in_ = 4

        def predict(self, rows):
            time.sleep(0.05)
            if len(rows) == 0:
                raise ValueError("empty input")
            return model.predict(rows)

    slow = monitor.wrap(Slow(), feature_names=names)
    slow.predict(X[:5])
    with pytest.raises(ValueError, match="empty input"):
        slow.predict(X[:0])
    timed, failed = spans.get_finished_spans()
    assert (timed.end_time - timed.start_time) / 1e9 >= 0.05  # the span covers the model's time
    assert failed.status.status_code == StatusCode.ERROR  # a failure is recorded, and still raised
    spans.clear()

    wrapped = monitor.wrap(model, feature_names=names)
    batch = X[:8]
    wrapped.predict_proba(batch)
    wrapped.predict(batch)  # the same predictions: not counted again
    wrapped.predict(batch)  # predict again on that input: a new call, counted
    recorded = spans.get_finished_spans()
    assert [s.attributes["ml.batch.size"] for s in recorded] == [8, 8]
    assert "ml.prediction.score" in recorded[0].attributes and "ml.feature.sl" in recorded[0].attributes
    spans.clear()

    with pytest.raises(ValueError, match="3 names, the model takes 4"):
        monitor.wrap(model, feature_names=names[:3])
    unnamed = monitor.wrap(Slow())
    unnamed.predict(X[:2])
    assert "no column names: recorded as x0..x3" in caplog.text
    before = monitor.dropped_values
    mismatched = monitor.wrap(model, feature_names=names)
    mismatched._feature_names = names[:3]  # e.g. names for another model version
    mismatched.predict(X[:2])
    assert monitor.dropped_values == before + 1 and "3 feature names for inputs of 4 columns" in caplog.text

    restored = pickle.loads(pickle.dumps(wrapped))
    assert restored.predict(X[:3]).tolist() == model.predict(X[:3]).tolist()
    assert restored.classes_.tolist() == [0, 1, 2] and restored._monitor.model_name == "iris"


class EveryOtherSpan:
    """A sampler that drops every other span, like an app's trace sampler would."""

    def __init__(self) -> None:
        self.n = 0

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        self.n += 1
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.n % 2 else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "every other span"


def test_spans_are_numbered_by_predictions_and_sampled_out_spans_take_no_number(spans) -> None:
    provider = TracerProvider(sampler=EveryOtherSpan())  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(spans))
    m = ModelMonitor("m", tracer_provider=provider)
    for i in range(6):
        m.record({"x": float(i)})
    m.record_batch({"x": [1.0, 2.0, 3.0]})  # 7th span: recorded
    with m.predict({"x": 1.0}):  # 8th: dropped by the sampler
        pass
    m.record_batch({"x": [4.0, 5.0]})  # 9th: recorded
    got = [(s.attributes["ml.sequence"], s.attributes.get("ml.batch.size", 1)) for s in spans.get_finished_spans()]
    assert got == [(0, 1), (1, 1), (2, 1), (3, 3), (6, 2)]  # contiguous: a gap would read as lost
    assert len({s.attributes["ml.sequence.stream"] for s in spans.get_finished_spans()}) == 1
    assert ModelMonitor("m")._sequence.stream != m._sequence.stream  # each monitor (process) is its own sequence


def test_the_default_sampler_numbers_spans_at_their_start_and_a_parent_not_sampled_takes_no_number(spans) -> None:
    """With the SDK's default sampler (ParentBased(ALWAYS_ON)) a span's number goes into its start attributes
    (cheaper than setting them after); a parent the app did not sample drops the span, which takes no number."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    m = ModelMonitor("m", tracer_provider=provider)
    assert m._sequence.will_record() is True
    m.record({"x": 1.0})
    for sampled in (False, True):
        parent = SpanContext(trace_id=1, span_id=2, is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0))
        with trace.use_span(NonRecordingSpan(parent)):
            assert m._sequence.will_record() is sampled
            m.record({"x": 2.0})
            m.record_batch({"x": [3.0, 4.0]})
    m.record_batch({"x": [5.0]})
    got = [(s.attributes["ml.sequence"], s.attributes.get("ml.batch.size", 1)) for s in spans.get_finished_spans()]
    assert got == [(0, 1), (1, 1), (2, 2), (4, 1)]  # the unsampled parent's two spans: not recorded, no gap


def test_a_float_column_with_missing_values_text_or_ints_is_sent_as_the_processor_reads_it(provider, spans) -> None:
    m = ModelMonitor("m", tracer_provider=provider)
    m.record_batch({"missing": [1.0, None], "text": [1.0, "a"], "ints": [1.5, 2], "huge": [1.0, 10**400],
                    "words": ["a", None], "plain": [0.5, 1.5]})
    (span,) = spans.get_finished_spans()
    a = span.attributes
    assert a["ml.feature.missing"][0] == 1.0 and math.isnan(a["ml.feature.missing"][1])
    assert a["ml.feature.words"] == ("a", "") and a["ml.feature.plain"] == (0.5, 1.5)
    assert a["ml.feature.ints"] == (1.5, 2)  # numbers to the processor either way
    assert "ml.feature.text" not in a and m.dropped_by_reason["mixed_types"] == 1  # text among numbers
    assert "ml.feature.huge" not in a and m.dropped_by_reason["other"] == 1  # beyond a float: the exact path


def test_record_with_batch_rows_collects_predictions_into_batch_spans(provider, spans) -> None:
    m = ModelMonitor("m", "1", tracer_provider=provider, batch_rows=300, batch_seconds=3600)
    for i in range(700):
        features = {"x": float(i), "plan": "a" if i % 2 else "b"}
        if i == 5:
            del features["plan"]  # missing in one row: "" in the column, the processor counts it missing
        m.record(features, prediction=i % 3, score=0.5)
    assert [s.attributes["ml.batch.size"] for s in spans.get_finished_spans()] == [300, 300]
    m.flush()
    batches = spans.get_finished_spans()
    assert [s.attributes["ml.batch.size"] for s in batches] == [300, 300, 100]
    assert [s.attributes["ml.sequence"] for s in batches] == [0, 300, 600]
    first = batches[0].attributes
    assert first["ml.feature.x"][:3] == (0.0, 1.0, 2.0) and first["ml.feature.plan"][5] == ""
    assert first["ml.prediction"][:4] == (0, 1, 2, 0) and set(first["ml.prediction.score"]) == {0.5}
    assert all(s.start_time == s.end_time for s in batches)  # when, not how long: no latency sample
    m.flush()  # nothing pending: no empty span
    assert len(spans.get_finished_spans()) == 3


def test_record_with_batch_rows_flushes_by_time(provider, spans) -> None:
    import time

    m = ModelMonitor("m", tracer_provider=provider, batch_rows=10_000, batch_seconds=0.1)
    m.record({"x": 1.0})
    deadline = time.monotonic() + 5
    while not spans.get_finished_spans() and time.monotonic() < deadline:
        time.sleep(0.02)
    [span] = spans.get_finished_spans()
    assert span.attributes["ml.batch.size"] == 1


def test_a_forked_worker_is_a_sender_of_its_own(provider, spans) -> None:
    import os

    m = ModelMonitor("m", tracer_provider=provider, batch_rows=100)
    m.record({"x": 1.0})  # pending in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its stream, sequence start and pending rows, then leaves without cleanup
        os.write(write, f"{m._sequence.stream} {m._sequence.take(0)} {len(m._pending)}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    stream, seq, pending = (int(x) for x in os.read(read, 100).split())
    assert stream != m._sequence.stream and seq == 0 and pending == 0
    assert len(m._pending) == 1  # the parent still sends its own
