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

Vertex AI request-response logging (``--format vertex``) writes rows to a BigQuery table (``endpoint``,
``deployed_model_id``, ``logging_time``, ``request_id``, ``request_payload`` and ``response_payload``, both
repeated strings: each a JSON instance or prediction). Exported as JSON Lines (``bq extract
--destination_format NEWLINE_DELIMITED_JSON``)::

    {"endpoint": "projects/1/locations/us-central1/endpoints/2", "deployed_model_id": "3",
     "logging_time": "2026-11-02 08:24:40.123 UTC", "request_id": "7718",
     "request_payload": ["[34, 52000, \\"north\\"]"], "response_payload": ["0.82"]}

or as CSV (BigQuery exports repeated fields to CSV only as JSON text: ``TO_JSON_STRING(request_payload)``), the
same columns. An element may also hold a whole request (``{"instances": [...]}``) or response (``{"predictions":
[...]}``). Each instance is a row at ``logging_time``, id ``request_id`` (``:<row>`` when several).

Azure ML's data collector (``--format azureml``, ``azureml-ai-monitoring``'s ``Collector``) writes JSON Lines to
blob storage, model inputs and model outputs in separate collections (``.../model_inputs/YYYY/MM/DD/HH/*.jsonl``
and ``.../model_outputs/...``), one line per call::

    {"specversion": "1.0", "id": "...", "type": "azureml.inference.model_inputs",
     "time": "2026-11-02T08:24:40Z", "data": [{"age": 34, "income": 52000}],
     "correlationid": "5b2c...", "xrequestid": "...", "modelversion": "3"}

``data`` is a list of rows (a DataFrame's records), or one row. Inputs and outputs are joined by
``correlationid``, row by row; an output row's keys are named by the mapping's ``output_keys`` (a row with one
key: the prediction). Each joined row is a prediction at the inputs' ``time`` with the id ``correlationid``
(``:<row>`` when several).

``--input`` may name a directory: every ``*.jsonl`` (``*.json``, ``*.csv`` for vertex) under it is read, in path
order, as if one file (the platforms write one file per hour or so).
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
FORMATS = ("sagemaker", "vertex", "azureml")


class CaptureError(ValueError):
    """A capture file that cannot be read: the message names the file and line."""


def load_mapping(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CaptureError(f"{path}: not a readable JSON mapping: {e}") from e
    if not isinstance(mapping, dict) or set(mapping) - {"features", "outputs", "output_keys", "collections"}:
        raise CaptureError(f"{path}: a mapping is an object with features, outputs, output_keys and (azureml) "
                           "collections")
    collections = mapping.get("collections", {})
    if not isinstance(collections, dict) or set(collections) - {"inputs", "outputs"} or \
            not all(isinstance(v, str) and v for v in collections.values()):
        raise CaptureError(f'{path}: collections names the inputs and outputs collections, e.g. {{"inputs": '
                           '"model_inputs", "outputs": "model_outputs"}')
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
    if kind == "csv":
        values = [[_cell(v) for v in r] for r in csv.reader(io.StringIO(text)) if r]
        if len(values) == 1 and len(values[0]) > 1 and len(mapping.get("outputs", ["prediction"])) == 1:
            values = [[v] for v in values[0]]  # one output per row of a batch, on one line
    else:
        doc = json.loads(text)
        if isinstance(doc, dict) and "predictions" in doc:
            doc = doc["predictions"]
        values = doc if isinstance(doc, list) else [doc]
    return _outputs(values, mapping)


def _outputs(values: list[Any], mapping: dict[str, Any]) -> list[dict[str, Any]]:
    """Each output (a value, a list of values or an object) as the columns the mapping names."""
    outputs = [OUTPUT_NAMES[n] for n in mapping.get("outputs", ["prediction"])]
    keys = {k: OUTPUT_NAMES[v] for k, v in mapping.get("output_keys", {}).items()}
    out = []
    for v in values:
        if isinstance(v, dict):
            if not keys and len(v) == 1:  # one unnamed output: the prediction
                out.append({semconv.PREDICTION_FEATURE: next(iter(v.values()))})
            else:
                out.append({column: v[key] for key, column in keys.items() if key in v})
        else:
            items = v if isinstance(v, list) else [v]
            out.append({column: x for column, x in zip(outputs, items)})
    return out


def capture_files(path: str, suffixes: tuple[str, ...] = (".jsonl", ".json")) -> list[Path]:
    """``path``, or every file with one of ``suffixes`` under the directory ``path``, in path order."""
    p = Path(path)
    if not p.is_dir():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes)
    if not files:
        raise CaptureError(f"{path}: no {'/'.join(suffixes)} files in this directory")
    return files


def _lines(path: str, suffixes: tuple[str, ...] = (".jsonl", ".json")):
    """(file, line number, line) of every non-blank line of the capture file(s) at ``path``."""
    for f in capture_files(path, suffixes):
        try:
            with open(f, encoding="utf-8") as lines:
                for line_no, line in enumerate(lines, start=1):
                    if line.strip():
                        yield f, line_no, line
        except (OSError, UnicodeDecodeError) as e:
            raise CaptureError(f"{f}: cannot be read ({e})") from None


def _columns(path: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    if not rows:
        raise CaptureError(f"{path}: no capture records")
    columns: dict[str, list[Any]] = {}
    for k, row in enumerate(rows):
        for name in row:
            columns.setdefault(name, [None] * k)
        for name, values in columns.items():
            values.append(row.get(name))
    return columns


def read_sagemaker(path: str, mapping: dict[str, Any]) -> dict[str, list[Any]]:
    """The rows of SageMaker Data Capture file(s) as columns: ``capture.time``, ``capture.id``, the features, the
    outputs (``prediction``, ``prediction.score``, ``prediction.probability``)."""
    names = list(mapping.get("features", []))
    rows: list[dict[str, Any]] = []
    for f, line_no, line in _lines(path):
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
            raise CaptureError(f"{f}:{line_no}: not a SageMaker Data Capture record ({_why(e)})") from None
        for k, (x, y) in enumerate(zip(inputs, outputs)):
            rows.append({TIME_COLUMN: at, ID_COLUMN: event if len(inputs) == 1 else f"{event}:{k}", **x, **y})
    return _columns(path, rows)


def _why(e: Exception) -> str:
    return f"no {e}" if isinstance(e, KeyError) else str(e).split("\n")[0]


def _vertex_elements(value: Any) -> list[Any]:
    """A repeated payload cell: a list (JSON Lines), or JSON text of one (a CSV export's TO_JSON_STRING); each
    element JSON text (an instance, a prediction, or a whole request/response), else taken as plain text. A cell
    holding one request or response rather than a list of them is read as one element."""
    if isinstance(value, str):
        value = json.loads(value)
    elements = value if isinstance(value, list) else [value]
    return [_json_or_text(v) if isinstance(v, str) else v for v in elements]


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a text instance or prediction logged as it was


def _vertex_row(row: dict[str, Any], names: list[str], mapping: dict[str, Any]) -> list[dict[str, Any]]:
    instances: list[Any] = []
    for element in _vertex_elements(row["request_payload"]):
        instances += element["instances"] if isinstance(element, dict) and "instances" in element else [element]
    predictions: list[Any] = []
    for element in _vertex_elements(row.get("response_payload") or []):
        predictions += element["predictions"] if isinstance(element, dict) and "predictions" in element \
            else [element]
    inputs = []
    for instance in instances:
        if isinstance(instance, dict):
            inputs.append(dict(instance))
        elif isinstance(instance, list):
            inputs.append({(names[k] if k < len(names) else f"f{k}"): v for k, v in enumerate(instance)})
        else:
            inputs.append({names[0] if names else "f0": instance})
    outputs = _outputs(predictions, mapping) if predictions else [{} for _ in inputs]
    if len(outputs) != len(inputs):
        raise ValueError(f"{len(inputs)} instance(s) but {len(outputs)} prediction(s)")
    at = str(row["logging_time"]).strip()
    if at.endswith(" UTC"):  # BigQuery's text for a TIMESTAMP
        at = at[:-4].replace(" ", "T") + "+00:00"
    event = str(row["request_id"])
    return [{TIME_COLUMN: at, ID_COLUMN: event if len(inputs) == 1 else f"{event}:{k}", **x, **y}
            for k, (x, y) in enumerate(zip(inputs, outputs))]


def read_vertex(path: str, mapping: dict[str, Any]) -> dict[str, list[Any]]:
    """The rows of Vertex AI request-response log exports (JSON Lines or CSV) as columns."""
    names = list(mapping.get("features", []))
    rows: list[dict[str, Any]] = []
    for f in capture_files(path, (".jsonl", ".json", ".csv")):
        if f.suffix == ".csv":
            try:
                with open(f, encoding="utf-8", newline="") as handle:
                    records = [(k + 2, r) for k, r in enumerate(csv.DictReader(handle))]
            except (OSError, UnicodeDecodeError, csv.Error) as e:
                raise CaptureError(f"{f}: cannot be read ({e})") from None
        else:
            records = [(line_no, line) for _, line_no, line in _lines(str(f))]
        for line_no, record in records:
            try:
                row = json.loads(record) if isinstance(record, str) else record
                if not isinstance(row, dict):
                    raise ValueError("a row is an object")
                rows += _vertex_row(row, names, mapping)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise CaptureError(f"{f}:{line_no}: not a Vertex AI request-response log row ({_why(e)})") from None
    return _columns(path, rows)


def _azureml_rows(data: Any) -> list[dict[str, Any]]:
    """A record's ``data`` as rows: a list of row objects (a DataFrame's records), one row object, a DataFrame's
    columns (``{"age": [34, 51], ...}``), or JSON text of any of these.

    >>> _azureml_rows({"a": [1, 2], "b": ["x", "y"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    if isinstance(data, str):
        data = json.loads(data)
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ValueError("data's columns differ in length")
        return [dict(zip(data, values)) for values in zip(*data.values())]
    rows = data if isinstance(data, list) else [data]
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("data is a list of row objects (or a DataFrame's columns)")
    return [dict(r) for r in rows]


def read_azureml(path: str, mapping: dict[str, Any]) -> dict[str, list[Any]]:
    """The rows of Azure ML data collector files (model inputs and outputs, joined by correlation id)."""
    inputs: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    outputs: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    order: list[str] = []
    names = {"inputs": "model_inputs", "outputs": "model_outputs", **mapping.get("collections", {})}
    for f, line_no, line in _lines(path):
        try:
            record = json.loads(line)
            correlation = str(record["correlationid"])
            # The collection: the record's type (azureml.inference.<collection>), else a directory of its path.
            kind = str(record.get("type") or "").rpartition(".")[2] or next(
                (part for part in reversed(f.parts) if part in names.values()), "")
            data = _azureml_rows(record["data"])
            if kind == names["inputs"]:
                if correlation not in inputs:
                    order.append(correlation)
                inputs[correlation] = (str(record["time"]), data)
            elif kind == names["outputs"]:
                outputs[correlation] = (f"{f}:{line_no}", _outputs(data, mapping))
            elif kind:
                raise ValueError(f"collection {kind!r} is neither {names['inputs']!r} nor {names['outputs']!r} "
                                 "(the mapping's collections can name others)")
            else:
                raise ValueError(f"no type, and no directory of its path is {names['inputs']!r} or "
                                 f"{names['outputs']!r} (the mapping's collections can name others)")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CaptureError(f"{f}:{line_no}: not an Azure ML data collector record ({_why(e)})") from None
    for correlation, (where, _) in outputs.items():
        if correlation not in inputs:
            raise CaptureError(f"{where}: outputs of correlation id {correlation!r} without its inputs (read the "
                               "model_inputs files too: --input their common directory)")
    rows: list[dict[str, Any]] = []
    for correlation in order:
        at, xs = inputs[correlation]
        where, ys = outputs.get(correlation, ("", [{} for _ in xs]))
        if len(ys) != len(xs):
            raise CaptureError(f"{where}: {len(xs)} input row(s) but {len(ys)} output row(s) for correlation id "
                               f"{correlation!r}")
        rows += [{TIME_COLUMN: at, ID_COLUMN: correlation if len(xs) == 1 else f"{correlation}:{k}", **x, **y}
                 for k, (x, y) in enumerate(zip(xs, ys))]
    return _columns(path, rows)


def read_capture(path: str, capture_format: str, mapping: dict[str, Any]) -> dict[str, list[Any]]:
    readers = {"sagemaker": read_sagemaker, "vertex": read_vertex, "azureml": read_azureml}
    if capture_format in readers:
        return readers[capture_format](path, mapping)
    raise CaptureError(f"capture format {capture_format!r}: one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "CaptureError", "capture_files", "load_mapping", "read_capture"]
