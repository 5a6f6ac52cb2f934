"""Evaluation results of LLM calls as their ground truth (issue 45, part 2): both shapes the conventions allow (a
span event, a log record) read by both decoders, joined to their calls whichever comes first, counted per
evaluation in the call's window and in the model's pinned reference, and decided against it as the raw data say."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from scipy import stats

from otel_ml import semconv
from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, assess_all
from otel_ml.decode import DecodeLimits
from otel_ml.decode.evaluations import call_ids, call_key
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.otlp import decode_request, decode_request_compiled, decode_request_python
from otel_ml.decode.outcomes import decode_logs_request, split_outcomes
from otel_ml.labels.evaluations import pinned_evaluations
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from tests.support import MINUTE, MODEL, any_value, calls_request, evaluation_logs, span_id


def relevance(label: str, score: float | None = None) -> dict:
    out: dict = {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.label": label}
    if score is not None:
        out["gen_ai.evaluation.score.value"] = score
    return out


def test_a_call_is_keyed_by_its_span_id_alike_in_both_decoders_and_its_results_by_the_same_key() -> None:
    data = calls_request([1, 2], 10**18).SerializeToString()
    compiled = decode_request_compiled(data, DecodeLimits(), GenAiConfig())
    assert compiled is not None
    python = decode_request_python(data)
    assert compiled.batches[0].numeric[semconv.GENAI_CALL_ID_COLUMN].tolist() == \
        python.batches[0].numeric[semconv.GENAI_CALL_ID_COLUMN].tolist() == [call_key(span_id(1)),
                                                                             call_key(span_id(2))]
    for result in (split_outcomes(compiled), split_outcomes(python)):
        [batch] = result.batches
        assert batch.key == MODEL and semconv.GENAI_CALL_ID_COLUMN not in batch.numeric
        assert batch.prediction_id.tolist() == call_ids(np.array([call_key(span_id(1)), call_key(span_id(2))],
                                                                 float)).tolist()
    logs = decode_logs_request(evaluation_logs([(2, relevance("relevant"))], 10**18))
    [lb] = logs.labels
    assert (lb.model, lb.version, lb.label.tolist()) == (semconv.GENAI_EVALUATIONS, "relevance", ["relevant"])
    assert lb.prediction_id.tolist() == batch.prediction_id[1:].tolist()


def test_results_as_span_events_on_the_call_or_on_a_child_span_and_bad_ones_refused_with_a_reason() -> None:
    req = calls_request([1], 10**18, {1: [relevance("relevant", 4.0), {"gen_ai.evaluation.name": "tox"}]})
    child = req.resource_spans[0].scope_spans[0].spans.add(name="evaluate", span_id=span_id(9),
                                                            parent_span_id=span_id(1), end_time_unix_nano=10**18)
    child.events.add(name=semconv.GENAI_EVALUATION_EVENT).attributes.extend(
        KeyValue(key=k, value=any_value(v)) for k, v in relevance("not_relevant", 1.0).items())
    orphan = req.resource_spans[0].scope_spans[0].spans.add(name="evaluate", end_time_unix_nano=10**18)
    orphan.events.add(name=semconv.GENAI_EVALUATION_EVENT).attributes.extend(
        KeyValue(key=k, value=any_value(v)) for k, v in relevance("relevant").items())
    bad = req.resource_spans[0].scope_spans[0].spans.add(name="evaluate", span_id=span_id(10),
                                                          parent_span_id=span_id(1), end_time_unix_nano=10**18)
    bad.events.add(name=semconv.GENAI_EVALUATION_EVENT).attributes.add(key="gen_ai.evaluation.name").value.int_value = 3
    data = req.SerializeToString()
    assert decode_request_compiled(data, DecodeLimits(), GenAiConfig()) is None  # declined: the reference reads it
    result = decode_request(data, DecodeLimits(), GenAiConfig())
    [lb] = result.labels
    assert lb.label.tolist() == ["relevant", "not_relevant"] and lb.value.tolist() == [4.0, 1.0]
    assert len(set(lb.prediction_id.tolist())) == 1 and lb.prediction_id[0] == result.batches[0].prediction_id[0]
    # OTLP counts spans: the call's unusable result is left out (the call and its usable result kept); a span with
    # no usable result, nor anything else, is rejected with the reason.
    assert dict(result.rejected) == {"invalid_evaluation": 1, "evaluation_without_call": 1}
    assert result.spans_accepted == 2 and result.spans_received == 4
    assert set(result.rejected) <= set(semconv.REJECTION_REASONS)
    logs = decode_logs_request(evaluation_logs([(-1, relevance("relevant")), (3, {"gen_ai.evaluation.name": "x",
                                                "gen_ai.evaluation.score.value": "high"}),
                                                (3, {"gen_ai.evaluation.name": "n" * 257,
                                                     "gen_ai.evaluation.score.label": "pass"})], 10**18))
    assert dict(logs.rejected) == {"evaluation_without_call": 1, "invalid_evaluation": 2} and not logs.labels
    off = decode_request(data, DecodeLimits(), GenAiConfig(enabled=False))
    assert not off.labels and not off.batches


def ground_truth(tmp_path, horizon_minutes: int = 2) -> GroundTruth:
    return GroundTruth(str(tmp_path / "pending"), LabelsConfig(), PerformanceConfig(
        window_seconds=60, horizon_seconds=60 * horizon_minutes, min_labels=50), pass_labels={"judge": ["ok"]})


def apply_calls(gt: GroundTruth, ids: list[int], t0: int) -> None:
    for batch in decode_request(calls_request(ids, t0).SerializeToString(), DecodeLimits(), GenAiConfig()).batches:
        gt.on_predictions(batch)


def apply_results(gt: GroundTruth, rows: list[tuple[int, dict]], t: int) -> None:
    for lb in decode_logs_request(evaluation_logs(rows, t)).labels:
        gt.on_labels(lb)


def test_results_join_their_calls_in_either_order_several_per_call_and_strays_count_as_unmatched(tmp_path) -> None:
    gt = ground_truth(tmp_path)
    t0 = 10**18 // MINUTE * MINUTE
    apply_results(gt, [(1, relevance("relevant", 5.0)), (2, relevance("irrelevant", 1.0))], t0)  # before the calls
    apply_calls(gt, [1, 2, 3], t0)
    apply_results(gt, [(3, relevance("Relevant", 4.0)), (1, {"gen_ai.evaluation.name": "judge",
                                                             "gen_ai.evaluation.score.label": "ok"}),
                       (1, relevance("relevant", 5.0)), (77, relevance("relevant"))], t0 + 10**9)
    gt.advance()
    current = gt.current(*MODEL)
    assert current is not None
    rel, judge = current.evaluations["relevance"], current.evaluations["judge"]
    assert (rel.n, rel.passed, rel.failed, judge.passed) == (4, 3, 1, 1)  # a repeated result counts: no marking
    assert rel.mean_score() [0] == pytest.approx(np.mean([5.0, 1.0, 4.0, 5.0]))
    assert gt.totals[(semconv.GENAI_EVALUATIONS, "relevance", "applied")] == 4
    assert gt.pending.early_rows() == 1  # the stray one waits for a call that never comes ...
    gt.pending.observe(semconv.GENAI_EVALUATIONS, t0 + 2 * 3600 * 10**9)
    gt.advance()  # ... and is unknown once its wait is over
    assert gt.totals[(semconv.GENAI_EVALUATIONS, "relevance", "unknown")] == 1


def test_evaluation_names_beyond_the_cap_are_counted_as_such_not_kept(tmp_path) -> None:
    """An app that names each evaluation differently (an id in gen_ai.evaluation.name) cannot grow a window, or the
    pinned reference, past MAX_EVALUATIONS names: the results of the names beyond are counted unmatched."""
    from otel_ml.labels.evaluations import MAX_EVALUATIONS

    gt = ground_truth(tmp_path)
    t0 = 10**18 // MINUTE * MINUTE
    apply_calls(gt, [1, 2], t0)
    names = [f"eval-{k:03d}" for k in range(MAX_EVALUATIONS + 8)]
    apply_results(gt, [(i, {"gen_ai.evaluation.name": name, "gen_ai.evaluation.score.label": "pass"})
                       for name in names for i in (1, 2)], t0 + 10**9)
    gt.advance()
    current = gt.current(*MODEL)
    assert current is not None and len(current.evaluations) == MAX_EVALUATIONS
    over = [n for n in names if gt.totals[(semconv.GENAI_EVALUATIONS, n, "too_many_evaluations")]]
    assert len(over) == 8 and not set(over) & set(current.evaluations)
    assert all(gt.totals[(semconv.GENAI_EVALUATIONS, n, "too_many_evaluations")] == 2 for n in over)
    assert sum(gt.totals[(semconv.GENAI_EVALUATIONS, n, "applied")] for n in names) == 2 * MAX_EVALUATIONS
    assert len(gt.evaluations.references[MODEL][1]) == MAX_EVALUATIONS


def test_pass_rate_and_score_decisions_equal_the_exact_tests_on_the_raw_results(tmp_path) -> None:
    rng = np.random.default_rng(7)
    gt = ground_truth(tmp_path)
    t0 = 10**18 // MINUTE * MINUTE
    raw = {}
    for phase, (p_pass, loc) in enumerate(((0.9, 4.0), (0.7, 3.6))):  # the first horizon, then a later one
        start = t0 + phase * 10 * MINUTE
        ids = list(range(phase * 1000, phase * 1000 + 400))
        apply_calls(gt, ids, start)
        passed = rng.random(400) < p_pass
        scores = np.round(rng.normal(loc, 0.8, 400), 1)
        raw[phase] = (passed, scores)
        apply_results(gt, [(i, relevance("pass" if ok else "fail", float(s)))
                           for i, ok, s in zip(ids, passed, scores)], start + 10**9)
    gt.advance()
    pinned = gt.evaluations.reference(*MODEL, gt.pending.clock(MODEL[0]))
    assert pinned is not None and pinned["relevance"].n == 400
    report = assess_all(*MODEL, gt.current(*MODEL), None, DriftConfig(alpha=0.01),
                        gt.config, pinned)
    [e] = report.evaluations
    (ref_pass, ref_scores), (cur_pass, cur_scores) = raw[0], raw[1]
    assert e.pass_rate.value == cur_pass.mean() and e.reference_pass_rate.value == ref_pass.mean()
    se = math.sqrt(cur_pass.var() / 400 + ref_pass.var() / 400)  # the unpooled (Wald) two-proportion z-test
    assert e.p_values["pass_rate"] == pytest.approx(stats.norm.cdf((cur_pass.mean() - ref_pass.mean()) / se),
                                                    rel=1e-9)
    assert e.mean_score.value == pytest.approx(cur_scores.mean(), rel=1e-12)
    assert e.mean_score.se == pytest.approx(stats.sem(cur_scores), rel=1e-9)
    welch = stats.ttest_ind(cur_scores, ref_scores, equal_var=False)  # z with 400 a side: within t's tails
    assert e.p_values["mean_score"] == pytest.approx(welch.pvalue, rel=0.2)
    assert e.degraded == {"pass_rate": True, "mean_score": True}
    assert e.score_quantiles[0.5] == pytest.approx(np.quantile(cur_scores, 0.5), abs=0.3)  # KLL's rank error
    # The reference is checkpointed, and an offline reader finds it complete.
    state = gt.state()
    again = ground_truth(tmp_path / "again")
    again.restore(state)
    assert again.evaluations.references.keys() == gt.evaluations.references.keys()
    assert pinned_evaluations(state, *MODEL)["relevance"].to_dict() == pinned["relevance"].to_dict()


def test_no_decision_before_the_first_horizon_is_over_nor_on_an_aa_split(tmp_path) -> None:
    rng = np.random.default_rng(11)
    gt = ground_truth(tmp_path)
    t0 = 10**18 // MINUTE * MINUTE
    apply_calls(gt, list(range(300)), t0)
    apply_results(gt, [(i, relevance("pass" if rng.random() < 0.8 else "fail")) for i in range(300)], t0 + 10**9)
    assert gt.evaluations.reference(*MODEL, gt.pending.clock(MODEL[0])) is None  # still in its first horizon
    apply_calls(gt, list(range(1000, 1300)), t0 + 10 * MINUTE)
    apply_results(gt, [(i, relevance("pass" if rng.random() < 0.8 else "fail")) for i in range(1000, 1300)],
                  t0 + 10 * MINUTE + 10**9)
    gt.advance()
    pinned = gt.evaluations.reference(*MODEL, gt.pending.clock(MODEL[0]))
    report = assess_all(*MODEL, gt.current(*MODEL), None, DriftConfig(alpha=0.01), gt.config, pinned)
    assert report.evaluations[0].degraded == {"pass_rate": False}


def test_a_baseline_built_from_a_table_of_past_evaluations_is_the_reference(tmp_path) -> None:
    rng = np.random.default_rng(5)
    n = 500
    passed = rng.random(n) < 0.9
    scores = np.round(rng.uniform(1, 5, n), 1)
    table = tmp_path / "past.csv"
    lines = ["gen_ai.usage.output_tokens,gen_ai.evaluation.relevance.score,gen_ai.evaluation.relevance.label,"
             "gen_ai.evaluation.judge.label"]
    lines += [f"{rng.integers(5, 60)},{s},{'relevant' if ok else 'irrelevant'},{'ok' if i % 3 else 'meh'}"
              for i, (ok, s) in enumerate(zip(passed, scores))]
    table.write_text("\n".join(lines) + "\n")
    from otel_ml.cli import main
    out = tmp_path / "ref.json"
    assert main(["baseline", "build", "--input", str(table), "--model", MODEL[0], "--output", str(out),
                 "--pass-labels", "judge=ok"]) == 0
    from otel_ml.profile.model import ModelProfile
    ref = ModelProfile.read(out)
    assert set(ref.features) == {"gen_ai.usage.output_tokens"}  # the results are no features
    rel, judge = ref.performance.profile.evaluations["relevance"], ref.performance.profile.evaluations["judge"]
    assert (rel.n, rel.passed, rel.mean_score()[0]) == (n, int(passed.sum()), pytest.approx(scores.mean()))
    assert (judge.passed, judge.failed) == (sum(1 for i in range(n) if i % 3), sum(1 for i in range(n) if not i % 3))
    gt = ground_truth(tmp_path)
    t0 = 10**18 // MINUTE * MINUTE
    apply_calls(gt, list(range(200)), t0)
    apply_results(gt, [(i, relevance("irrelevant" if i % 2 else "relevant")) for i in range(200)], t0 + 10**9)
    report = assess_all(*MODEL, gt.current(*MODEL), ref.performance, DriftConfig(alpha=0.01), gt.config,
                        {"relevance": rel})  # a baseline's reference wins over a pinned one
    by_name = {e.name: e for e in report.evaluations}
    assert by_name["relevance"].reference_source == "baseline" and by_name["relevance"].degraded["pass_rate"]
    assert by_name["judge"].results == 0 and by_name["judge"].reference_results == n


def test_pass_labels_from_yaml_and_a_malformed_one_refused_with_its_key(tmp_path) -> None:
    from otel_ml.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text("genai:\n  pass_labels:\n    faithfulness: [faithful, mostly_faithful]\n")
    assert load_config(path, environ={}).genai.pass_labels == {"faithfulness": ["faithful", "mostly_faithful"]}
    path.write_text("genai:\n  pass_labels:\n    faithfulness: faithful\n")
    with pytest.raises(ConfigError, match=re.escape("genai.pass_labels.faithfulness")):
        load_config(path, environ={})


def test_with_evaluations_off_calls_are_not_kept_and_results_not_read_by_either_decoder() -> None:
    from otel_ml.receiver.ingest import decode_for_ingest
    from tests.unit.test_decode_compiled import same

    off = GenAiConfig(evaluations=False)
    data = calls_request([1, 2], 10**18, {1: [relevance("relevant")]}).SerializeToString()
    compiled = decode_request_compiled(data, DecodeLimits(), off)
    assert compiled is not None  # no longer handed to the reference for its event
    same(compiled, decode_request_python(data, DecodeLimits(), off))
    result = decode_request(data, DecodeLimits(), off)
    assert not result.labels and not len(result.batches[0].prediction_id)
    logs = evaluation_logs([(1, relevance("relevant"))], 10**18).SerializeToString()
    for config, taken in ((off, 0), (GenAiConfig(), 1)):
        got = decode_for_ingest(logs, DecodeLimits(), None, [], "logs", config)
        assert (len(got.labels), got.spans_ignored) == (taken, 1 - taken)


def test_a_result_naming_only_the_response_joins_the_call_by_its_second_key(tmp_path) -> None:
    from otel_ml.core.live import alias_rows

    req = calls_request([1, 2], 10**18)
    for span, rid in zip(req.resource_spans[0].scope_spans[0].spans, ("chatcmpl-a", "chatcmpl-b")):
        span.attributes.add(key="gen_ai.response.id").value.string_value = rid
    data = req.SerializeToString()
    compiled = decode_request_compiled(data, DecodeLimits(), GenAiConfig())
    assert compiled is not None
    same_alias = [split_outcomes(r).batches[0].call_alias.tolist()
                  for r in (compiled, decode_request_python(data))]
    assert same_alias[0] == same_alias[1] and 0 not in same_alias[0]
    gt = ground_truth(tmp_path)
    [batch] = decode_request(data, DecodeLimits(), GenAiConfig()).batches
    gt.on_predictions(batch)
    gt.join_predictions(alias_rows(batch))  # as LiveModels joins a call under its response id too
    logs = evaluation_logs([(-1, {**relevance("relevant"), "gen_ai.response.id": "chatcmpl-b"}),
                            (-1, {**relevance("relevant"), "gen_ai.response.id": "chatcmpl-zzz"})], 10**18)
    result = decode_logs_request(logs)
    assert not result.rejected
    for lb in result.labels:
        gt.on_labels(lb)
    assert gt.current(*MODEL).evaluations["relevance"].n == 1  # the one naming a call's response
    assert gt.pending.early_rows() == 1  # the other waits for a call that may still come
    # The batch (and its second key) survives the journal's record.
    from otel_ml.decode.batch import DecodeResult
    again = DecodeResult.from_bytes(DecodeResult([batch]).to_bytes()).batches[0]
    assert again.call_alias.tolist() == batch.call_alias.tolist()
