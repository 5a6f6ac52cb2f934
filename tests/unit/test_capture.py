"""Issue 35: SageMaker Data Capture records read into the table `otel-ml replay` sends."""

from __future__ import annotations

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
