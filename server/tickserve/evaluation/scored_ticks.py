"""ScoredTicks: the contract between the serving path and Evaluate's bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.signals import ACTIONS, RISKS, STRENGTHS, SignalArrays, SignalValues
from ..core.ticks import Tick, TickFrame


@dataclass(frozen=True)
class ScoredTicks:
    """Ticks in arrival order with the signal each got: what Evaluate counts, as columns."""

    names: list[str]  # the instruments
    index: np.ndarray  # (n,) int: each tick's instrument, an index into `names`
    timestamp_ns: np.ndarray  # (n,) int64
    bid: np.ndarray  # (n,) best bid
    ask: np.ndarray  # (n,) best ask
    bid_size: np.ndarray  # (n,) size at the best bid
    ask_size: np.ndarray  # (n,) size at the best ask
    probs: np.ndarray  # (n, 3) calibrated (SELL, HOLD, BUY): the signal's probabilities
    raw: np.ndarray  # (n, 3) the adapter's probabilities before calibration
    action: np.ndarray  # (n,) index into ACTIONS
    strength: np.ndarray  # (n,) index into STRENGTHS
    risk: np.ndarray  # (n,) index into RISKS

    def __len__(self) -> int:
        return len(self.timestamp_ns)

    @staticmethod
    def of_frame(frame: TickFrame, probs: np.ndarray, raw: np.ndarray, signal: SignalArrays) -> ScoredTicks:
        names, index = np.unique(frame.instrument, return_inverse=True)
        return ScoredTicks(
            names.tolist(),
            index.ravel(),
            frame.timestamp_ns,
            frame.bid_price[:, 0],
            frame.ask_price[:, 0],
            frame.bid_size[:, 0],
            frame.ask_size[:, 0],
            np.asarray(probs, dtype=np.float64),
            np.asarray(raw, dtype=np.float64),
            np.asarray(signal.action),
            np.asarray(signal.strength),
            np.asarray(signal.risk),
        )

    @staticmethod
    def of_tick(tick: Tick, signal: SignalValues, raw: tuple[float, float, float]) -> ScoredTicks:
        def one(value, dtype=np.float64) -> np.ndarray:
            return np.array([value], dtype=dtype)

        return ScoredTicks(
            [tick.instrument],
            np.zeros(1, dtype=np.int64),
            one(tick.timestamp_ns, np.int64),
            one(tick.bid_price[0]),
            one(tick.ask_price[0]),
            one(tick.bid_size[0]),
            one(tick.ask_size[0]),
            np.array([[signal.p_sell, signal.p_hold, signal.p_buy]]),
            np.array([raw], dtype=np.float64),
            one(ACTIONS.index(signal.action), np.int64),
            one(STRENGTHS.index(signal.strength), np.int64),
            one(RISKS.index(signal.risk), np.int64),
        )


__all__ = ["ScoredTicks"]
