"""Labels from the ticks themselves: where the mid goes `horizon` ticks later.

future mid - current mid (same instrument, `horizon` ticks ahead), in tick
sizes and rounded to 1e-6 tick so that float noise in prices like 100.01 does
not flip a 2-tick move: >= +threshold is BUY, <= -threshold is SELL, else HOLD.
The last `horizon` ticks of each instrument have no future and get no label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features.config import FeatureConfig
from .ticks import TickFrame

# Class order of every model: index = class id.
CLASSES = ("SELL", "HOLD", "BUY")
SELL, HOLD, BUY = 0, 1, 2
NO_LABEL = -1


@dataclass(frozen=True)
class LabelConfig:
    horizon_ticks: int = 50
    threshold_ticks: float = 2.0

    def __post_init__(self) -> None:
        if self.horizon_ticks < 1:
            raise ValueError(f"horizon_ticks must be >= 1, got {self.horizon_ticks}")
        if not self.threshold_ticks > 0:
            raise ValueError(f"threshold_ticks must be > 0, got {self.threshold_ticks}")

    def to_dict(self) -> dict:
        return {"horizon_ticks": self.horizon_ticks, "threshold_ticks": self.threshold_ticks}

    @staticmethod
    def from_dict(d: dict) -> "LabelConfig":
        return LabelConfig(int(d["horizon_ticks"]), float(d["threshold_ticks"]))


def label_move(move_ticks: float, threshold: float) -> int:
    """The class of one mid move given in ticks (the same rule as `make_labels`)."""
    # np.round(x, 6) is rint(x * 1e6) / 1e6 and Python's round() is round-half-even like
    # rint: the same value as make_labels without a numpy call per tick
    move = round(move_ticks * 1e6) / 1e6
    if move >= threshold:
        return BUY
    if move <= -threshold:
        return SELL
    return HOLD


def mid_prices(frame: TickFrame) -> np.ndarray:
    return (frame.ask_price[:, 0] + frame.bid_price[:, 0]) * 0.5


def make_labels(frame: TickFrame, labels: LabelConfig, features: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(label per row, index of the row whose mid defines it); both -1 where unlabeled."""
    n = len(frame)
    y = np.full(n, NO_LABEL, dtype=np.int64)
    future = np.full(n, -1, dtype=np.int64)
    mid = mid_prices(frame)
    h = labels.horizon_ticks
    for name in np.unique(frame.instrument):
        rows = np.flatnonzero(frame.instrument == name)
        backwards = np.flatnonzero(np.diff(frame.timestamp_ns[rows]) < 0)
        if len(backwards):
            row = int(rows[backwards[0] + 1])
            raise ValueError(f"ticks of {name!r} are not in time order: row {row} is earlier than the tick before it")
        if len(rows) <= h:
            continue
        now, later = rows[:-h], rows[h:]
        move = np.round((mid[later] - mid[now]) / features.tick_size(str(name)), 6)
        y[now] = np.where(move >= labels.threshold_ticks, BUY, np.where(move <= -labels.threshold_ticks, SELL, HOLD))
        future[now] = later
    return y, future
