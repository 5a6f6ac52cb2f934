"""What survives a restart, on disk: baselines and pinned references (baselines.py), the request journal
(journal.py), checkpoints of the live state (state.py) and the archive of past windows (archive.py)."""

from otel_ml.store.baselines import ReferenceStore, read_profiles, write_atomically

__all__ = ["ReferenceStore", "read_profiles", "write_atomically"]
