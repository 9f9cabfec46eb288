"""Streaming feature path: per-instrument state updated one tick at a time.

The per-tick arithmetic is compiled (`_kernel.c`, built by `make install`): the
formulas of `spec.py`, operation for operation as the vectorised path
(`update_frame`, `batch.py`) computes them, so both give the same bits (tested).
Memory per instrument is bounded: nine histories of at most MAX_LOOKBACK + 1
doubles and as many timestamps, in two small numpy arrays (about 4 KB).
"""

from __future__ import annotations

import numpy as np

from ..core.ticks import Tick, TickFrame
from . import _kernel
from .calendar import DAY_NS, HOUR_NS, MINUTE_NS
from .config import FeatureConfig
from .spec import (
    FEATURE_NAMES,
    LOOKBACKS,
    MAX_LOOKBACK,
    MAX_PER_DEPTH,
    MIN_SPAN_S,
    NS_PER_S,
)
from .time_features import time_features

_MINUTE = float(MINUTE_NS)


def _f64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


# The rows of InstrumentState.hist, as _kernel.c lays them out
HISTORY_ROWS = ("spread_ticks", "imb1", "pv", "volume", "mid", "ret", "depth1", "sv", "trade")
CAPACITY = MAX_LOOKBACK + 1  # one more mid than the longest lookback: return_50 needs mid 50 ticks ago
# _kernel.c repeats spec.py's constants: a change to one without the other must not load
if (len(HISTORY_ROWS), CAPACITY, len(FEATURE_NAMES), LOOKBACKS, MAX_PER_DEPTH, MIN_SPAN_S, NS_PER_S) != (
    _kernel.N_HIST,
    _kernel.CAP,
    _kernel.N_FEATURES,
    _kernel.LOOKBACKS,
    _kernel.MAX_PER_DEPTH,
    _kernel.MIN_SPAN_S,
    _kernel.NS_PER_S,
):
    raise ImportError("tickserve.features._kernel was built from another spec.py: run make install")


class InstrumentState:
    """Rolling history of one instrument, newest value first: `hist[r, i]` is history row r
    (HISTORY_ROWS) i ticks back, `stamps[i]` that tick's timestamp; of each, only the first
    min(count, MAX_LOOKBACK) values (CAPACITY for the mids) mean anything."""

    __slots__ = ("count", "hist", "stamps", "tick_size")

    def __init__(self, tick_size: float) -> None:
        self.tick_size = tick_size
        self.count = 0
        self.hist = np.zeros((len(HISTORY_ROWS), CAPACITY))
        self.stamps = np.zeros(CAPACITY, dtype=np.int64)


class StreamingFeatures:
    """Feature state for one stream: `update(tick)` returns the full feature vector."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._states: dict[str, InstrumentState] = {}
        calendar = config.calendar
        self._open_ns = calendar.open_ns
        self._close_ns = calendar.close_ns
        self._weekdays = frozenset(calendar.weekdays)
        self._calendar = calendar
        self._hour = None
        self._offset = 0

    def __len__(self) -> int:
        return len(self._states)

    def count(self, instrument: str) -> int:
        state = self._states.get(instrument)
        return state.count if state else 0

    def drop(self, instrument: str) -> None:
        self._states.pop(instrument, None)

    def update(self, tick: Tick) -> list[float]:
        state = self._states.get(tick.instrument)
        if state is None:
            state = self._states[tick.instrument] = InstrumentState(self.config.tick_size(tick.instrument))
        session, since_open, to_close = self._time_features(tick.timestamp_ns)
        row = _kernel.update(
            state.hist,
            state.stamps,
            state.count,
            state.tick_size,
            tick.bid_price,
            tick.bid_size,
            tick.ask_price,
            tick.ask_size,
            tick.last_price,
            tick.last_size,
            tick.aggressor,
            tick.timestamp_ns,
            session,
            since_open,
            to_close,
        )
        state.count += 1
        return row

    def update_many(self, ticks: list[Tick]) -> tuple[np.ndarray, list[int]]:
        """`update` for many ticks at once: (feature rows, each tick's count after it)."""
        rows, counts = self.update_frame(TickFrame.from_ticks(ticks))
        return rows, counts.tolist()

    def update_frame(
        self, frame: TickFrame, groups: tuple[list[str], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`update` for ticks in columns (training's `batch_features`, big messages, the
        columnar stream): (feature rows in frame order, each tick's count after it, int64).

        `frame` must hold valid ticks as `TickFrame.from_ticks` lays them out (levels padded
        with NaN). Each instrument's rows go through the same compiled step as `update`, in
        one call per instrument, so the rows are `update`'s to the last bit.
        `groups`: (names, codes) with `names[codes[i]] == frame.instrument[i]` and every name
        used, when the caller has them (saves sorting the instrument strings).
        """
        n = len(frame)
        out = np.empty((n, len(FEATURE_NAMES)))
        counts_after = np.zeros(n, dtype=np.int64)
        if n == 0:
            return out, counts_after
        names, codes = groups if groups is not None else np.unique(frame.instrument, return_inverse=True)
        session, since_open, to_close = time_features(frame.timestamp_ns, self.config)
        columns = (
            frame.bid_price.shape[1],
            _f64(frame.bid_price),
            _f64(frame.bid_size),
            _f64(frame.ask_price),
            _f64(frame.ask_size),
            _f64(frame.last_price),
            _f64(frame.last_size),
            np.ascontiguousarray(frame.aggressor, dtype=np.int64),
            np.ascontiguousarray(frame.timestamp_ns, dtype=np.int64),
            session,
            since_open,
            to_close,
        )
        order = np.argsort(codes, kind="stable")  # each instrument's rows, in frame (time) order
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        for g, name in enumerate(names):
            members = order[bounds[g] : bounds[g + 1]].astype(np.int64)
            if not len(members):
                continue
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = InstrumentState(self.config.tick_size(name))
            _kernel.update_rows(state.hist, state.stamps, state.count, state.tick_size, *columns, members, out)
            counts_after[members] = np.arange(state.count + 1, state.count + len(members) + 1)
            state.count += len(members)
        return out, counts_after

    def _time_features(self, ts: int) -> tuple[float, float, float]:
        hour = ts // HOUR_NS
        if hour != self._hour:
            self._hour = hour
            self._offset = self._calendar.utc_offset_ns(hour)
        local = ts + self._offset
        day = local // DAY_NS
        in_day = local - day * DAY_NS
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        session = 1.0 if weekday in self._weekdays and self._open_ns <= in_day < self._close_ns else 0.0
        return session, (in_day - self._open_ns) / _MINUTE, (self._close_ns - in_day) / _MINUTE
