"""The shared feature stage: one definition, a streaming and a batch path that agree bit for bit."""

from .batch import batch_features
from .calendar import ALWAYS_OPEN, US_EQUITIES, SessionCalendar
from .config import DEFAULT_TICK_SIZE, FeatureConfig
from .spec import (
    DEFAULT_MODEL_FEATURES,
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURE_STAGE_VERSION,
    LOOKBACKS,
    MAX_LOOKBACK,
    missing_features,
)
from .streaming import StreamingFeatures

__all__ = [
    "ALWAYS_OPEN",
    "DEFAULT_MODEL_FEATURES",
    "DEFAULT_TICK_SIZE",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "FEATURE_STAGE_VERSION",
    "LOOKBACKS",
    "MAX_LOOKBACK",
    "US_EQUITIES",
    "FeatureConfig",
    "SessionCalendar",
    "StreamingFeatures",
    "batch_features",
    "missing_features",
]
