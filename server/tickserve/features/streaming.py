"""Streaming feature path: per-instrument state updated one tick at a time.

Memory per instrument is bounded (a few deques of MAX_LOOKBACK floats). The
arithmetic mirrors `batch.py` operation for operation; see `spec.py` for the
definitions and the warm-up rule. Plain float arithmetic on purpose: for a
few dozen values per tick it is much cheaper than numpy temporaries.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from math import floor, sqrt

import numpy as np

from ..ticks import Tick, TickFrame
from .calendar import DAY_NS, HOUR_NS, MINUTE_NS
from .config import FeatureConfig
from .spec import FEATURE_NAMES, LOOKBACKS, MAX_LOOKBACK, row_features

_MINUTE = float(MINUTE_NS)


class InstrumentState:
    """Rolling history of one instrument, newest value first in every deque."""

    __slots__ = ("tick_size", "count", "spread_ticks", "imbalance", "pv", "volume", "mid", "ret")

    def __init__(self, tick_size: float) -> None:
        self.tick_size = tick_size
        self.count = 0
        self.spread_ticks: deque[float] = deque(maxlen=MAX_LOOKBACK)
        self.imbalance: deque[float] = deque(maxlen=MAX_LOOKBACK)
        self.pv: deque[float] = deque(maxlen=MAX_LOOKBACK)
        self.volume: deque[float] = deque(maxlen=MAX_LOOKBACK)
        # one more mid than the longest lookback: return_50 needs mid 50 ticks ago
        self.mid: deque[float] = deque(maxlen=MAX_LOOKBACK + 1)
        self.ret: deque[float] = deque(maxlen=MAX_LOOKBACK)


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
        T = state.tick_size

        b1 = tick.bid_price[0]
        a1 = tick.ask_price[0]
        bs1 = tick.bid_size[0]
        as1 = tick.ask_size[0]
        mid = (a1 + b1) * 0.5
        # snapped to 1e-6 tick: 100.02 - 100.01 is 0.00999..., which must count as exactly one tick
        spread_ticks = floor((a1 - b1) / T * 1e6 + 0.5) / 1e6
        spread = spread_ticks * T
        d1 = bs1 + as1
        imb1 = (bs1 - as1) / d1 if d1 > 0 else 0.0
        imb5, imb10 = _depth_imbalance(tick.bid_size, tick.ask_size)
        micro = (b1 * as1 + a1 * bs1) / d1 if d1 > 0 else mid
        last = tick.last_price if tick.last_price > 0 else mid
        session, since_open, to_close = self._time_features(tick.timestamp_ns)

        mids = state.mid
        ret1 = mid / mids[0] - 1.0 if state.count else 0.0
        state.count += 1
        state.spread_ticks.appendleft(spread_ticks)
        state.imbalance.appendleft(imb1)
        state.pv.appendleft(last * tick.last_size)
        state.volume.appendleft(tick.last_size)
        mids.appendleft(mid)
        state.ret.appendleft(ret1)

        out = row_features(
            spread, mid, spread_ticks, imb1, imb5, imb10, micro, last, T, session, since_open, to_close
        )

        # One pass from the newest tick to the oldest, recording each lookback
        # when its window is complete (or the history runs out). Variances are
        # taken of values shifted by the newest one, so a flat window gives
        # exactly 0 and there is no cancellation when values sit far from 0.
        n = len(state.spread_ticks)
        s_sum = s_sq = i_sum = pv_sum = v_sum = r_sum = r_sq = 0.0
        s_ref = spread_ticks
        r_ref = ret1
        s_min = s_max = spread_ticks
        m_min = m_max = mid
        k = 0
        lookbacks = iter(LOOKBACKS)
        target = next(lookbacks)
        for st, im, pv, vol, m, r in zip(state.spread_ticks, state.imbalance, state.pv, state.volume, mids, state.ret):
            s_sum += st
            ds = st - s_ref
            s_sq += ds * ds
            if st < s_min:
                s_min = st
            elif st > s_max:
                s_max = st
            i_sum += im
            pv_sum += pv
            v_sum += vol
            if m < m_min:
                m_min = m
            elif m > m_max:
                m_max = m
            dr = r - r_ref
            r_sum += dr
            r_sq += dr * dr
            k += 1
            while k == target or (k == n and target is not None):
                c = k
                s_mean = s_sum / c
                s_shift = s_mean - s_ref
                s_var = s_sq / c - s_shift * s_shift
                r_shift = r_sum / c
                r_var = r_sq / c - r_shift * r_shift
                vwap = pv_sum / v_sum if v_sum > 0 else mid
                back = mids[target if target < len(mids) else len(mids) - 1]
                m_range = _snap((m_max - m_min) / T)
                out += (
                    s_mean,
                    sqrt(s_var) if s_var > 0 else 0.0,
                    (spread_ticks - s_min) / (s_max - s_min) if s_max > s_min else 0.5,
                    imb1 - i_sum / c,
                    vwap,
                    (last - vwap) / T,
                    mid / back - 1.0,
                    sqrt(r_var) if r_var > 0 else 0.0,
                    _snap((mid - m_min) / T) / m_range if m_range > 0 else 0.5,
                )
                target = next(lookbacks, None)
                if target is None:
                    break
            if target is None:
                break
        return out

    def update_many(self, ticks: list[Tick]) -> tuple[np.ndarray, list[int]]:
        """`update` for many ticks at once, vectorised: (feature rows, each tick's count after it).

        The batch path runs over each instrument's carried-over history (the last
        MAX_LOOKBACK ticks, as the deques hold them) followed by the new ticks, so the
        rows equal what `update` would give tick by tick, to the last bit (tested).
        """
        rows, counts = self.update_frame(TickFrame.from_ticks(ticks))
        return rows, counts.tolist()

    def update_frame(
        self, frame: TickFrame, groups: tuple[list[str], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`update_many` for ticks already in columns (the columnar StreamSignals path):
        (feature rows, each tick's count after it, as an int64 array).

        `frame` must hold valid ticks as `TickFrame.from_ticks` lays them out (levels
        padded with NaN); the rows are the same, to the last bit, as `update` tick by tick.
        `groups`: (names, codes) with `names[codes[i]] == frame.instrument[i]` and every name
        used, when the caller has them (saves sorting the instrument strings).
        """
        from .batch import WindowInputs, row_columns, window_columns, window_columns_padded

        ticks = frame.timestamp_ns  # only its length is used below
        names, codes = groups if groups is not None else np.unique(frame.instrument, return_inverse=True)
        rows = row_columns(frame, self.config, (names, codes))
        pieces: dict[str, list] = {k: [] for k in ("spread_ticks", "imb1", "pv", "volume", "mid", "ret", "last", "T")}
        pos_parts, real_parts, new_at = [], [], []
        counts_after = np.zeros(len(ticks), dtype=np.int64)
        offset = 0
        for g, name in enumerate(names):
            members = np.flatnonzero(codes == g)
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = InstrumentState(self.config.tick_size(name))
            h = min(state.count, MAX_LOOKBACK)
            hist = {
                "spread_ticks": list(islice(state.spread_ticks, h))[::-1],
                "imb1": list(islice(state.imbalance, h))[::-1],
                "pv": list(islice(state.pv, h))[::-1],
                "volume": list(islice(state.volume, h))[::-1],
                "mid": list(islice(state.mid, h))[::-1],
                "ret": list(islice(state.ret, h))[::-1],
            }
            new = {
                "spread_ticks": rows.spread_ticks[members],
                "imb1": rows.imb1[members],
                "pv": rows.pv[members],
                "volume": rows.volume[members],
                "mid": rows.mid[members],
            }
            mid = np.concatenate([hist["mid"], new["mid"]])
            m = len(members)
            prev = mid[h - 1 : h - 1 + m] if h else np.concatenate([[np.nan], new["mid"][:-1]])
            with np.errstate(divide="ignore", invalid="ignore"):
                ret_new = new["mid"] / prev - 1.0
            if not h:
                ret_new[0] = 0.0  # an instrument's first tick
            for key in ("spread_ticks", "imb1", "pv", "volume"):
                pieces[key].append(np.concatenate([hist[key], new[key]]))
            pieces["mid"].append(mid)
            pieces["ret"].append(np.concatenate([hist["ret"], ret_new]))
            # history rows get the current row's own values where a window reads "current"
            pieces["last"].append(np.concatenate([np.zeros(h), rows.last[members]]))
            pieces["T"].append(np.full(h + m, state.tick_size))
            pos = np.arange(h + m)
            pos_parts.append(pos)
            real_parts.append(pos + (state.count - h))
            new_at.append((offset + h, members))
            offset += h + m
            # the new ticks enter the state, oldest first, as `update` would add them
            for key, dq in (("spread_ticks", state.spread_ticks), ("imb1", state.imbalance), ("pv", state.pv),
                            ("volume", state.volume), ("mid", state.mid)):
                dq.extendleft(new[key].tolist())
            state.ret.extendleft(ret_new.tolist())
            counts_after[members] = np.arange(state.count + 1, state.count + m + 1)
            state.count += m
        cat = {k: np.concatenate(v) for k, v in pieces.items()}
        # the padded layout adds MAX_LOOKBACK rows per instrument: worth it with few instruments
        windows_of = window_columns_padded if MAX_LOOKBACK * len(names) <= offset else window_columns
        windows = np.column_stack(
            windows_of(
                WindowInputs(cat["spread_ticks"], cat["imb1"], cat["pv"], cat["volume"], cat["mid"], cat["ret"]),
                cat["last"], cat["T"], np.concatenate(pos_parts), np.concatenate(real_parts),
            )
        )
        out = np.empty((len(ticks), len(FEATURE_NAMES)))
        out[:, : len(rows.base)] = np.column_stack(rows.base)
        for start, members in new_at:
            out[members, len(rows.base) :] = windows[start : start + len(members)]
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


def _snap(ticks: float) -> float:
    """A price difference in ticks, snapped to 1e-6 tick (see spec.py)."""
    return floor(ticks * 1e6 + 0.5) / 1e6


def _depth_imbalance(bid_size, ask_size) -> tuple[float, float]:
    """Imbalance over the first 5 and the first 10 levels, summed level by level."""
    nb, na = len(bid_size), len(ask_size)
    sb = sa = 0.0
    for level in range(min(nb, 5)):
        sb += bid_size[level]
    for level in range(min(na, 5)):
        sa += ask_size[level]
    d5 = sb + sa
    imb5 = (sb - sa) / d5 if d5 > 0 else 0.0
    for level in range(5, min(nb, 10)):
        sb += bid_size[level]
    for level in range(5, min(na, 10)):
        sa += ask_size[level]
    d10 = sb + sa
    return imb5, ((sb - sa) / d10 if d10 > 0 else 0.0)
