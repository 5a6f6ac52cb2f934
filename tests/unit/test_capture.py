"""Issue 35: SageMaker Data Capture records, Vertex AI request-response log rows and Azure ML data collector
files read into the table `otel-ml replay` sends."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from otel_ml.instrument.capture import CaptureError, load_mapping, read_capture

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "capture"


def test_the_shipped_sample_reads_as_six_predictions_with_their_ids_times_and_features() -> None:
    cols = read_capture(str(EXAMPLES / "sagemaker-data-capture.jsonl"), "sagemaker",
                        load_mapping(str(EXAMPLES / "sagemaker-mapping.json")))
    assert cols["capture.id"] == ["req-0", "req-1", "req-2", "7c3e5f1a-0b1d-4c7e-9a51-000000000003:0",
                                  "7c3e5f1a-0b1d-4c7e-9a51-000000000003:1", "req-4"]
    assert cols["region"] == ["north", "south", "north", "east", "west", "south"]  # CSV, JSON batch, base64
    assert cols["prediction.probability"] == [0.82, 0.35, 0.91, 0.12, 0.67, 0.05]
    assert cols["capture.time"][3] == cols["capture.time"][4] == "2026-11-02T08:24:40Z"


def record(inp: dict, out: dict | None = None, **meta: str) -> str:
    data = {"endpointInput": inp, **({"endpointOutput": out} if out else {})}
    return json.dumps({"captureData": data, "eventMetadata": {"eventId": "e", "inferenceTime": "2026-01-01T00:00:00Z",
                                                              **meta}})


def test_object_rows_and_object_outputs_are_named_by_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    outputs = {"predictions": [{"label": "yes", "p": 0.9}, {"label": "no", "p": 0.2}]}
    path.write_text(record({"data": json.dumps([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]), "encoding": "JSON"},
                           {"data": json.dumps(outputs), "encoding": "JSON"}) + "\n")
    cols = read_capture(str(path), "sagemaker", {"output_keys": {"label": "prediction", "p": "score"}})
    assert cols["a"] == [1, 2] and cols["prediction"] == ["yes", "no"] and cols["prediction.score"] == [0.9, 0.2]
    assert cols["capture.id"] == ["e:0", "e:1"]


@pytest.mark.parametrize("line, why", [
    (record({"data": "1,2", "encoding": "CSV"}, {"data": "0.1\n0.2", "encoding": "CSV"}), r"1 input row\(s\) but 2"),
    (record({"data": "%%%", "encoding": "BASE64"}), "not a SageMaker Data Capture record"),
    (json.dumps({"captureData": {}}), "no 'eventMetadata'"),
    (record({"data": "1", "encoding": "XML"}), "encoding 'XML'"),
])
def test_a_bad_record_is_an_error_naming_the_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(record({"data": "1,2", "encoding": "CSV"}) + "\n\n" + line + "\n")
    with pytest.raises(CaptureError, match=rf"c\.jsonl:3: .*{why}"):
        read_capture(str(path), "sagemaker", {})


def test_a_mapping_naming_an_unknown_output_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"outputs": ["probabilty"]}))
    with pytest.raises(CaptureError, match="'probabilty' is not one of prediction, score, probability"):
        load_mapping(str(path))


def test_the_shipped_vertex_sample_reads_list_and_object_instances_at_their_logging_times() -> None:
    cols = read_capture(str(EXAMPLES / "vertex-request-response.jsonl"), "vertex",
                        load_mapping(str(EXAMPLES / "vertex-mapping.json")))
    assert cols["capture.id"] == ["1201", "1202:0", "1202:1", "1203"]
    assert cols["region"] == ["north", "south", "east", "west"]  # list instances named by the mapping; an object
    assert cols["prediction.probability"] == [0.82, 0.35, 0.12, 0.67]  # lists by "outputs"; an object by its key
    assert cols["capture.time"][0] == "2026-11-02T08:24:38.117+00:00"  # BigQuery's "... UTC" as ISO 8601


def test_a_vertex_csv_export_holds_the_repeated_payloads_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "rr.csv"
    rows = [{"logging_time": "2026-11-02 08:00:00 UTC", "request_id": "1",
             "request_payload": json.dumps([json.dumps({"instances": [[1, 2], [3, 4]]})]),
             "response_payload": json.dumps([json.dumps({"predictions": [0.1, 0.9]})])}]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = read_capture(str(path), "vertex", {"features": ["a", "b"]})
    assert cols["a"] == [1, 3] and cols["prediction"] == [0.1, 0.9] and cols["capture.id"] == ["1:0", "1:1"]
    path.write_text(path.read_text() + "2026-11-02 08:00:01 UTC,2,[cut short,[]\n")
    with pytest.raises(CaptureError, match=r"rr\.csv:3: not a Vertex AI request-response log row"):
        read_capture(str(path), "vertex", {})


def test_the_shipped_azureml_directory_joins_inputs_and_outputs_by_correlation_id() -> None:
    cols = read_capture(str(EXAMPLES / "azureml"), "azureml", load_mapping(str(EXAMPLES / "azureml-mapping.json")))
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
    cols = read_capture(str(tmp_path), "azureml", mapping)
    assert cols["capture.id"] == ["c1:0", "c1:1"] and cols["age"] == [34, 51]
    assert cols["prediction"] == ["yes", "no"]
    with pytest.raises(CaptureError, match=r"part\.jsonl:1: .*no type, and no directory of its path is 'model_inputs'"):
        read_capture(str(tmp_path), "azureml", {})


def test_vertex_elements_that_are_plain_text_or_one_whole_request_are_read(tmp_path: Path) -> None:
    path = tmp_path / "rr.jsonl"
    path.write_text(json.dumps({"logging_time": "2026-11-02 08:00:00 UTC", "request_id": 9,
                                "request_payload": json.dumps({"instances": [{"a": 1}, {"a": 2}]}),
                                "response_payload": ["yes", "no"]}) + "\n")
    cols = read_capture(str(path), "vertex", {})
    assert cols["a"] == [1, 2] and cols["prediction"] == ["yes", "no"] and cols["capture.id"] == ["9:0", "9:1"]
