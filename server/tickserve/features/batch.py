"""Batch feature path: the features of a whole tick file, for training and offline scoring.

`batch_features` is `StreamingFeatures.update_frame` on a fresh state: each instrument's
rows go through the compiled per-tick step that serves streams (`_kernel.c`), so the
features a model is trained on are the ones it is served, by construction.
"""

from __future__ import annotations

import numpy as np

from ..core.ticks import TickFrame
from .config import FeatureConfig


def batch_features(frame: TickFrame, config: FeatureConfig) -> np.ndarray:
    """The feature matrix (len(frame), len(FEATURE_NAMES)), rows in frame order."""
    from .streaming import StreamingFeatures

    return StreamingFeatures(config).update_frame(frame)[0]
