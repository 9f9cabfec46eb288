"""The load-time check of the whole path a model will serve: a synthetic window of ticks through
the feature stage with the model's own feature config, the model, its calibration and its
signal rules. A model that loads READY then answers; one whose config makes any step fail or
give non-finite values is FAILED at load with the step named, not INTERNAL on every request.
"""

from __future__ import annotations

import numpy as np

from ..core.signals import decide_many
from ..core.ticks import TickFrame
from ..core.validation import MAX_PRICE, MIN_PRICE
from ..errors import ModelLoadError
from ..features import FEATURE_INDEX, MAX_LOOKBACK, StreamingFeatures

_TICKS = MAX_LOOKBACK + 10  # past warm-up: every window full
_START_NS = 1_704_205_800_000_000_000  # a weekday at a US open: session features take both values


def synthetic_ticks(instrument: str, tick_size: float, n: int = _TICKS) -> TickFrame | None:
    """n valid ticks of a 5-level book on the instrument's tick grid, a random walk with trades on
    every third tick; None when no such book fits the price bounds (a tick size near them)."""
    rng = np.random.default_rng(0)
    steps = np.cumsum(rng.integers(-1, 2, n))
    base = max(min(1000 * tick_size, MAX_PRICE / 10), 100 * MIN_PRICE)
    if base + (int(steps.max() - steps.min()) + 6) * tick_size >= MAX_PRICE:
        return None
    frame = TickFrame.empty(n)
    frame.instrument[:] = instrument
    frame.timestamp_ns[:] = _START_NS + np.arange(n, dtype=np.int64) * 250_000_000
    levels = np.arange(5)
    best_bid = base + (steps - steps.min()) * tick_size
    frame.bid_price[:, :5] = best_bid[:, None] - levels * tick_size
    frame.ask_price[:, :5] = best_bid[:, None] + (1 + levels) * tick_size
    frame.bid_size[:, :5] = rng.integers(1, 50, (n, 5))
    frame.ask_size[:, :5] = rng.integers(1, 50, (n, 5))
    trades = np.arange(n) % 3 == 0
    frame.last_price[:] = np.where(trades, frame.ask_price[:, 0], 0.0)
    frame.last_size[:] = np.where(trades, 1.0, 0.0)
    return frame


def check_serving_path(model) -> None:
    """ModelLoadError naming the step when the path fails or gives non-finite values (`model`:
    a LoadedModel with its manifest, feature_index, predict)."""
    config = model.manifest.feature_config
    names = ["(default)", *(name for name, _ in config.tick_sizes)]
    for name in names:
        frame = synthetic_ticks(name, config.tick_size(name))
        if frame is None:
            continue
        try:
            rows, _ = StreamingFeatures(config).update_frame(frame)
        except Exception as exc:  # noqa: BLE001 - reported as the model's load failure
            raise ModelLoadError(f"the feature stage fails on ticks of {name}: {type(exc).__name__}: {exc}") from exc
        x = rows[:, model.feature_index]
        if not np.isfinite(x).all():
            bad = model.manifest.feature_names[int(np.flatnonzero(~np.isfinite(x).all(axis=0))[0])]
            raise ModelLoadError(f"the feature stage gives non-finite {bad} on ticks of {name} (check the tick size)")
        _, probs = model.predict(x)
        if not np.isfinite(probs).all():
            raise ModelLoadError(f"the model gives non-finite probabilities on ticks of {name}")
        try:
            decide_many(probs, rows[:, FEATURE_INDEX["spread_ticks"]], model.manifest.signal_rules)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"the signal rules fail: {type(exc).__name__}: {exc}") from exc
