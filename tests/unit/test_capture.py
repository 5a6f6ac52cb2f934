"""Issue 35 and 44: SageMaker Data Capture records, Vertex AI request-response log rows and Azure ML data collector
files read into the table `otel-ml replay` sends and `baseline build` profiles; files the platforms and their
documentation published (tests/data/capture/README.md names each source) as well as files written here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from otel_ml.instrument.capture import CaptureError, load_mapping, read_capture

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "capture"
PUBLISHED = Path(__file__).resolve().parents[2] / "tests" / "data" / "capture"
NOV_2 = 1793606400  # 2026-11-02T08:00:00Z


def read(path: str | Path, capture_format: str, mapping: dict | None = None) -> dict[str, list]:
    return read_capture(str(path), capture_format, mapping or {}).columns


def test_the_shipped_sample_reads_as_six_predictions_with_their_ids_times_and_features() -> None:
    cols = read(EXAMPLES / "sagemaker-data-capture.jsonl", "sagemaker",
                load_mapping(str(EXAMPLES / "sagemaker-mapping.json")))
    assert cols["capture.id"] == ["req-0", "req-1", "req-2", "7c3e5f1a-0b1d-4c7e-9a51-000000000003:0",
                                  "7c3e5f1a-0b1d-4c7e-9a51-000000000003:1", "req-4"]
    assert cols["region"] == ["north", "south", "north", "east", "west", "south"]  # CSV, JSON batch, base64
    assert cols["prediction.probability"] == [0.82, 0.35, 0.91, 0.12, 0.67, 0.05]
    assert cols["capture.time"][3] == cols["capture.time"][4] == (NOV_2 + 24 * 60 + 40) * 10**9


def record(inp: dict, out: dict | None = None, **meta: str) -> str:
    data = {"endpointInput": inp, **({"endpointOutput": out} if out else {})}
    return json.dumps({"captureData": data, "eventMetadata": {"eventId": "e", "inferenceTime": "2026-01-01T00:00:00Z",
                                                              **meta}})


def test_object_rows_and_object_outputs_are_named_by_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    outputs = {"predictions": [{"label": "yes", "p": 0.9}, {"label": "no", "p": 0.2}]}
    path.write_text(record({"data": json.dumps([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]), "encoding": "JSON"},
                           {"data": json.dumps(outputs), "encoding": "JSON"}) + "\n")
    cols = read(path, "sagemaker", {"output_keys": {"label": "prediction", "p": "score"}})
    assert cols["a"] == [1, 2] and cols["prediction"] == ["yes", "no"] and cols["prediction.score"] == [0.9, 0.2]
    assert cols["capture.id"] == ["e:0", "e:1"]


@pytest.mark.parametrize("line, why", [
    (record({"data": "1,2", "encoding": "CSV"}, {"data": "0.1\n0.2", "encoding": "CSV"}), r"1 input row\(s\) but 2"),
    (record({"data": "%%%", "encoding": "BASE64"}), "not a SageMaker Data Capture record"),
    (json.dumps({"captureData": {}}), "no 'eventMetadata'"),
    (record({"data": "1", "encoding": "XML"}), "encoding 'XML'"),
    (record({"data": "1,2", "encoding": "CSV"}, inferenceTime="1900-01-01T00:00:00Z"), "before 1970"),
    (record({"data": "1,2", "encoding": "CSV"}, inferenceTime="9999-12-31T23:59:59Z"), "timestamp_in_future"),
    (record({"data": ",".join(["1"] * 2001), "encoding": "CSV"}), "2,001 values in one row"),
])
def test_a_bad_record_is_refused_with_its_file_and_line_and_the_rest_is_read(tmp_path: Path, line: str,
                                                                             why: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(record({"data": "1,2", "encoding": "CSV"}) + "\n\n" + line + "\n"
                    + record({"data": "3,4", "encoding": "CSV"}, eventId="f") + "\n")
    got = read_capture(str(path), "sagemaker", {})
    assert got.columns["f0"] == [1.0, 3.0] and got.records == 3
    assert len(got.refused) == 1 and got.refused[0][0] == f"{path}:3", got.refused
    assert __import__("re").search(why, got.refused[0][1]), got.refused
    assert f"{path}:3" in got.warnings()[0]
    path.write_text(line + "\n")
    with pytest.raises(CaptureError, match=rf"no capture record could be read \({path}:1: .*{why}"):
        read_capture(str(path), "sagemaker", {})


def test_a_record_over_the_size_limit_is_refused_unread_and_the_next_one_read(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    big = record({"data": ",".join(["1.5"] * 400_000), "encoding": "CSV"})  # 1.6 MB on one line
    path.write_text(big + "\n" + record({"data": "7,8", "encoding": "CSV"}, eventId="after") + "\n")
    got = read_capture(str(path), "sagemaker", {}, max_record_bytes=1_000_000)
    assert got.columns["capture.id"] == ["after"] and got.columns["f0"] == [7.0]
    assert got.refused == [(f"{path}:1", "record longer than 1,000,000 bytes (--max-record-bytes)")]


def test_a_mapping_naming_an_unknown_output_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"outputs": ["probabilty"]}))
    with pytest.raises(CaptureError, match="'probabilty' is not one of prediction, score, probability"):
        load_mapping(str(path))


def test_the_shipped_vertex_sample_reads_list_and_object_instances_at_their_logging_times() -> None:
    cols = read(EXAMPLES / "vertex-request-response.jsonl", "vertex",
                load_mapping(str(EXAMPLES / "vertex-mapping.json")))
    assert cols["capture.id"] == ["1201", "1202:0", "1202:1", "1203"]
    assert cols["region"] == ["north", "south", "east", "west"]  # list instances named by the mapping; an object
    assert cols["prediction.probability"] == [0.82, 0.35, 0.12, 0.67]  # lists by "outputs"; an object by its key
    assert cols["capture.time"][0] == (NOV_2 + 24 * 60 + 38) * 10**9 + 117_000_000  # BigQuery's "... UTC"


def test_a_vertex_csv_export_holds_the_repeated_payloads_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "rr.csv"
    rows = [{"logging_time": "2026-11-02 08:00:00 UTC", "request_id": "1",
             "request_payload": json.dumps([json.dumps({"instances": [[1, 2], [3, 4]]})]),
             "response_payload": json.dumps([json.dumps({"predictions": [0.1, 0.9]})])}]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = read(path, "vertex", {"features": ["a", "b"]})
    assert cols["a"] == [1, 3] and cols["prediction"] == [0.1, 0.9] and cols["capture.id"] == ["1:0", "1:1"]
    path.write_text(path.read_text() + "2026-11-02 08:00:01 UTC,2,[cut short,[]\n")
    got = read_capture(str(path), "vertex", {})
    assert got.rows == 2 and got.refused[0][0] == f"{path}:3"
    assert got.refused[0][1].startswith("not a Vertex AI request-response log row")


def test_the_shipped_azureml_directory_joins_inputs_and_outputs_by_correlation_id() -> None:
    cols = read(EXAMPLES / "azureml", "azureml", load_mapping(str(EXAMPLES / "azureml-mapping.json")))
    assert cols["capture.id"] == ["5b2c8f1e-0000-4000-8000-000000000001", "5b2c8f1e-0000-4000-8000-000000000002:0",
                                  "5b2c8f1e-0000-4000-8000-000000000002:1", "5b2c8f1e-0000-4000-8000-000000000003"]
    assert cols["income"] == [52000.0, 38000.0, 61000.0, 72000.0]
    assert cols["prediction.probability"] == [0.82, 0.35, 0.12, 0.67]


def test_azureml_outputs_without_their_inputs_name_the_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "model_outputs" / "part.jsonl"
    out.parent.mkdir()
    out.write_text(json.dumps({"type": "azureml.inference.model_outputs", "correlationid": "c1", "time": "t",
                               "data": [{"p": 1}]}) + "\n")
    with pytest.raises(CaptureError, match=rf"{out}:1: outputs of correlation id 'c1' without its inputs"):
        read_capture(str(tmp_path), "azureml", {})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CaptureError, match=r"no \.jsonl/\.json files in this directory"):
        read_capture(str(empty), "azureml", {})


def test_a_baseline_is_built_from_a_capture_with_its_features_and_outputs(tmp_path: Path) -> None:
    from otel_ml.cli import main
    from otel_ml.profile.model import ModelProfile

    out = tmp_path / "credit.json"
    assert main(["baseline", "build", "--format", "azureml", "--input", str(EXAMPLES / "azureml"), "--mapping",
                 str(EXAMPLES / "azureml-mapping.json"), "--model", "credit", "--output", str(out)]) == 0
    profile = ModelProfile.from_json(out.read_text())
    assert sorted(profile.features) == ["age", "income", "prediction.probability", "region"]  # no time, no ids
    assert profile.rows == 4 and profile.features["income"].mean == (52000 + 38000 + 61000 + 72000) / 4


def test_azureml_records_without_a_type_take_their_collection_from_the_path_and_columns_become_rows(
        tmp_path: Path) -> None:
    """Older collectors' lines carry no ``type``: the directory says which collection; a DataFrame logged by
    columns, and collections under other names (the mapping's ``collections``), read alike."""
    for kind, data in (("scoring_in", {"age": [34, 51], "region": ["north", "south"]}),
                       ("scoring_out", [{"label": "yes"}, {"label": "no"}])):
        d = tmp_path / kind / "2026" / "11" / "02" / "08"
        d.mkdir(parents=True)
        (d / "part.jsonl").write_text(json.dumps({"correlationid": "c1", "time": "2026-11-02T08:00:00Z",
                                                  "data": data}) + "\n")
    mapping = {"collections": {"inputs": "scoring_in", "outputs": "scoring_out"},
               "output_keys": {"label": "prediction"}}
    cols = read(tmp_path, "azureml", mapping)
    assert cols["capture.id"] == ["c1:0", "c1:1"] and cols["age"] == [34, 51]
    assert cols["prediction"] == ["yes", "no"]
    with pytest.raises(CaptureError, match=r"part\.jsonl:1: .*collection \(none: no type, no such directory\)"):
        read_capture(str(tmp_path), "azureml", {})


def test_vertex_elements_that_are_plain_text_or_one_whole_request_are_read(tmp_path: Path) -> None:
    path = tmp_path / "rr.jsonl"
    path.write_text(json.dumps({"logging_time": "2026-11-02 08:00:00 UTC", "request_id": 9,
                                "request_payload": json.dumps({"instances": [{"a": 1}, {"a": 2}]}),
                                "response_payload": ["yes", "no"]}) + "\n")
    cols = read(path, "vertex")
    assert cols["a"] == [1, 2] and cols["prediction"] == ["yes", "no"] and cols["capture.id"] == ["9:0", "9:1"]


def sdk_capture(tmp_path: Path, name: str = "capture.jsonl", start: object = None) -> tuple[Path, list[str]]:
    """The SageMaker Python SDK's own capture file, its ``{%s}`` times replaced as the SDK's integration tests do
    (``_upload_actual_data``: ``"%Y-%m-%dT%H:%M:%S.%f"``, no zone), one minute apart from ``start`` (a naive UTC
    datetime; default 2026-11-02 08:00)."""
    import datetime as dt

    lines = (PUBLISHED / "sagemaker-python-sdk" / name).read_text().splitlines()
    start = start or dt.datetime(2026, 11, 2, 8, 0, 0)
    stamped = [line.replace("{%s}", (start + dt.timedelta(minutes=k)).strftime("%Y-%m-%dT%H:%M:%S.%f"))
               for k, line in enumerate(lines)]
    path = tmp_path / name
    path.write_text("\n".join(stamped) + "\n")
    return path, lines


def test_the_sagemaker_sdks_published_capture_reads_every_record_once() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path, lines = sdk_capture(Path(d))
        got = read_capture(str(path), "sagemaker", {"outputs": ["probability"]})
    records = [json.loads(line) for line in lines]
    cols = got.columns
    assert got.rows == len(records) == 44 and not got.refused and not got.duplicates
    assert cols["capture.id"] == [r["eventMetadata"]["eventId"] for r in records]
    assert [[cols[f"f{k}"][i] for k in range(7)] for i in range(44)] == [
        [float(v) for v in r["captureData"]["endpointInput"]["data"].split(",")] for r in records]
    assert cols["prediction.probability"] == [float(r["captureData"]["endpointOutput"]["data"]) for r in records]
    assert cols["capture.time"][1] - cols["capture.time"][0] == 60 * 10**9 and cols["capture.time"][0] == NOV_2 * 10**9


def test_the_sagemaker_sdks_scalar_instances_are_one_prediction_each() -> None:
    """{"instances": [1.0, 2.0, 5.0]} → {"predictions": [3.5, 4.0, 5.5]} (output pretty-printed over lines): three
    predictions per record, not one row refused for "1 input row(s) but 3 output(s)"."""
    got = read_capture(str(PUBLISHED / "sagemaker-python-sdk" / "captured-data.jsonl"), "sagemaker", {})
    assert got.rows == 6 and not got.refused
    assert got.columns["f0"] == [1.0, 2.0, 5.0] * 2 and got.columns["prediction"] == [3.5, 4.0, 5.5] * 2
    assert got.columns["capture.id"][:3] == [f"12b73486-e916-45de-9d82-7fa23d4a39a6:{k}" for k in range(3)]


def test_azure_mls_documented_records_read_as_their_rows() -> None:
    """Microsoft's own examples: an ``azureml.inference.inputs`` DataFrame record (no outputs), and payload
    logging's ``request`` ({"data": [[10 numbers], [...]]}) and ``response`` (a plain list) of one call."""
    inputs = read_capture(str(PUBLISHED / "azure-docs" / "inputs.jsonl"), "azureml", {}).columns
    assert inputs["pattern"] == ["aspirin", "trazodone", "citalopram"] and inputs["label"] == ["DRUG"] * 3
    assert inputs["capture.id"] == [f"3711655d-b04c-4aa2-a6c4-6a90cbfcb73f:{k}" for k in range(3)]
    assert "prediction" not in inputs
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for name in ("request.jsonl", "response.jsonl"):
            (Path(d) / name).write_bytes((PUBLISHED / "azure-docs" / name).read_bytes())
        got = read_capture(d, "azureml", {})
    assert got.rows == 2 and not got.refused
    assert [got.columns[f"f{k}"][0] for k in range(10)] == list(range(1, 11))
    assert got.columns["prediction"] == [11055.977245525679, 4503.079536107787]
    assert got.columns["capture.time"] == [1653469188 * 10**9] * 2  # 2022-05-25T08:59:48Z


def gemini_row(**extra: object) -> dict:
    doc = json.loads((PUBLISHED / "gemini-docs" / "generate-content.json").read_text())
    return {"endpoint": "projects/1/locations/us-central1/publishers/google/models/gemini-2.0-flash-001",
            "deployed_model_id": "", "logging_time": "2026-11-02 08:00:00.5 UTC", "request_id": "880",
            "request_payload": [], "response_payload": [], "model": "gemini-2.0-flash-001",
            "model_version": "gemini-2.0-flash-001", "api_method": "generateContent",
            "full_request": doc["request"], "full_response": doc["response"], "metadata": None, "otel_log": None,
            **extra}


def test_a_gemini_row_becomes_text_derived_features_and_never_its_text(tmp_path: Path) -> None:
    path = tmp_path / "gemini.jsonl"
    doc = json.loads((PUBLISHED / "gemini-docs" / "generate-content.json").read_text())
    answer = doc["response"]["candidates"][0]["content"]["parts"][0]["text"]
    half = len(answer) // 2
    chunks = [{"candidates": [{"content": {"parts": [{"text": answer[:half]}], "role": "model"}}]},
              {"candidates": [{"content": {"parts": [{"text": answer[half:]}], "role": "model"},
                               "finishReason": "STOP"}], "usageMetadata": doc["response"]["usageMetadata"]}]
    streamed = gemini_row(request_id="881", api_method="streamGenerateContent", full_request=None,
                          full_response=None, response_payload=[json.dumps(c) for c in chunks])
    path.write_text(json.dumps(gemini_row()) + "\n" + json.dumps(streamed) + "\n")
    got = read_capture(str(path), "vertex", {})
    cols = got.columns
    assert got.rows == 2 and not got.refused
    assert cols["gen_ai.response.characters"] == [len(answer)] * 2
    assert cols["gen_ai.usage.input_tokens"] == [4, 4] and cols["gen_ai.usage.output_tokens"] == [12, 12]
    assert cols["gen_ai.response.finish_reason"] == ["STOP", "STOP"]
    assert cols["gen_ai.prompt.characters"] == [len("Tell me a joke."), None]  # the stream logged no request
    assert cols["gen_ai.request.model"] == ["gemini-2.0-flash-001"] * 2 and cols["capture.id"] == ["880", "881"]
    assert not any(isinstance(v, str) and "chicken" in v for values in cols.values() for v in values)


def test_wrapped_vectors_json_lines_payloads_and_object_outputs_are_read(tmp_path: Path) -> None:
    """{"instances": [{"features": [14 numbers]}]} (Clarify, Linear Learner, Random Cut Forest), an
    application/jsonlines payload of several records, {"scores": [{"score": ...}]} and object outputs with several
    keys: read without a mapping, the feature names from the mapping when it gives them."""
    vector = [float(k) for k in range(14)]
    lines = [
        record({"data": json.dumps({"instances": [{"features": vector}, {"features": vector[::-1]}]}),
                "encoding": "JSON", "observedContentType": "application/json"},
               {"data": json.dumps({"predictions": [{"predicted_label": 1, "score": 0.8},
                                                    {"predicted_label": 0, "score": 0.3, "extra": 7}]}),
                "encoding": "JSON"}, eventId="a"),
        record({"data": json.dumps({"features": vector}) + "\n" + json.dumps({"features": vector}),
                "encoding": "JSON", "observedContentType": "application/jsonlines"},
               {"data": json.dumps({"scores": [{"score": 0.1}, {"score": 0.2}]}), "encoding": "JSON"}, eventId="b"),
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    got = read_capture(str(path), "sagemaker", {})
    cols = got.columns
    assert got.rows == 4 and not got.refused and cols["f13"] == [13.0, 0.0, 13.0, 13.0]
    assert cols["prediction"] == [1, 0, None, None] and cols["prediction.score"] == [0.8, 0.3, 0.1, 0.2]
    assert got.unmapped_outputs == {"extra": 1} and "'extra' (1)" in got.warnings()[0]
    named = read_capture(str(path), "sagemaker", {"features": [f"x{k}" for k in range(14)]}).columns
    assert named["x0"] == [0.0, 13.0, 0.0, 0.0]


def test_a_repeated_id_is_counted_with_its_places_and_its_later_rows_read_without_it(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(record({"data": f"{k},1", "encoding": "CSV"}, eventId="same") for k in range(3)) + "\n")
    got = read_capture(str(path), "sagemaker", {})
    assert got.columns["f0"] == [0.0, 1.0, 2.0]  # every prediction counted once
    assert got.columns["capture.id"] == ["same", None, None]
    assert got.duplicates == {"same": [f"{path}:2", f"{path}:3"]}
    assert "2 row(s) repeat an id" in " ".join(got.warnings()) and f"again at {path}:2" in " ".join(got.warnings())


def test_azureml_requests_sharing_a_correlation_id_are_each_read(tmp_path: Path) -> None:
    """50 requests under one correlationid (a client that reuses it): 50 rows, the k-th inputs with the k-th
    outputs, the id kept by the first."""
    inputs = [json.dumps({"type": "azureml.inference.model_inputs", "correlationid": "c", "data": [{"x": k}],
                          "time": "2026-11-02T08:00:00Z"}) for k in range(50)]
    outputs = [json.dumps({"type": "azureml.inference.model_outputs", "correlationid": "c", "data": [{"p": k}],
                           "time": "2026-11-02T08:00:00Z"}) for k in range(50)]
    (tmp_path / "in.jsonl").write_text("\n".join(inputs) + "\n")
    (tmp_path / "out.jsonl").write_text("\n".join(outputs) + "\n")
    got = read_capture(str(tmp_path), "azureml", {})
    assert got.columns["x"] == list(range(50)) and got.columns["prediction"] == list(range(50))
    assert len(got.duplicates["c"]) == 49


def test_a_record_size_limit_below_one_byte_is_refused_before_reading(tmp_path: Path) -> None:
    from otel_ml.cli import main

    path = tmp_path / "c.jsonl"
    path.write_text(record({"data": "1,2", "encoding": "CSV"}) + "\n")
    with pytest.raises(CaptureError, match="--max-record-bytes must be at least 1, got 0"):
        read_capture(str(path), "sagemaker", {}, max_record_bytes=0)
    assert main(["replay", "--format", "sagemaker", "--input", str(path), "--model", "m",
                 "--max-record-bytes", "0"]) == 2
