"""The load-time check runs the path a model will serve: ticks -> features (the model's own
feature config) -> model -> rules. A model that would answer non-finite values is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tickserve.core.signals import SignalRules
from tickserve.core.validation import validate_tick
from tickserve.errors import ModelLoadError
from tickserve.features import DEFAULT_MODEL_FEATURES, FEATURE_INDEX, FeatureConfig
from tickserve.models.load_check import check_serving_path, synthetic_ticks


def _model(predict, tick_sizes=(("BIG", 5000.0), ("TINY", 1e-8))):
    names = list(DEFAULT_MODEL_FEATURES)
    manifest = SimpleNamespace(
        feature_config=FeatureConfig(tick_sizes=tick_sizes), feature_names=names, signal_rules=SignalRules()
    )
    index = np.array([FEATURE_INDEX[n] for n in names])
    return SimpleNamespace(manifest=manifest, feature_index=index, predict=predict)


def test_the_synthetic_ticks_are_valid_for_any_allowed_tick_size():
    for tick_size in (1e-12, 1e-8, 0.01, 0.25, 5000.0, 1e9):
        frame = synthetic_ticks("X", tick_size)
        assert frame is not None and len(frame) > 50
        for tick in frame.ticks():
            validate_tick(tick)
    assert synthetic_ticks("X", 1e12) is None  # no 5-level book fits below the price bound


def test_a_model_answering_finite_probabilities_passes_and_a_nan_one_is_refused():
    def fine(x):
        p = np.full((len(x), 3), 1 / 3)
        return p, p

    check_serving_path(_model(fine))

    def broken(x):
        p = np.full((len(x), 3), np.nan)
        return p, p

    with pytest.raises(ModelLoadError, match="non-finite probabilities on ticks of"):
        check_serving_path(_model(broken))
