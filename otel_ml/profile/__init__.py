"""Where windows live: per-feature sketches, model profiles (window, horizon, baseline) and windows."""

from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import (
    CATEGORICAL,
    NUMERIC,
    CategoricalProfile,
    NumericProfile,
    SketchConfig,
)
from otel_ml.profile.window import WindowConfig, WindowedProfile

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "CategoricalProfile",
    "ModelProfile",
    "NumericProfile",
    "SketchConfig",
    "WindowConfig",
    "WindowedProfile",
]
