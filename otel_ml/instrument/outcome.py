"""What the processor did with the labels a client sent: joined, waiting for their predictions, or not joined by
reason with examples and a diagnosis. ``otel-ml labels send`` and ``otel-ml replay`` end with it, read back from the
processor's JSON API (``GET /api/v1/labels``), so a user learns on the terminal what only ``/metrics`` said before.

Only the standard library: the instrumentation's dependencies stay ``opentelemetry-api``.

>>> before = {"joined": 10, "unmatched": {"duplicate": 1}, "examples": {}, "diagnoses": []}
>>> after = {"joined": 15, "unmatched": {"duplicate": 1, "unknown": 3}, "examples": {"unknown": ["007"]},
...          "diagnoses": [{"message": "ids differ"}]}
>>> print(summary(before, after, 10))
the processor joined 5 of them; 2 wait for their predictions; 3 did not join: unknown 3 (e.g. '007')
  ids differ
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

REJECTION_FIXES = {
    "reserved_feature_name": "a column is named like a model output: pass it as --prediction-column, "
                             "--score-column or --probability-column, or --exclude it",
    "timestamp_in_future": "times ahead of the processor's clock: check the time column's unit (--time-unit) and "
                           "time zone",
    "too_many_features": "more features in a row than the processor's limits.max_features_per_span: --exclude "
                         "columns, or raise the limit",
    "name_too_long": "a model, version or column name longer than limits.max_name_length: rename it",
    "too_many_models": "the processor keeps at most models.max_models: retire some (otel-ml models retire) or raise "
                       "it",
    "invalid_batch_size": "more rows per span than limits.max_batch_size: lower --batch",
    "prediction_id_too_long": "ids longer than limits.max_id_length: shorten them",
    "invalid_prediction_id": "ids must be text, or integers within ±2^53: send them as text",
    "invalid_probability": "a probability outside [0, 1]: is the column a score? pass it as --score-column",
    "ground_truth_unsupported": "labels are numbers, text or bools",
    "invalid_ground_truth": "labels are finite numbers, non-empty text or bools",
    "ground_truth_missing_value": "rows without a label: leave them out of the file, or give them one",
    "duplicate_attribute": "a column appears twice under one name: rename one",
}
"""What to do about each reason the processor gives for rejecting spans or log records (its partial_success)."""


def rejection_summary(messages: list[str], examples: int = 3) -> str:
    """The processor's partial_success messages ("reason: N span(s), e.g. ...; ...") added up per reason, each with
    its first example and the fix; "" when there were none.

    >>> print(rejection_summary(["invalid_batch_size: 2 span(s), e.g. 5000 rows"]))
    the processor rejected: invalid_batch_size 2 (e.g. 5000 rows)
      fix: more rows per span than limits.max_batch_size: lower --batch
    """
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for message in messages:
        for part in message.split("; "):
            reason, _, rest = part.partition(": ")
            number, _, example = rest.partition(" span(s)")
            number = number.split(" ")[0]
            if not number.isdigit():
                number, example = "1", rest
            counts[reason] = counts.get(reason, 0) + int(number)
            first.setdefault(reason, example.removeprefix(", e.g. ").strip())
    if not counts:
        return ""
    lines = ["the processor rejected: " + ", ".join(
        f"{reason} {n}" + (f" (e.g. {first[reason]})" if first[reason] else "")
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])[:examples])]
    lines += [f"  fix: {REJECTION_FIXES[r]}" for r in sorted(counts, key=lambda r: -counts[r])[:examples]
              if r in REJECTION_FIXES]
    return "\n".join(lines)


DEFAULT_API_PORT = 9465
"""Where ``otel-ml serve`` answers its JSON API unless ``ui.endpoint`` says otherwise."""


def api_url(endpoint: str) -> str:
    """The processor's API beside its OTLP ``endpoint`` (``host:port``, or ``http(s)://host:port``) on the default
    port."""
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0] or "127.0.0.1"
    return f"http://{host}:{DEFAULT_API_PORT}"


def label_status(api: str, model: str, version: str, token: str | None = None) -> tuple[dict[str, Any], float]:
    """The labels of (model, version) as the processor's last evaluation counted them, and when it evaluated."""
    request = urllib.request.Request(f"{api.rstrip('/')}/api/v1/labels?model={quote(model, safe='')}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        doc = json.load(response)
    out: dict[str, Any] = {"joined": 0, "unmatched": {}, "examples": {}, "diagnoses": []}
    for row in doc["labels"]:
        if row["version"] == version:
            out = {k: row[k] for k in out}
    return out, float(doc.get("evaluated_unix", 0.0))


def accounted(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Labels counted (joined or not) between two readings."""
    return (after["joined"] - before["joined"]) + sum(after["unmatched"].values()) - sum(before["unmatched"].values())


def wait_for_outcome(api: str, model: str, version: str, before: dict[str, Any], sent: int, sent_at: float,
                     wait_seconds: float, token: str | None = None) -> dict[str, Any]:
    """Poll until every label sent is counted, or two evaluations after ``sent_at`` counted the same (the rest
    wait for their predictions), or ``wait_seconds`` passed."""
    deadline = time.monotonic() + wait_seconds
    last: tuple[float, int] | None = None
    while True:
        after, evaluated = label_status(api, model, version, token)
        counted = accounted(before, after)
        if counted >= sent:
            return after
        if evaluated > sent_at:
            if last is not None and last[0] != evaluated and last[1] == counted:
                return after
            if last is None or last[0] != evaluated:
                last = (evaluated, counted)
        if time.monotonic() >= deadline:
            return after
        time.sleep(0.5)


def summary(before: dict[str, Any], after: dict[str, Any], sent: int) -> str:
    """One line of what became of ``sent`` labels, and one per diagnosis."""
    joined = after["joined"] - before["joined"]
    missed = {r: n - before["unmatched"].get(r, 0) for r, n in after["unmatched"].items()
              if n > before["unmatched"].get(r, 0)}
    waiting = max(0, sent - joined - sum(missed.values()))
    parts = [f"the processor joined {joined:,} of them"]
    if waiting:
        parts.append(f"{waiting:,} wait for their predictions")
    if missed:
        parts.append(f"{sum(missed.values()):,} did not join: " + ", ".join(
            f"{r} {n:,}" + (f" (e.g. {', '.join(repr(i) for i in after['examples'][r][:3])})"
                            if after["examples"].get(r) else "") for r, n in sorted(missed.items())))
    return "; ".join(parts) + "".join(f"\n  {d['message']}" for d in after["diagnoses"])


def report_outcome(api: str | None, model: str, version: str, sent: int, send: Any, wait_seconds: float,
                   token: str | None = None) -> str:
    """Run ``send()`` (which sends ``sent`` labels) between two readings of the processor's API and say what became
    of them; a line saying why not when the API does not answer (the labels are sent all the same)."""
    before = None
    if api and wait_seconds > 0:
        try:
            before = label_status(api, model, version, token)[0]
        except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            send()
            return (f"(what the processor did with them is not known: its API at {api} did not answer ({reason}); "
                    "--api URL names it, --wait 0 skips this)")
    sent_at = time.time()
    send()
    if before is None or not sent:
        return ""
    try:
        after = wait_for_outcome(api, model, version, before, sent, sent_at, wait_seconds, token)  # type: ignore
    except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
        return f"(what the processor did with them is not known: its API at {api} stopped answering ({e}))"
    return summary(before, after, sent)
