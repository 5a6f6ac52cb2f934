"""Comparisons of stored profiles: a reference chosen as the processor would, the drift table of two profiles,
and a feature's history over archived windows (each part of a range against the reference)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.core.references import BASELINE_DIR_FILE, ReferenceStore, read_profiles
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import profile_from_dict
from otel_ml.read import views
from otel_ml.read.archive import rows_in_range
from otel_ml.sealed import opened


def find_reference(state_dir: str | Path, model: str, version: str, reference: str | Path | None = None,
                   baseline_dir: str | Path | None = None) -> tuple[ModelProfile, str]:
    """(reference profile, where it came from), as the processor would choose it, or from ``reference``."""
    if reference is not None:
        return ModelProfile.read(reference), str(reference)
    if baseline_dir is None:  # the one the processor used, if it still exists (an unreadable record: none)
        try:
            used = (Path(state_dir) / BASELINE_DIR_FILE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            used = ""
        if used and Path(used).is_dir():
            baseline_dir = used
    if baseline_dir is not None:
        found = read_profiles(Path(baseline_dir))
        for key in ((model, version), (model, "")):
            if key in found:
                return found[key][0], f"baseline {found[key][1].name}"
    pinned = ReferenceStore(None, str(state_dir)).find(model, version)
    if pinned is None:
        raise ValueError(f"no reference for model {model!r} version {version!r}: give --reference FILE or "
                         "--baseline-dir DIR (the processor pinned none in this state directory)")
    return pinned[0], "pinned"


def merged_parts(profiles: Iterable[tuple[int, int, ModelProfile]], count: int,
                 points: int) -> Iterator[tuple[int, int, ModelProfile]]:
    """``count`` profiles ((start, end, profile), in time order, read lazily) merged into at most ``points``
    consecutive parts (start of the first, end of the last, merged profile)."""
    per_part = max(1, math.ceil(count / points))
    part: list[Any] | None = None
    for n, (start, end, profile) in enumerate(profiles, 1):
        if part is None:
            part = [start, end, profile]
        else:
            part[1] = max(part[1], end)
            part[2].merge(profile)
        if n % per_part == 0:
            yield part[0], part[1], part[2]
            part = None
    if part is not None:
        yield part[0], part[1], part[2]


def history(parts: Iterable[tuple[int, int, ModelProfile]], reference: ModelProfile, drift: DriftConfig,
            effect_size: dict[str, str] | None = None) -> dict[str, dict[str, list]]:
    """Per feature: time (the end of each part), p-value and effect of each part against the reference."""
    out: dict[str, dict[str, list]] = {}
    for _, end, profile in parts:
        for f in compare(reference, profile, drift).features:
            row = views.feature_row(f, effect_size)
            h = out.setdefault(f.feature, {"time_unix": [], "p_value": [], "effect": [], "drift_detected": []})
            h["time_unix"].append(end / 1e9)
            h["p_value"].append(row["p_value"])
            h["effect"].append(row["effect"])
            h["drift_detected"].append(row["drift_detected"])
    return out


def feature_history(conn: sqlite3.Connection, model: str, version: str, feature: str, reference: ModelProfile,
                    start_ns: int, end_ns: int, window_ns: int | None, drift: DriftConfig,
                    threshold: float | None = None, points: int = 48, max_bytes: int = 20_000_000,
                    effect_size: dict[str, str] | None = None) -> dict[str, list]:
    """``history`` of one feature over archived profiles in [start_ns, end_ns), for a page: the newest profiles
    first, until ``max_bytes`` of them were read (a profile holds every feature of its model; a wide model's day
    is hundreds of MB), and only this feature of each is parsed. ``threshold``: the model's level for this
    feature (one feature compared alone would be tested at the whole model's level). ``from_unix`` says how far
    back it got."""
    out: dict[str, list] = {"time_unix": [], "p_value": [], "effect": [], "drift_detected": [], "from_unix": []}
    if feature not in reference.features:
        return out
    read = 0
    found: list[tuple[int, int, ModelProfile]] = []
    for start, end, blob in rows_in_range(conn, model, version, start_ns, end_ns, window_ns, newest_first=True):
        read += len(blob)
        d = json.loads(opened(blob, "archived window")).get("features", {})
        if feature in d:
            one = ModelProfile(model, version)
            one.features[feature] = profile_from_dict(d[feature])
            found.append((start, end, one))
        if read >= max_bytes:
            break
    found.reverse()
    ref = ModelProfile(model, version)
    ref.features[feature] = reference.features[feature]
    out.update(history(merged_parts(found, len(found), points), ref, drift, effect_size).get(feature, {}))
    if threshold is not None:
        out["drift_detected"] = [d if d is None or p is None else p < threshold
                                 for d, p in zip(out["drift_detected"], out["p_value"])]
    out["from_unix"] = [found[0][0] / 1e9] if found else []
    return out


def comparison_rows(reference: ModelProfile, current: ModelProfile,
                    drift: DriftConfig | None = None) -> list[dict[str, Any]]:
    """The drift table the processor would compute for two profile files (``otel-ml compare``)."""
    report = compare(reference, current, drift or DriftConfig(), "file")
    return views.sorted_rows([views.feature_row(f) for f in report.features])
