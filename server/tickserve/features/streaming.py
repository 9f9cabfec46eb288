"""Streaming feature path: per-instrument state updated one tick at a time.

Memory per instrument is bounded: ten histories of at most MAX_LOOKBACK values,
each an `array.array` of raw doubles (about 5 KB an instrument; deques of Python
floats took 21 KB, which with thousands of instruments is what a server holds). The
arithmetic mirrors `batch.py` operation for operation; see `spec.py` for the
definitions and the warm-up rule. Plain float arithmetic on purpose: for a
few dozen values per tick it is much cheaper than numpy temporaries.
"""

from __future__ import annotations

from array import array
from itertools import islice
from math import floor, sqrt

import numpy as np

from ..ticks import Tick, TickFrame
from .calendar import DAY_NS, HOUR_NS, MINUTE_NS
from .config import FeatureConfig
from .spec import (
    BASE_FEATURES,
    FEATURE_NAMES,
    LOOKBACKS,
    MAX_LOOKBACK,
    MAX_PER_DEPTH,
    MIN_SPAN_S,
    NS_PER_S,
    row_features,
)

_MINUTE = float(MINUTE_NS)


class InstrumentState:
    """Rolling history of one instrument, newest value first in every array.

    New values go in at index 0 (`insert(0, x)` moves at most 50 doubles, a few
    nanoseconds) and the oldest drops off the end once the history is full. Raw
    doubles keep an instrument's state at a quarter of what deques of Python floats
    took, which matters to a stream with thousands of instruments.
    """

    __slots__ = (
        "tick_size",
        "count",
        "spread_ticks",
        "imbalance",
        "pv",
        "volume",
        "mid",
        "ret",
        "depth1",
        "sv",
        "trade",
        "ts",
    )

    def __init__(self, tick_size: float) -> None:
        self.tick_size = tick_size
        self.count = 0
        self.spread_ticks = array("d")
        self.imbalance = array("d")
        self.pv = array("d")
        self.volume = array("d")
        # one more mid than the longest lookback: return_50 needs mid 50 ticks ago
        self.mid = array("d")
        self.ret = array("d")
        self.depth1 = array("d")
        self.sv = array("d")  # signed trade volume
        self.trade = array("d")  # 1.0 on a trade tick
        self.ts = array("q")

    def histories(self) -> dict[str, array]:
        return {
            "spread_ticks": self.spread_ticks,
            "imb1": self.imbalance,
            "pv": self.pv,
            "volume": self.volume,
            "mid": self.mid,
            "ret": self.ret,
            "depth1": self.depth1,
            "sv": self.sv,
            "trade": self.trade,
            "ts": self.ts,
        }


def _capacity(key: str) -> int:
    return MAX_LOOKBACK + 1 if key == "mid" else MAX_LOOKBACK


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
        size = tick.last_size
        if size > 0:
            side = tick.aggressor or (
                1.0 if last >= a1 else -1.0 if last <= b1 else 1.0 if last > mid else -1.0 if last < mid else 0.0
            )
            sv = side * size
        else:
            sv = 0.0
        ts = tick.timestamp_ns
        interval = (ts - state.ts[0]) / NS_PER_S if state.count else 0.0

        mids = state.mid
        ret1 = mid / mids[0] - 1.0 if state.count else 0.0
        state.count += 1
        stamps = state.ts
        state.spread_ticks.insert(0, spread_ticks)
        state.imbalance.insert(0, imb1)
        state.pv.insert(0, last * size)
        state.volume.insert(0, size)
        mids.insert(0, mid)
        state.ret.insert(0, ret1)
        state.depth1.insert(0, d1 * 0.5)
        state.sv.insert(0, sv)
        state.trade.insert(0, 1.0 if size > 0 else 0.0)
        stamps.insert(0, ts)
        if state.count > MAX_LOOKBACK:
            del state.spread_ticks[MAX_LOOKBACK], state.imbalance[MAX_LOOKBACK], state.pv[MAX_LOOKBACK]
            del state.volume[MAX_LOOKBACK], state.ret[MAX_LOOKBACK], state.depth1[MAX_LOOKBACK]
            del state.sv[MAX_LOOKBACK], state.trade[MAX_LOOKBACK], stamps[MAX_LOOKBACK]
            if state.count > MAX_LOOKBACK + 1:
                del mids[MAX_LOOKBACK + 1]
        since_trade = (ts - stamps[-1]) / NS_PER_S
        for traded, when in zip(state.trade, stamps):
            if traded:
                since_trade = (ts - when) / NS_PER_S
                break

        out = row_features(
            spread,
            mid,
            spread_ticks,
            imb1,
            imb5,
            imb10,
            micro,
            last,
            T,
            session,
            since_open,
            to_close,
            interval,
            since_trade,
        )

        # One pass from the newest tick to the oldest, recording each lookback
        # when its window is complete (or the history runs out). Variances are
        # taken of values shifted by the newest one, so a flat window gives
        # exactly 0 and there is no cancellation when values sit far from 0.
        n = len(state.spread_ticks)
        s_sum = s_sq = i_sum = pv_sum = v_sum = r_sum = r_sq = 0.0
        d1_sum = sv_sum = t_sum = 0.0
        s_ref = spread_ticks
        r_ref = ret1
        s_min = s_max = spread_ticks
        m_min = m_max = mid
        k = 0
        lookbacks = iter(LOOKBACKS)
        target = next(lookbacks)
        for st, im, pv, vol, m, r, dp1, v_signed, traded in zip(
            state.spread_ticks,
            state.imbalance,
            state.pv,
            state.volume,
            mids,
            state.ret,
            state.depth1,
            state.sv,
            state.trade,
        ):
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
            d1_sum += dp1
            sv_sum += v_signed
            t_sum += traded
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
                span = (ts - stamps[c - 1]) / NS_PER_S
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
                    sv_sum / v_sum if v_sum > 0 else 0.0,
                    _per_depth(sv_sum, d1_sum / c),
                    t_sum / (span if span > MIN_SPAN_S else MIN_SPAN_S) if c > 1 else 0.0,
                    span / (c - 1) if c > 1 else 0.0,
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
        MAX_LOOKBACK ticks, as the histories hold them) followed by the new ticks, so the
        rows equal what `update` would give tick by tick, to the last bit (tested).
        """
        rows, counts = self.update_frame(TickFrame.from_ticks(ticks))
        return rows, counts.tolist()

    def update_frame(
        self, frame: TickFrame, groups: tuple[list[str], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`update_many` for ticks already in columns (the columnar StreamSignals path and, on a
        fresh state, `batch_features`): (feature rows, each tick's count after it, as an int64 array).

        `frame` must hold valid ticks as `TickFrame.from_ticks` lays them out (levels
        padded with NaN); the rows are the same, to the last bit, as `update` tick by tick.
        `groups`: (names, codes) with `names[codes[i]] == frame.instrument[i]` and every name
        used, when the caller has them (saves sorting the instrument strings).

        Each instrument's carried history (the last MAX_LOOKBACK ticks, as the histories hold them,
        with the values each tick got when it arrived) is laid before its new ticks, so the
        windows see exactly what `update` would see.
        """
        from .batch import WindowInputs, row_columns, window_columns, window_columns_padded

        n = len(frame)
        if n == 0:
            return np.empty((0, len(FEATURE_NAMES))), np.zeros(0, dtype=np.int64)
        names, codes = groups if groups is not None else np.unique(frame.instrument, return_inverse=True)
        rows = row_columns(frame, self.config, (names, codes))
        keys = ("spread_ticks", "imb1", "pv", "volume", "mid", "ret", "depth1", "sv", "trade", "ts", "last", "T")
        pieces: dict[str, list] = {k: [] for k in keys}
        pos_parts, real_parts, new_at = [], [], []
        counts_after = np.zeros(n, dtype=np.int64)
        interval = np.zeros(n)
        offset = 0
        for g, name in enumerate(names):
            members = np.flatnonzero(codes == g)
            m = len(members)
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = InstrumentState(self.config.tick_size(name))
            h = min(state.count, MAX_LOOKBACK)
            histories = state.histories()
            hist = {k: list(islice(values, h))[::-1] for k, values in histories.items()}
            new = {
                k: getattr(rows, k)[members]
                for k in ("spread_ticks", "imb1", "pv", "volume", "mid", "depth1", "sv", "trade")
            }
            new["ts"] = frame.timestamp_ns[members]
            # the values a tick gets against the instrument's previous tick
            mid_before = np.concatenate([[hist["mid"][-1] if h else np.nan], new["mid"][:-1]])
            with np.errstate(divide="ignore", invalid="ignore"):
                new["ret"] = new["mid"] / mid_before - 1.0
            ts_before = np.concatenate([[hist["ts"][-1] if h else 0], new["ts"][:-1]])
            new_interval = (new["ts"] - ts_before) / NS_PER_S
            if not h:  # an instrument's first tick
                new["ret"][0] = new_interval[0] = 0.0
            interval[members] = new_interval
            for key in histories:
                pieces[key].append(np.concatenate([np.asarray(hist[key], dtype=new[key].dtype), new[key]]))
            # history rows get the current row's own values where a window reads "current"
            pieces["last"].append(np.concatenate([np.zeros(h), rows.last[members]]))
            pieces["T"].append(np.full(h + m, state.tick_size))
            pos = np.arange(h + m)
            pos_parts.append(pos)
            real_parts.append(pos + (state.count - h))
            new_at.append((offset + h, members))
            offset += h + m
            # the new ticks enter the state, oldest first, as `update` would add them
            for key, values in histories.items():
                values[0:0] = array(values.typecode, new[key][::-1].tolist())
                del values[_capacity(key) :]
            counts_after[members] = np.arange(state.count + 1, state.count + m + 1)
            state.count += m
        cat = {k: np.concatenate(v) for k, v in pieces.items()}
        cat["ts"] = cat["ts"].astype(np.int64)
        inputs = WindowInputs(*(cat[k] for k in keys[:10]))
        pos, real = np.concatenate(pos_parts), np.concatenate(real_parts)
        if MAX_LOOKBACK * len(names) <= n:
            # the padded layout adds MAX_LOOKBACK rows per instrument: worth it with few instruments
            windows, since = window_columns_padded(inputs, cat["last"], cat["T"], pos, real)
            at = new_at
        else:  # mostly carried history (many instruments, few new ticks each): compute the new rows only
            new_rows = np.concatenate([np.arange(start, start + len(members)) for start, members in new_at])
            windows, since = window_columns(inputs, cat["last"], cat["T"], pos, real, rows=new_rows)
            at, done = [], 0
            for _, members in new_at:
                at.append((done, members))
                done += len(members)
        since_trade = np.empty(n)
        out = np.empty((n, len(FEATURE_NAMES)))
        n_base = len(BASE_FEATURES)
        for start, members in at:
            since_trade[members] = since[start : start + len(members)]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, :n_base] = np.column_stack(
                row_features(
                    rows.spread,
                    rows.mid,
                    rows.spread_ticks,
                    rows.imb1,
                    rows.imb5,
                    rows.imb10,
                    rows.micro,
                    rows.last,
                    rows.T,
                    rows.session,
                    rows.since_open,
                    rows.to_close,
                    interval,
                    since_trade,
                )
            )
        if windows:
            stacked = np.column_stack(windows)
            for start, members in at:
                out[members, n_base:] = stacked[start : start + len(members)]
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


def _per_depth(flow: float, depth: float) -> float:
    """flow / mean depth, 0 without depth, clamped to +-MAX_PER_DEPTH (see spec.py)."""
    if not depth > 0:
        return 0.0
    return max(-MAX_PER_DEPTH, min(MAX_PER_DEPTH, flow / depth))


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
