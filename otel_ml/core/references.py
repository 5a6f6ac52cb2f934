"""Reference profiles on disk: baselines given by the user, and references pinned from live traffic.

Any file in the baseline directory that is an otel-ml profile counts, whatever its name; the profile
itself says which (model, version) it is for. A baseline built without a version applies to every
version of the model that has no baseline of its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from otel_ml.profile.model import ModelProfile
from otel_ml.sealed import Loss, quarantine, write_sealed

log = logging.getLogger(__name__)

Key = tuple[str, str]

BASELINE_DIR_FILE = "baseline-dir.txt"
"""In the state directory: the baseline directory the processor last started with (absolute), so that the
offline commands (``otel-ml report``) choose the reference it chose without being told again."""


MAX_BASELINE_BYTES = 128 * 1024 * 1024
"""Baseline files larger than this are skipped with a warning (``limits.max_baseline_bytes``): reading one takes
about three times its size in memory and holds the interpreter while it is parsed."""


def read_profiles(directory: Path, max_bytes: int = MAX_BASELINE_BYTES) -> dict[Key, tuple[ModelProfile, Path]]:
    """Every otel-ml profile file in ``directory`` (not recursive), keyed by (model, version), with its file.
    Two files for one (model, version): the newer one (modification time) is used, and a warning names both:
    merging them would mix an old reference into a rebuilt one. A file that is not a usable profile, or is larger
    than ``max_bytes``, is skipped with a warning naming it and why: one bad file never stops the others."""
    found: dict[Key, tuple[ModelProfile, Path]] = {}
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    for path in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name)):  # oldest first: newer ones replace
        size = path.stat().st_size
        if size > max_bytes:
            log.warning("%s: skipped, %d bytes is over limits.max_baseline_bytes (%d)", path, size, max_bytes)
            continue
        try:
            prof = ModelProfile.from_json(path.read_bytes())
            if not isinstance(prof.model, str) or not isinstance(prof.version, str) or not prof.model:
                raise ValueError("its model and version are not text")
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OSError) as e:
            log.warning("%s: skipped, not an otel-ml profile (%s: %s)", path, type(e).__name__, str(e)[:200])
            continue
        key = (prof.model, prof.version)
        if key in found:
            log.warning("two baselines for model %r version %r: %s is newer than %s and is used; remove the one you "
                        "do not mean", *key, path.name, found[key][1].name)
        found[key] = (prof, path)
    return found


def directory_state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, modification time, size) of every file: tells whether a directory changed, without reading it."""
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(directory)
                            if e.is_file() and not e.name.startswith(".")))
    except OSError:
        return ()


class ReferenceStore:
    """Finds the reference of a (model, version): a baseline file, else a reference pinned from live traffic,
    recorded under the state directory (``pinned_files``) or, in shared Kafka mode, kept in memory as the
    changelog brings it (``adopt``)."""

    def __init__(self, baseline_dir: str | None, state_dir: str, pinned_files: bool = True,
                 max_baseline_bytes: int = MAX_BASELINE_BYTES) -> None:
        self.baseline_dir = Path(baseline_dir) if baseline_dir else None
        self.max_baseline_bytes = max_baseline_bytes
        self.pinned_dir = Path(state_dir) / "pinned"
        self.pinned_files = pinned_files
        self.current_start: dict[Key, int | None] = {}
        """Shared mode: where the current horizon starts after a pinned reference (from its changelog record)."""
        self.losses: list[Loss] = []
        """Pinned reference files found damaged (each moved to quarantine/), for the state backend to report."""
        self.baselines: dict[Key, ModelProfile] = {}
        self.baseline_files: dict[Key, Path] = {}
        self._baseline_dir_state: tuple[tuple[str, int, int], ...] = ()
        self.pinned: dict[Key, ModelProfile] = {}
        self._not_pinned: set[Key] = set()
        """Keys whose pinned file was looked for and not found (``find``); a key leaves when its file is written."""

    def open(self) -> None:
        """Load everything; fails with a clear message when the state directory is unusable."""
        try:
            self.pinned_dir.mkdir(parents=True, exist_ok=True)
            probe = self.pinned_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise RuntimeError(f"state directory {self.pinned_dir.parent} is not writable: {e}") from e
        recorded = self.pinned_dir.parent / BASELINE_DIR_FILE
        if self.baseline_dir is None:
            recorded.unlink(missing_ok=True)
        if self.baseline_dir is not None:
            if not self.baseline_dir.is_dir():
                raise RuntimeError(f"baseline directory {self.baseline_dir} does not exist")
            recorded.write_text(str(self.baseline_dir.resolve()) + "\n", encoding="utf-8")
            self._load_baselines()
            for (model, version), path in self.baseline_files.items():
                log.info("baseline for model %r version %r loaded from %s", model, version, path.name)

    def _load_baselines(self) -> None:
        assert self.baseline_dir is not None
        self._baseline_dir_state = directory_state(self.baseline_dir)
        found = read_profiles(self.baseline_dir, self.max_baseline_bytes)
        self.baselines = {key: prof for key, (prof, _) in found.items()}
        self.baseline_files = {key: path for key, (_, path) in found.items()}

    def reload_baselines(self, force: bool = False) -> set[Key]:
        """Read the baseline directory again if it changed (or ``force``); returns the keys whose baseline was
        added or replaced (each logged), for the service to put in force."""
        if self.baseline_dir is None or (not force and directory_state(self.baseline_dir) ==
                                         self._baseline_dir_state):
            return set()
        before = dict(self.baseline_files)
        before_state = {key: (p.name, p.stat().st_mtime_ns) for key, p in before.items() if p.exists()}
        self._load_baselines()
        changed = set()
        for key, path in self.baseline_files.items():
            if before_state.get(key) != (path.name, path.stat().st_mtime_ns):
                changed.add(key)
                log.info("baseline for model %r version %r %s from %s", *key,
                         "replaced" if key in before else "loaded", path.name)
        for key in set(before) - set(self.baseline_files):
            log.warning("baseline for model %r version %r (%s) is gone; its reference stays in force until a restart",
                        *key, before[key].name)
        return changed

    def find(self, model: str, version: str) -> tuple[ModelProfile, str] | None:
        """The baseline for (model, version), else the model's version-less baseline, else a pinned one (read
        from disk on first use: pinned references of released models are not held in memory)."""
        for key in ((model, version), (model, "")):
            if key in self.baselines:
                return self.baselines[key], "baseline"
        key = (model, version)
        if key not in self.pinned:
            if not self.pinned_files or key in self._not_pinned:
                return None
            path = self._pinned_path(key)
            try:
                self.pinned[key] = ModelProfile.from_json(path.read_bytes())
            except FileNotFoundError:
                # Remembered: a model without a reference yet was looked up on disk at every request (6% of
                # ingest's time). Its file appears only through this store (save_pinned, adopt), which sets
                # ``pinned`` first.
                self._not_pinned.add(key)
                return None
            except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
                quarantine(path, self.pinned_dir.parent)
                self.losses.append(Loss("pinned_reference", f"pinned/{path.name}", 0, f"the reference pinned for "
                                        f"model {key[0]!r} version {key[1]!r} is damaged ({e}): moved to quarantine/; "
                                        "a live model keeps the one its checkpoint holds (written again), a released "
                                        "one pins the next full horizon of its traffic"))
                return None
        return self.pinned[key], "pinned"

    def pinned_file_ok(self, reference: ModelProfile) -> bool:
        """Whether the pinned reference file of ``reference``'s model holds it (call after ``find``): missing,
        damaged (``find`` quarantined it), or another reference (a file of another processor), it does not."""
        key = (reference.model, reference.version)
        held = self.pinned.get(key)
        if held is None:
            return False
        if (held.rows, sorted(held.features), held.start_ns, held.end_ns) != (
                reference.rows, sorted(reference.features), reference.start_ns, reference.end_ns):
            path = self._pinned_path(key)
            quarantine(path, self.pinned_dir.parent)
            self.losses.append(Loss("pinned_reference", f"pinned/{path.name}", 0, "holds another reference than the "
                                    f"checkpoint of model {key[0]!r} version {key[1]!r} (another processor's file?): "
                                    "moved to quarantine/, the checkpoint's is written again"))
            self.pinned[key] = reference
            return False
        return True

    def _pinned_path(self, key: Key) -> Path:
        return self.pinned_dir / (hashlib.sha256(f"{key[0]}\0{key[1]}".encode()).hexdigest()[:24] + ".json")

    def take_losses(self) -> list[Loss]:
        losses, self.losses = self.losses, []
        return losses

    def adopt(self, profile: ModelProfile, current_start_ns: int | None) -> None:
        """A reference pinned elsewhere (shared mode: the replica exporting the model), as the changelog brings it;
        written to ``pinned/`` too, for the offline commands (``otel-ml report``), not read back from there."""
        key = (profile.model, profile.version)
        self.pinned[key] = profile
        self._not_pinned.discard(key)
        self.current_start[key] = current_start_ns
        try:
            write_sealed(self._pinned_path(key), profile.to_json().encode())
        except OSError as e:
            log.warning("could not write the pinned reference of model %r version %r for the offline commands: %s",
                        *key, e)

    def save_pinned(self, profile: ModelProfile) -> Path:
        key = (profile.model, profile.version)
        self.pinned[key] = profile
        self._not_pinned.discard(key)
        path = self._pinned_path(key)
        write_sealed(path, profile.to_json().encode())
        return path

    def forget(self, key: Key) -> None:
        """Drop a released model's pinned reference from memory (it stays on disk)."""
        self.pinned.pop(key, None)
        self._not_pinned.discard(key)

    def delete_pinned(self, key: Key) -> bool:
        """Delete a pinned reference from disk; True when there was one."""
        self.pinned.pop(key, None)
        try:
            self._pinned_path(key).unlink()
            return True
        except FileNotFoundError:
            return False
