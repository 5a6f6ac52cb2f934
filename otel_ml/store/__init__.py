"""What survives a restart: baselines and pinned references."""

from otel_ml.store.baselines import ReferenceStore, read_profiles, write_atomically

__all__ = ["ReferenceStore", "read_profiles", "write_atomically"]
