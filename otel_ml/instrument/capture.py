"""Predictions an ML platform already captured, as a table ``otel-ml replay`` sends: no change to the serving code.

SageMaker Data Capture (``--format sagemaker``) writes JSON Lines, one record per request, as AWS documents it::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "34,52000,north", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.82", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "b1b2...", "inferenceId": "req-7", "inferenceTime": "2026-11-02T08:24:40Z"},
     "eventVersion": "0"}

``encoding`` is CSV, JSON or BASE64 (the payload base64-encoded, its content type saying CSV or JSON). A CSV
payload holds one row per line (a batch request: several); a JSON input is ``{"instances": [...]}``, ``{"inputs":
[...]}``, a list of rows or one row, each row a list (named by the mapping) or an object (named by its keys); a
JSON output is ``{"predictions": [...]}``, a list or one value, each a number or text (the prediction) or an
object (its keys picked by the mapping).

The mapping (``--mapping FILE``, JSON) names what the payloads leave unnamed::

    {"features": ["age", "income", "region"],          # a CSV/list row's columns, in order (default f0, f1, ...)
     "outputs": ["probability"],                       # a CSV/list output's values: prediction, score, probability
     "output_keys": {"predicted_label": "prediction", "score": "probability"}}  # an object output's keys

Each row becomes one prediction at ``inferenceTime`` with the id ``inferenceId`` (else ``eventId``), suffixed
``:<row>`` when a request held several, so labels sent later (``otel-ml labels send``) join it. A record that
cannot be read is an error naming the file and line.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from pathlib import Path
from typing import Any

from otel_ml import semconv

OUTPUT_NAMES = {"prediction": semconv.PREDICTION_FEATURE, "score": semconv.PREDICTION_SCORE_FEATURE,
                "probability": semconv.PREDICTION_PROBABILITY_FEATURE}
"""What a mapping's ``outputs``/``output_keys`` may name, and the column each becomes."""
TIME_COLUMN = "capture.time"
ID_COLUMN = "capture.id"
FORMATS = ("sagemaker",)


class CaptureError(ValueError):
    """A capture file that cannot be read: the message names the file and line."""


def load_mapping(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CaptureError(f"{path}: not a readable JSON mapping: {e}") from e
    if not isinstance(mapping, dict) or set(mapping) - {"features", "outputs", "output_keys"}:
        raise CaptureError(f"{path}: a mapping is an object with features, outputs and output_keys")
    for name in [*mapping.get("outputs", []), *mapping.get("output_keys", {}).values()]:
        if name not in OUTPUT_NAMES:
            raise CaptureError(f"{path}: output {name!r} is not one of {', '.join(OUTPUT_NAMES)}")
    return mapping


def _payload(part: dict[str, Any]) -> tuple[str, str]:
    """(kind "csv"/"json", text) of an endpointInput/endpointOutput."""
    data, encoding = part["data"], str(part.get("encoding", "CSV")).upper()
    content = str(part.get("observedContentType", "")).lower()
    if encoding == "BASE64":
        data = base64.b64decode(data, validate=True).decode("utf-8")
        return ("json" if "json" in content else "csv"), data
    if encoding not in ("CSV", "JSON"):
        raise ValueError(f"encoding {encoding!r} (CSV, JSON or BASE64)")
    return encoding.lower(), data


def _cell(text: str) -> Any:
    """A CSV cell: a number when it reads as one, else text ("" missing)."""
    try:
        return float(text)
    except ValueError:
        return text.strip() or None


def _input_rows(kind: str, text: str, names: list[str]) -> list[dict[str, Any]]:
    if kind == "csv":
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
        return [{(names[k] if k < len(names) else f"f{k}"): _cell(v) for k, v in enumerate(r)} for r in rows]
    doc = json.loads(text)
    if isinstance(doc, dict):
        doc = doc.get("instances", doc.get("inputs", [doc]))
    rows = doc if isinstance(doc, list) and doc and isinstance(doc[0], (list, dict)) else [doc]
    out = []
    for r in rows:
        if isinstance(r, dict):
            out.append(dict(r))
        elif isinstance(r, list):
            out.append({(names[k] if k < len(names) else f"f{k}"): v for k, v in enumerate(r)})
        else:
            raise ValueError(f"an input row is a {type(r).__name__}, not a list or an object")
    return out


def _output_rows(kind: str, text: str, mapping: dict[str, Any]) -> list[dict[str, Any]]:
    outputs = [OUTPUT_NAMES[n] for n in mapping.get("outputs", ["prediction"])]
    keys = {k: OUTPUT_NAMES[v] for k, v in mapping.get("output_keys", {}).items()}
    if kind == "csv":
        values = [[_cell(v) for v in r] for r in csv.reader(io.StringIO(text)) if r]
        if len(values) == 1 and len(values[0]) > 1 and len(outputs) == 1:
            values = [[v] for v in values[0]]  # one output per row of a batch, on one line
    else:
        doc = json.loads(text)
        if isinstance(doc, dict) and "predictions" in doc:
            doc = doc["predictions"]
        values = doc if isinstance(doc, list) else [doc]
    out = []
    for v in values:
        if isinstance(v, dict):
            out.append({column: v[key] for key, column in keys.items() if key in v})
        else:
            items = v if isinstance(v, list) else [v]
            out.append({column: x for column, x in zip(outputs, items)})
    return out


def read_sagemaker(path: str, mapping: dict[str, Any]) -> dict[str, list[Any]]:
    """The rows of a SageMaker Data Capture file as columns: ``capture.time``, ``capture.id``, the features, the
    outputs (``prediction``, ``prediction.score``, ``prediction.probability``)."""
    names = list(mapping.get("features", []))
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                meta = record["eventMetadata"]
                data = record["captureData"]
                at, event = meta["inferenceTime"], str(meta.get("inferenceId") or meta["eventId"])
                inputs = _input_rows(*_payload(data["endpointInput"]), names)
                outputs = _output_rows(*_payload(data["endpointOutput"]), mapping) if "endpointOutput" in data \
                    else [{} for _ in inputs]
                if len(outputs) != len(inputs):
                    raise ValueError(f"{len(inputs)} input row(s) but {len(outputs)} output(s)")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error, UnicodeDecodeError) as e:
                what = f"no {e}" if isinstance(e, KeyError) else str(e).split("\n")[0]
                raise CaptureError(f"{path}:{line_no}: not a SageMaker Data Capture record ({what})") from None
            for k, (x, y) in enumerate(zip(inputs, outputs)):
                rows.append({TIME_COLUMN: at, ID_COLUMN: event if len(inputs) == 1 else f"{event}:{k}", **x, **y})
    if not rows:
        raise CaptureError(f"{path}: no capture records")
    columns: dict[str, list[Any]] = {}
    for k, row in enumerate(rows):
        for name in row:
            columns.setdefault(name, [None] * k)
        for name, values in columns.items():
            values.append(row.get(name))
    return columns


def read_capture(path: str, capture_format: str, mapping: dict[str, Any]) -> dict[str, list[Any]]:
    if capture_format == "sagemaker":
        return read_sagemaker(path, mapping)
    raise CaptureError(f"capture format {capture_format!r}: one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "CaptureError", "load_mapping", "read_capture"]
