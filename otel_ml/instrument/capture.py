"""Predictions an ML platform already captured, as a table ``otel-ml replay`` sends and ``otel-ml baseline build``
profiles: no change to the serving code. docs/capture.md lists every variant read and what each becomes.

SageMaker Data Capture (``--format sagemaker``) writes JSON Lines, one record per request, as AWS documents it::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "34,52000,north", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.82", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "b1b2...", "inferenceId": "req-7", "inferenceTime": "2026-11-02T08:24:40Z"},
     "eventVersion": "0"}

``encoding`` is CSV, JSON or BASE64 (the payload base64-encoded, its content type saying CSV or JSON). A CSV
payload holds one row per line; a JSON payload (``application/jsonlines``: one per line) is ``{"instances":
[...]}``, ``{"inputs": [...]}``, a list of rows or one row; each row a list (named by the mapping), an object (named
by its keys; ``{"features": [...]}`` is a list row) or one value. A JSON output is ``{"predictions": [...]}``, a
list or one value, each a number or text (the prediction) or an object (its keys picked by the mapping, else the
usual names: ``predicted_label``, ``score``, ``probability``...).

The mapping (``--mapping FILE``, JSON) names what the payloads leave unnamed::

    {"features": ["age", "income", "region"],          # a CSV/list row's columns, in order (default f0, f1, ...)
     "outputs": ["probability"],                       # a CSV/list output's values: prediction, score, probability
     "output_keys": {"predicted_label": "prediction", "score": "probability"}}  # an object output's keys

Vertex AI request-response logging (``--format vertex``) writes BigQuery rows (``logging_time``, ``request_id``,
``request_payload`` and ``response_payload``: repeated JSON strings of instances and predictions), exported as
JSON Lines or CSV. Rows of publisher (Gemini) models carry ``full_request``/``full_response`` (a
GenerateContentRequest/Response; streamed: the response's chunks in ``response_payload``) instead: they become
text-derived features (characters, parts and tokens of prompt and response, finish reason, model), never the text.

Azure ML's data collector (``--format azureml``) writes JSON Lines per collection (``model_inputs`` and
``model_outputs``, or payload logging's ``request`` and ``response``), joined by ``correlationid``: the k-th
inputs record of an id with its k-th outputs record.

One bad record never sinks the rest: a record that cannot be read, is longer than ``max_record_bytes``, holds more
than ``max_columns`` values in a row or a time the processor would refuse is skipped and reported with its file and
line (``CaptureTable.refused``); the other rows are read. Each row is a prediction at the record's time with its id
(``:<row>`` appended when a request held several); an id seen again is counted with its places, and the later rows
are read without it (a label names one prediction; which of two it meant is unknowable).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_ml import semconv
from otel_ml.instrument.monitor import event_time_ns
from otel_ml.instrument.times import check_event_time

OUTPUT_NAMES = {"prediction": semconv.PREDICTION_FEATURE, "score": semconv.PREDICTION_SCORE_FEATURE,
                "probability": semconv.PREDICTION_PROBABILITY_FEATURE}
"""What a mapping's ``outputs``/``output_keys`` may name, and the column each becomes."""
KNOWN_OUTPUT_KEYS = {"predicted_label": "prediction", "prediction": "prediction", "label": "prediction",
                     "predicted_value": "prediction", "class": "prediction", "score": "score",
                     "probability": "probability"}
"""Keys of an object output read without ``output_keys`` (SageMaker's built-in algorithms, Clarify, MLflow)."""
TIME_COLUMN = "capture.time"
ID_COLUMN = "capture.id"
FORMATS = ("sagemaker", "vertex", "azureml")
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A longer record (line) is refused, not read: a 120 MB record would cost gigabytes as Python objects."""
MAX_COLUMNS = 2_000
"""Values in one row at most: the processor's ``limits.max_features_per_span`` default (a span past it is rejected
whole, with every row it carries)."""
EXAMPLES = 5
"""Places shown per kind of problem."""


class CaptureError(ValueError):
    """A capture that cannot be read at all (no readable record): the message names the file and line."""


@dataclass
class CaptureTable:
    """What a capture held: its rows as ``columns`` (``capture.time`` in Unix ns, ``capture.id``, the features,
    the outputs) and what was not read, with where."""

    columns: dict[str, list[Any]]
    records: int
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(FILE:LINE, why) of each record (or row) skipped."""
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    """An id seen more than once → the places of its later rows (read without the id)."""
    unmapped_outputs: Counter[str] = field(default_factory=Counter)
    """Keys of object outputs that are neither mapped nor a known output name (dropped), and how often."""

    @property
    def rows(self) -> int:
        return len(self.columns.get(TIME_COLUMN, []))

    def warnings(self) -> list[str]:
        """One line per kind of problem, with up to ``EXAMPLES`` places."""
        out = []
        if self.refused:
            reasons = Counter(why.split(" (")[0] for _, why in self.refused)
            out.append(f"{len(self.refused)} record(s) or row(s) refused ("
                       + ", ".join(f"{why}: {n}" for why, n in reasons.most_common(EXAMPLES)) + "):\n"
                       + "\n".join(f"  {where}: {why}" for where, why in self.refused[:EXAMPLES]))
        if self.duplicates:
            shown = ", ".join(f"{i!r} ×{len(w) + 1} (again at {w[0]})" for i, w in list(self.duplicates.items())
                              [:EXAMPLES])
            out.append(f"{sum(len(w) for w in self.duplicates.values())} row(s) repeat an id already read: {shown}. "
                       "They are read without it: a label names one prediction, and which of them it meant is "
                       "unknowable; give each request its own id (SageMaker: InferenceId)")
        if self.unmapped_outputs:
            keys = ", ".join(f"{k!r} ({n})" for k, n in self.unmapped_outputs.most_common(EXAMPLES))
            out.append(f"output key(s) not read: {keys}; name them in the mapping's output_keys (prediction, score "
                       "or probability)")
        return out


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


# --- payloads -------------------------------------------------------------------------------------------------
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


def _json_documents(text: str) -> list[Any]:
    """A JSON payload: one document, or several one after another (``application/jsonlines``)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            break
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    if not docs:
        raise ValueError("an empty JSON payload")
    return docs


def _named(values: list[Any], names: list[str]) -> dict[str, Any]:
    return {(names[k] if k < len(names) else f"f{k}"): v for k, v in enumerate(values)}


def _row(instance: Any, names: list[str]) -> dict[str, Any]:
    """One instance as a row: a list (named by ``names``), an object (its keys; ``{"features": [...]}``, the
    Clarify / Linear Learner form, is its list), or one value (the first name)."""
    if isinstance(instance, dict):
        if len(instance) == 1 and isinstance(next(iter(instance.values())), list):
            return _named(next(iter(instance.values())), names)
        return dict(instance)
    if isinstance(instance, list):
        return _named(instance, names)
    return _named([instance], names)


def _instances(doc: Any) -> tuple[list[Any], bool]:
    """A JSON input document's instances, and whether they were named as such (``instances``/``inputs``/``data``:
    each element one row, a scalar too) rather than a bare list (one row of values, or rows)."""
    if isinstance(doc, dict):
        for key in ("instances", "inputs", "data", "input_data"):
            if key in doc:
                inner = doc[key]
                if isinstance(inner, dict) and "data" in inner:  # pandas "split": {"columns": [...], "data": [...]}
                    return inner["data"], True
                return (inner if isinstance(inner, list) else [inner]), True
        return [doc], True
    if isinstance(doc, list) and doc and all(isinstance(r, (list, dict)) for r in doc):
        return doc, True
    return [doc], False


def _columns_of(doc: Any) -> list[str]:
    """The column names a pandas "split" document carries (``{"columns": [...], "data": [...]}``)."""
    if isinstance(doc, dict):
        inner = next((doc[k] for k in ("input_data", "data") if isinstance(doc.get(k), dict)), doc)
        if isinstance(inner, dict) and isinstance(inner.get("columns"), list):
            return [str(c) for c in inner["columns"]]
    return []


def _input_rows(kind: str, text: str, names: list[str]) -> list[dict[str, Any]]:
    if kind == "csv":
        return [_named([_cell(v) for v in r], names) for r in csv.reader(io.StringIO(text)) if r]
    rows = []
    for doc in _json_documents(text):
        instances, _ = _instances(doc)
        rows += [_row(i, _columns_of(doc) or names) for i in instances]
    return rows


def _output_values(kind: str, text: str, mapping: dict[str, Any]) -> list[Any]:
    if kind == "csv":
        values = [[_cell(v) for v in r] for r in csv.reader(io.StringIO(text)) if r]
        if len(values) == 1 and len(values[0]) > 1 and len(mapping.get("outputs", ["prediction"])) == 1:
            values = [[v] for v in values[0]]  # one output per row of a batch, on one line
        return values
    out: list[Any] = []
    for doc in _json_documents(text):
        out += _predictions(doc)
    return out


def _predictions(doc: Any) -> list[Any]:
    """A JSON response's predictions: ``{"predictions": [...]}``, any one-key object holding a list (``{"scores":
    [{"score": 0.8}]}``, Random Cut Forest's), a list, or one value."""
    if isinstance(doc, dict) and "predictions" in doc:
        doc = doc["predictions"]
    elif isinstance(doc, dict) and len(doc) == 1 and isinstance(next(iter(doc.values())), list):
        doc = next(iter(doc.values()))
    return doc if isinstance(doc, list) else [doc]


def _outputs(values: list[Any], mapping: dict[str, Any], unmapped: Counter[str]) -> list[dict[str, Any]]:
    """Each output (a value, a list of values or an object) as the columns the mapping names; an object's keys
    neither mapped nor known are counted in ``unmapped``."""
    outputs = [OUTPUT_NAMES[n] for n in mapping.get("outputs", ["prediction"])]
    mapped = mapping.get("output_keys", {})
    out = []
    for v in values:
        if isinstance(v, dict):
            if not mapped and len(v) == 1 and next(iter(v)) not in KNOWN_OUTPUT_KEYS:  # one output: the prediction
                out.append({semconv.PREDICTION_FEATURE: next(iter(v.values()))})
                continue
            row = {}
            for key, value in v.items():
                name = mapped.get(key) if mapped else KNOWN_OUTPUT_KEYS.get(key)
                if name is None or OUTPUT_NAMES[name] in row:
                    unmapped[key] += 1
                else:
                    row[OUTPUT_NAMES[name]] = value
            out.append(row)
        else:
            items = v if isinstance(v, list) else [v]
            out.append({column: x for column, x in zip(outputs, items)})
    return out


def _pair(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], bare_scalars: bool) -> list[dict[str, Any]]:
    """Input rows with their outputs. A bare list of values read as one row whose outputs are as many as its
    values is a batch of one-value instances (``[1.0, 2.0, 5.0]`` → three predictions)."""
    if bare_scalars and len(inputs) == 1 and len(outputs) == len(inputs[0]) > 1:
        first = next(iter(inputs[0]))
        inputs = [{first: value} for value in inputs[0].values()]
    if not outputs:
        outputs = [{} for _ in inputs]
    if len(outputs) != len(inputs):
        raise ValueError(f"{len(inputs)} input row(s) but {len(outputs)} output(s)")
    return [{**x, **y} for x, y in zip(inputs, outputs)]


# --- files ----------------------------------------------------------------------------------------------------
def capture_files(path: str, suffixes: tuple[str, ...] = (".jsonl", ".json")) -> list[Path]:
    """``path``, or every file with one of ``suffixes`` under the directory ``path``, in path order."""
    p = Path(path)
    if not p.is_dir():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes)
    if not files:
        raise CaptureError(f"{path}: no {'/'.join(suffixes)} files in this directory")
    return files


class _Capture:
    """Rows read so far, and what was refused, with where."""

    def __init__(self, path: str, max_record_bytes: int, max_columns: int) -> None:
        self.path, self.max_record_bytes, self.max_columns = path, max_record_bytes, max_columns
        self.columns: dict[str, list[Any]] = {}  # built row by row: no second copy of the rows
        self.rows = 0
        self.seen: set[str] = set()
        self.duplicates: dict[str, list[str]] = {}
        self.refused: list[tuple[str, str]] = []
        self.unmapped: Counter[str] = Counter()
        self.records = 0

    def lines(self, suffixes: tuple[str, ...] = (".jsonl", ".json")) -> Iterator[tuple[Path, int, str]]:
        """(file, line number, line) of every non-blank line; a line over the size limit is refused unread."""
        for f in capture_files(self.path, suffixes):
            try:
                with open(f, "rb") as lines:
                    line_no = 0
                    while chunk := lines.readline(self.max_record_bytes + 1):
                        line_no += 1
                        if len(chunk) > self.max_record_bytes and not chunk.endswith(b"\n"):
                            while (rest := lines.readline(1 << 20)) and not rest.endswith(b"\n"):
                                pass  # the rest of the long line, skipped a megabyte at a time
                            self.refuse(f"{f}:{line_no}", f"record longer than {self.max_record_bytes:,} bytes "
                                                          "(--max-record-bytes)")
                            continue
                        if chunk.strip():
                            self.records += 1
                            yield f, line_no, chunk.decode("utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise CaptureError(f"{f}: cannot be read ({e})") from None

    def refuse(self, where: str, why: str) -> None:
        self.refused.append((where, why))

    def add(self, where: str, at: Any, event: str, rows: list[dict[str, Any]]) -> None:
        """The rows of one record at time ``at`` with id ``event``; a row too wide or a time the processor would
        refuse is refused here, with its place."""
        try:
            at_ns = check_event_time(event_time_ns(at))
        except (TypeError, ValueError, OverflowError) as e:
            self.refuse(where, f"time {at!r} refused ({e})")
            return
        for k, row in enumerate(rows):
            place = where if len(rows) == 1 else f"{where} row {k}"
            if len(row) > self.max_columns:
                self.refuse(place, f"{len(row):,} values in one row (at most {self.max_columns:,}: the processor's "
                                   "limits.max_features_per_span)")
                continue
            ident: str | None = event if len(rows) == 1 else f"{event}:{k}"
            if ident in self.seen:
                self.duplicates.setdefault(ident, []).append(place)
                ident = None
            else:
                self.seen.add(ident)
            self._append({TIME_COLUMN: at_ns, ID_COLUMN: ident, **row})

    def _append(self, row: dict[str, Any]) -> None:
        columns = self.columns
        for name in row:
            if name not in columns:  # not setdefault: its [None] * rows would be built for every row (n²)
                columns[name] = [None] * self.rows
        for name, values in columns.items():
            values.append(row.get(name))
        self.rows += 1

    def table(self) -> CaptureTable:
        if not self.rows:
            shown = "; ".join(f"{w}: {why}" for w, why in self.refused[:3])
            raise CaptureError(f"{self.path}: no capture record could be read" + (f" ({shown})" if shown else ""))
        return CaptureTable(self.columns, self.records, self.refused, self.duplicates, self.unmapped)


def _why(e: Exception) -> str:
    return f"no {e}" if isinstance(e, KeyError) else str(e).split("\n")[0]


_UNREADABLE = (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError, binascii.Error,
               UnicodeDecodeError, RecursionError)


# --- SageMaker ------------------------------------------------------------------------------------------------
def read_sagemaker(capture: _Capture, mapping: dict[str, Any]) -> None:
    names = list(mapping.get("features", []))
    for f, line_no, line in capture.lines():
        try:
            record = json.loads(line)
            meta = record["eventMetadata"]
            data = record["captureData"]
            at, event = meta["inferenceTime"], str(meta.get("inferenceId") or meta["eventId"])
            kind, text = _payload(data["endpointInput"])
            inputs = _input_rows(kind, text, names)
            bare = kind == "json" and not _instances(_json_documents(text)[0])[1]
            outputs = _outputs(_output_values(*_payload(data["endpointOutput"]), mapping), mapping,
                               capture.unmapped) if "endpointOutput" in data else []
            rows = _pair(inputs, outputs, bare)
        except _UNREADABLE as e:
            capture.refuse(f"{f}:{line_no}", f"not a SageMaker Data Capture record ({_why(e)})")
            continue
        capture.add(f"{f}:{line_no}", at, event, rows)


# --- Vertex AI ------------------------------------------------------------------------------------------------
def _vertex_elements(value: Any) -> list[Any]:
    """A repeated payload cell: a list (JSON Lines), or JSON text of one (a CSV export's TO_JSON_STRING); each
    element JSON text (an instance, a prediction, or a whole request/response), else taken as plain text."""
    if isinstance(value, str):
        value = json.loads(value)
    elements = value if isinstance(value, list) else [value]
    return [_json_or_text(v) if isinstance(v, str) else v for v in elements]


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a text instance or prediction logged as it was


def _json_cell(value: Any) -> Any:
    """A BigQuery JSON column: the object, or its text (a CSV export, or JSON Lines of a STRING column)."""
    return json.loads(value) if isinstance(value, str) and value.strip() else value


def _texts(parts: Any) -> list[str]:
    return [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]


GENERATIVE_FEATURES = (semconv.GENAI_PROMPT_CHARACTERS, "gen_ai.prompt.parts", semconv.GENAI_RESPONSE_CHARACTERS,
                       semconv.GENAI_INPUT_TOKENS, semconv.GENAI_OUTPUT_TOKENS, semconv.GENAI_FINISH_REASON,
                       "gen_ai.request.model")
"""What a publisher model's row becomes (the text itself is never kept)."""


def _generative_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Gemini (publisher model) row's text-derived features: its request's prompt characters and parts, its
    response's characters, token counts and finish reason (a streamed response: its chunks, joined)."""
    request = _json_cell(row.get("full_request"))
    response = _json_cell(row.get("full_response"))
    chunks = [response] if isinstance(response, dict) else [
        c for c in _vertex_elements(row.get("response_payload") or []) if isinstance(c, dict)]
    out: dict[str, Any] = {}
    if isinstance(request, dict):
        prompt = [t for content in request.get("contents") or [] if isinstance(content, dict)
                  for t in _texts(content.get("parts"))]
        out[semconv.GENAI_PROMPT_CHARACTERS] = sum(len(t) for t in prompt)
        out["gen_ai.prompt.parts"] = len(prompt)
    if chunks:
        text, finish, usage = 0, None, {}
        for chunk in chunks:
            for candidate in (chunk.get("candidates") or [])[:1]:
                text += sum(len(t) for t in _texts((candidate.get("content") or {}).get("parts")))
                finish = candidate.get("finishReason") or finish
            usage = chunk.get("usageMetadata") or usage  # the last chunk's counts cover the whole response
        out[semconv.GENAI_RESPONSE_CHARACTERS] = text
        out[semconv.GENAI_INPUT_TOKENS] = usage.get("promptTokenCount")
        out[semconv.GENAI_OUTPUT_TOKENS] = usage.get("candidatesTokenCount")
        out[semconv.GENAI_FINISH_REASON] = finish
    if not out:
        raise ValueError("neither request_payload nor full_request/full_response")
    out["gen_ai.request.model"] = row.get("model") or (chunks[-1].get("modelVersion") if chunks else None)
    return out


def _vertex_rows(row: dict[str, Any], names: list[str], mapping: dict[str, Any],
                 unmapped: Counter[str]) -> list[dict[str, Any]]:
    if not row.get("request_payload"):  # a publisher model's row (generateContent), or a streamed one
        return [_generative_row(row)]
    instances: list[Any] = []
    for element in _vertex_elements(row["request_payload"]):
        instances += element["instances"] if isinstance(element, dict) and "instances" in element else [element]
    predictions: list[Any] = []
    for element in _vertex_elements(row.get("response_payload") or []):
        predictions += element["predictions"] if isinstance(element, dict) and "predictions" in element \
            else [element]
    return _pair([_row(i, names) for i in instances], _outputs(predictions, mapping, unmapped), False)


def _vertex_time(row: dict[str, Any]) -> str:
    at = str(row["logging_time"]).strip()
    return at[:-4].replace(" ", "T") + "+00:00" if at.endswith(" UTC") else at  # BigQuery's text for a TIMESTAMP


def read_vertex(capture: _Capture, mapping: dict[str, Any]) -> None:
    names = list(mapping.get("features", []))
    for f in capture_files(capture.path, (".jsonl", ".json", ".csv")):
        if f.suffix == ".csv":
            try:
                with open(f, encoding="utf-8", newline="") as handle:
                    records: list[tuple[int, Any]] = [(k + 2, r) for k, r in enumerate(csv.DictReader(handle))]
            except (OSError, UnicodeDecodeError, csv.Error) as e:
                raise CaptureError(f"{f}: cannot be read ({e})") from None
            capture.records += len(records)
        else:
            sub = _Capture(str(f), capture.max_record_bytes, capture.max_columns)
            records = [(line_no, line) for _, line_no, line in sub.lines()]
            capture.refused += sub.refused
            capture.records += sub.records
        for line_no, record in records:
            try:
                row = json.loads(record) if isinstance(record, str) else record
                if not isinstance(row, dict):
                    raise ValueError("a row is an object")
                rows = _vertex_rows(row, names, mapping, capture.unmapped)
                at, event = _vertex_time(row), str(row["request_id"])
            except _UNREADABLE as e:
                capture.refuse(f"{f}:{line_no}", f"not a Vertex AI request-response log row ({_why(e)})")
                continue
            capture.add(f"{f}:{line_no}", at, event, rows)


# --- Azure ML -------------------------------------------------------------------------------------------------
def _azureml_rows(data: Any, names: list[str]) -> list[dict[str, Any]]:
    """A record's ``data`` as rows: a list of row objects (a DataFrame's records), one row object, a DataFrame's
    columns (``{"age": [34, 51], ...}``), an HTTP request body (payload logging: ``{"data": [[...], ...]}``,
    ``{"input_data": {"columns": [...], "data": [...]}}``), a list of value lists, or JSON text of any of these.

    >>> _azureml_rows({"a": [1, 2], "b": ["x", "y"]}, [])
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    >>> _azureml_rows({"data": [[1, 2], [3, 4]]}, ["u", "v"])
    [{'u': 1, 'v': 2}, {'u': 3, 'v': 4}]
    """
    if isinstance(data, str):
        data = json.loads(data)
    if isinstance(data, dict) and any(k in data for k in ("data", "input_data", "instances", "inputs")):
        instances, _ = _instances(data)
        return [_row(i, _columns_of(data) or names) for i in instances]
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ValueError("data's columns differ in length")
        return [dict(zip(data, values)) for values in zip(*data.values())]
    rows = data if isinstance(data, list) else [data]
    return [_row(r, names) for r in rows]


INPUT_COLLECTIONS = ("model_inputs", "inputs", "request")
OUTPUT_COLLECTIONS = ("model_outputs", "outputs", "response")
"""Collections read as inputs and outputs unless the mapping's ``collections`` names others: the collector's
``model_inputs``/``model_outputs``, the older ``azureml.inference.inputs`` type, payload logging's
``request``/``response``."""


def read_azureml(capture: _Capture, mapping: dict[str, Any]) -> None:
    names = list(mapping.get("features", []))
    chosen = mapping.get("collections", {})
    inputs_named = (chosen["inputs"],) if "inputs" in chosen else INPUT_COLLECTIONS
    outputs_named = (chosen["outputs"],) if "outputs" in chosen else OUTPUT_COLLECTIONS
    # correlation id → its inputs records (place, time, rows) and outputs records (place, outputs), in order
    inputs: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {}
    outputs: dict[str, list[tuple[str, list[Any]]]] = {}
    for f, line_no, line in capture.lines():
        where = f"{f}:{line_no}"
        try:
            record = json.loads(line)
            correlation = str(record["correlationid"])
            # The collection: the record's type (azureml.inference.<collection>), else a directory of its path.
            kind = str(record.get("type") or "").rpartition(".")[2] or next(
                (part for part in reversed(f.parts) if part in (*inputs_named, *outputs_named)), "")
            if kind in inputs_named:
                inputs.setdefault(correlation, []).append((where, str(record["time"]),
                                                           _azureml_rows(record["data"], names)))
            elif kind in outputs_named:
                data = record["data"]
                data = json.loads(data) if isinstance(data, str) else data
                if isinstance(data, dict) and data and "predictions" not in data and all(
                        isinstance(v, list) for v in data.values()):
                    data = _azureml_rows(data, [])  # a DataFrame's columns: its rows
                outputs.setdefault(correlation, []).append((where, _predictions(data)))
            else:
                raise ValueError(f"collection {kind or '(none: no type, no such directory)'} is neither "
                                 f"{'/'.join(inputs_named)} nor {'/'.join(outputs_named)} (the mapping's "
                                 "collections can name others)")
        except _UNREADABLE as e:
            capture.refuse(where, f"not an Azure ML data collector record ({_why(e)})")
    for correlation, records in outputs.items():
        for where, _ in records[len(inputs.get(correlation, [])):]:
            capture.refuse(where, f"outputs of correlation id {correlation!r} without its inputs (read the inputs "
                                  "files too: --input their common directory)")
    for correlation, records in inputs.items():
        answers = outputs.get(correlation, [])
        for k, (where, at, xs) in enumerate(records):
            try:
                ys = _outputs(answers[k][1], mapping, capture.unmapped) if k < len(answers) else []
                rows = _pair(xs, ys, False)
            except _UNREADABLE as e:
                capture.refuse(where, f"correlation id {correlation!r}: {_why(e)}")
                continue
            capture.add(where, at, correlation, rows)


def read_sagemaker_ground_truth(path: str, max_record_bytes: int = MAX_RECORD_BYTES) -> tuple[
        list[str], list[Any], list[tuple[str, str]]]:
    """Ids, labels and refused records of SageMaker Model Monitor ground-truth files (``otel-ml labels send
    --format sagemaker``), one JSON record per line as the merge job reads them::

        {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "74b0..."},
         "eventVersion": "0"}

    The id is ``eventId`` (what the capture's rows carry when the caller set no InferenceId); a CSV label that reads
    as a number is that number."""
    capture = _Capture(path, max_record_bytes, MAX_COLUMNS)
    ids: list[str] = []
    labels: list[Any] = []
    for f, line_no, line in capture.lines():
        try:
            record = json.loads(line)
            kind, text = _payload(record["groundTruthData"])
            value = _cell(text.strip()) if kind == "csv" else json.loads(text)
            if value is None or isinstance(value, (dict, list)):
                raise ValueError(f"label {text.strip()[:40]!r} is not one value")
            ident = str(record["eventMetadata"].get("inferenceId") or record["eventMetadata"]["eventId"])
        except _UNREADABLE as e:
            capture.refuse(f"{f}:{line_no}", f"not a SageMaker ground-truth record ({_why(e)})")
            continue
        ids.append(ident)
        labels.append(value)
    if not ids:
        shown = "; ".join(f"{w}: {why}" for w, why in capture.refused[:3])
        raise CaptureError(f"{path}: no ground-truth record could be read" + (f" ({shown})" if shown else ""))
    return ids, labels, capture.refused


def read_capture(path: str, capture_format: str, mapping: dict[str, Any],
                 max_record_bytes: int = MAX_RECORD_BYTES, max_columns: int = MAX_COLUMNS) -> CaptureTable:
    """Every row the capture at ``path`` (a file or a directory of them) holds; CaptureError when none can be
    read, naming the first places refused."""
    readers = {"sagemaker": read_sagemaker, "vertex": read_vertex, "azureml": read_azureml}
    if capture_format not in readers:
        raise CaptureError(f"capture format {capture_format!r}: one of {', '.join(FORMATS)}")
    if not max_record_bytes >= 1:
        raise CaptureError(f"--max-record-bytes must be at least 1, got {max_record_bytes}")
    capture = _Capture(path, max_record_bytes, max_columns)
    readers[capture_format](capture, mapping)
    return capture.table()


__all__ = ["FORMATS", "GENERATIVE_FEATURES", "CaptureError", "CaptureTable", "capture_files", "load_mapping",
           "read_capture", "read_sagemaker_ground_truth"]
