"""A partition's state as changelog records (shared Kafka mode): what its owner publishes, and how a replica that
does not own it (or takes it over) applies what was published.

A partition's state is always the result of a *prefix* of that partition's messages, up to its ``offset``
(otel_ml/core/live.py), so whoever takes a partition over continues from the state it holds (its own, or the
latest one its previous owner published), never from a mix. Records (key, value): ``["m", model, version]`` →
the window set's ``to_state()`` (``None``: the set was released), ``["w", model, version, start]`` → one window's
``ModelProfile.to_json()`` (``None``: deleted), and last ``["p"]`` → ``{"offset", "caught_up", "lifecycle"}``,
which closes a publication.
"""

from __future__ import annotations

import json

from otel_ml.core.live import LiveModels, PartitionState
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.window import WindowChanges, WindowedProfile

Record = tuple[list, bytes | None]
Taken = tuple[list[tuple[WindowedProfile, WindowChanges]], list[WindowChanges]]
"""What a publication took from a partition: (window sets with their changes, released sets' last changes)."""


def encode_key(key: list) -> bytes:
    return json.dumps(key, separators=(",", ":")).encode()


def take_records(state: PartitionState) -> tuple[list[Record], Taken]:
    """What changed in the partition since its last publication, as records closed by its offset record; and
    what was taken, to ``give_back`` if they could not be published."""
    records: list[Record] = []
    released, state.released = state.released, []
    for changes in released:
        records += [(["w", changes.model, changes.version, s], None) for s in sorted(changes.removed)]
        records.append((["m", changes.model, changes.version], None))
    taken = []
    for (model, version), wp in state.models.items():
        changes = wp.take_changes()
        if not (changes.changed or changes.removed):
            continue
        taken.append((wp, changes))
        meta = wp.to_state()
        meta.pop("pinned_reference", None)  # a partial set pins nothing; the merge's reference has its record
        records.append((["m", model, version], json.dumps(meta).encode()))
        records += [(["w", model, version, s], v) for s, v in changes.changed.items()]
        records += [(["w", model, version, s], None) for s in changes.removed]
    records.append((["p"], json.dumps({"offset": state.offset, "caught_up": state.caught_up,
                                       "lifecycle": state.lifecycle.to_state()}).encode()))
    return records, (taken, released)


def give_back(state: PartitionState, taken: Taken) -> None:
    """A publication failed: what it held is published next time."""
    sets, released = taken
    for wp, changes in sets:
        wp.restore_changes(changes)
    state.released[:0] = released


def apply_records(live: LiveModels, partition: int, records: list[Record]) -> None:
    """One publication of ``partition`` from the changelog (or all of them, replayed from its start), applied as
    one: meta records first, then windows, then the offset. Call under the live models' lock."""
    state = live.partition(partition)
    touched: set[tuple[str, str]] = set()
    for key, value in records:
        if key[0] != "m":
            continue
        mv = (key[1], key[2])
        if value is None:
            state.models.pop(mv, None)
            continue
        meta = json.loads(value)
        wp = state.models.get(mv)
        if wp is None:
            wp = state.models[mv] = live.new_window_set(key[1], key[2])
        wp.kinds.update(meta["kinds"])
        wp.first_window_ns, wp.newest_event_ns = meta["first_window_ns"], meta["newest_event_ns"]
        wp.current_start_ns = meta["current_start_ns"] if wp.current_start_ns is None else max(
            wp.current_start_ns, meta["current_start_ns"] or 0)
        wp.predictions = float(meta.get("predictions", 0.0))
    for key, value in records:
        if key[0] != "w":
            continue
        wp = state.models.get((key[1], key[2]))
        if wp is None:  # its model's record was deleted after this window's
            continue
        if value is None:
            wp.windows.pop(int(key[3]), None)
        else:
            wp.windows[int(key[3])] = ModelProfile.from_json(value)
        touched.add((key[1], key[2]))
    for mv in touched:
        wp = state.models[mv]
        wp.adopt_window_grids()
        wp.take_changes()  # what came from the changelog is published already
    for key, value in records:
        if key[0] == "p" and value is not None:
            closing = json.loads(value)
            state.offset, state.caught_up = int(closing["offset"]), bool(closing.get("caught_up", False))
            if "lifecycle" in closing:
                state.lifecycle.restore(closing["lifecycle"])
