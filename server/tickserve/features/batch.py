"""Batch feature path: whole arrays with numpy, for training and offline scoring.

Mirrors `streaming.py` operation for operation (same formulas, same order of
summation: newest tick to oldest, absent values added as +0.0, which leaves a
sum unchanged), so both paths give bit-identical features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ticks import TickFrame
from .calendar import DAY_NS, HOUR_NS, MINUTE_NS
from .config import FeatureConfig
from .spec import FEATURE_NAMES, LOOKBACKS, MAX_LOOKBACK, row_features

_MINUTE = float(MINUTE_NS)


def batch_features(frame: TickFrame, config: FeatureConfig) -> np.ndarray:
    """The feature matrix (len(frame), len(FEATURE_NAMES)), rows in frame order."""
    n = len(frame)
    if n == 0:
        return np.empty((0, len(FEATURE_NAMES)))
    rows = row_columns(frame, config)
    names, codes = np.unique(frame.instrument, return_inverse=True)  # object array: no str truncation
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    pos = np.arange(n) - np.searchsorted(sorted_codes, sorted_codes, side="left")  # earlier ticks of the instrument
    mid = rows.mid[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(pos > 0, mid / _shift(mid, 1, np.nan) - 1.0, 0.0)
    windows = window_columns(
        WindowInputs(rows.spread_ticks[order], rows.imb1[order], rows.pv[order], rows.volume[order], mid, ret),
        rows.last[order], rows.T[order], pos, pos,
    )
    out = np.empty((n, len(FEATURE_NAMES)))
    out[:, : len(rows.base)] = np.column_stack(rows.base)
    out[order, len(rows.base) :] = np.column_stack(windows)
    return out


@dataclass
class RowColumns:
    """What each tick gives on its own: the base features and the inputs of the windows."""

    base: list[np.ndarray]  # the BASE_FEATURES columns, in order
    mid: np.ndarray
    spread_ticks: np.ndarray
    imb1: np.ndarray
    pv: np.ndarray  # last * last_size
    volume: np.ndarray  # last_size
    last: np.ndarray
    T: np.ndarray  # tick size per row


@dataclass
class WindowInputs:
    """Per-tick values the rolling windows read, grouped by instrument, oldest first."""

    spread_ticks: np.ndarray
    imb1: np.ndarray
    pv: np.ndarray
    volume: np.ndarray
    mid: np.ndarray
    ret: np.ndarray  # 1-tick return, 0 for an instrument's first tick


def row_columns(frame: TickFrame, config: FeatureConfig, groups: tuple | None = None) -> RowColumns:
    """Row-wise features and window inputs, in frame order (no grouping needed).
    `groups`: (names, codes) of the instruments, when the caller has them."""
    names, codes = groups if groups is not None else np.unique(frame.instrument, return_inverse=True)
    T = np.array([config.tick_size(str(name)) for name in names])[codes]
    bid_price, bid_size, ask_price, ask_size = frame.bid_price, frame.bid_size, frame.ask_price, frame.ask_size
    with np.errstate(divide="ignore", invalid="ignore"):
        b1, a1, bs1, as1 = bid_price[:, 0], ask_price[:, 0], bid_size[:, 0], ask_size[:, 0]
        mid = (a1 + b1) * 0.5
        spread_ticks = _snap((a1 - b1) / T)  # snapped to 1e-6 tick, as streaming
        spread = spread_ticks * T
        d1 = bs1 + as1
        imb1 = np.where(d1 > 0, (bs1 - as1) / d1, 0.0)
        imb5, imb10 = _depth_imbalance(bid_size, ask_size)
        micro = np.where(d1 > 0, (b1 * as1 + a1 * bs1) / d1, mid)
        last = np.where(frame.last_price > 0, frame.last_price, mid)
        session, since_open, to_close = _time_features(frame.timestamp_ns, config)
        base = row_features(
            spread, mid, spread_ticks, imb1, imb5, imb10, micro, last, T, session, since_open, to_close
        )
    return RowColumns(base, mid, spread_ticks, imb1, last * frame.last_size, frame.last_size, last, T)


def window_columns(
    w: WindowInputs, last: np.ndarray, T: np.ndarray, pos: np.ndarray, real_pos: np.ndarray
) -> list[np.ndarray]:
    """The rolling features of every row, rows grouped by instrument and oldest first.

    `pos` counts the earlier rows of the same instrument present in these arrays;
    `real_pos` the earlier ticks the instrument really had (more, when the arrays
    start with only the last MAX_LOOKBACK ticks of a longer history).
    """
    n = len(pos)
    index = np.arange(n)
    spread_ticks, imb1, pv, volume, mid, ret = w.spread_ticks, w.imb1, w.pv, w.volume, w.mid, w.ret
    cols: list[np.ndarray] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        zeros = lambda: np.zeros(n)  # noqa: E731
        s_sum, s_sq, i_sum, pv_sum, v_sum, r_sum, r_sq = (zeros() for _ in range(7))
        s_min = np.full(n, np.inf)
        s_max = np.full(n, -np.inf)
        m_min = np.full(n, np.inf)
        m_max = np.full(n, -np.inf)
        for k in range(MAX_LOOKBACK):
            have = pos >= k
            st = np.where(have, _shift(spread_ticks, k, 0.0), 0.0)
            r = np.where(have, _shift(ret, k, 0.0), 0.0)
            m = _shift(mid, k, np.nan)
            s_sum += st
            ds = np.where(have, st - spread_ticks, 0.0)
            s_sq += ds * ds
            s_min = np.where(have, np.minimum(s_min, st), s_min)
            s_max = np.where(have, np.maximum(s_max, st), s_max)
            i_sum += np.where(have, _shift(imb1, k, 0.0), 0.0)
            pv_sum += np.where(have, _shift(pv, k, 0.0), 0.0)
            v_sum += np.where(have, _shift(volume, k, 0.0), 0.0)
            m_min = np.where(have, np.minimum(m_min, m), m_min)
            m_max = np.where(have, np.maximum(m_max, m), m_max)
            dr = np.where(have, r - ret, 0.0)
            r_sum += dr
            r_sq += dr * dr
            lookback = k + 1
            if lookback not in LOOKBACKS:
                continue
            c = np.minimum(real_pos + 1, lookback).astype(np.float64)
            s_mean = s_sum / c
            s_shift = s_mean - spread_ticks
            s_var = s_sq / c - s_shift * s_shift
            r_shift = r_sum / c
            r_var = r_sq / c - r_shift * r_shift
            # pos >= lookback whenever real_pos > pos (a history of MAX_LOOKBACK rows is kept)
            back = mid[index - np.minimum(lookback, pos)]
            cols += _lookback_columns(
                s_mean, s_var, s_min, s_max, spread_ticks, imb1, i_sum / c, pv_sum, v_sum, mid, last, T, back, r_var,
                m_min, m_max,
            )  # fmt: skip
    return cols


def _lookback_columns(s_mean, s_var, s_min, s_max, spread_ticks, imb1, i_mean, pv_sum, v_sum, mid, last, T, back,
                      r_var, m_min, m_max) -> list[np.ndarray]:  # fmt: skip
    """The nine features of one lookback from its window statistics: the one formula both
    window kernels use, so they cannot drift apart (streaming == batch to the last bit)."""
    vwap = np.where(v_sum > 0, pv_sum / v_sum, mid)
    m_range = _snap((m_max - m_min) / T)
    return [
        s_mean,
        np.where(s_var > 0, np.sqrt(np.maximum(s_var, 0.0)), 0.0),
        np.where(s_max > s_min, (spread_ticks - s_min) / (s_max - s_min), 0.5),
        imb1 - i_mean,
        vwap,
        (last - vwap) / T,
        mid / back - 1.0,
        np.where(r_var > 0, np.sqrt(np.maximum(r_var, 0.0)), 0.0),
        np.where(m_range > 0, _snap((mid - m_min) / T) / m_range, 0.5),
    ]


def window_columns_padded(
    w: WindowInputs, last: np.ndarray, T: np.ndarray, pos: np.ndarray, real_pos: np.ndarray
) -> list[np.ndarray]:
    """`window_columns`, the same values to the last bit, with fewer numpy calls: each
    instrument's rows are laid out after MAX_LOOKBACK fill rows (+0.0 for the sums, +-inf for
    the minima and maxima), so the value k ticks back is a slice, with no shifted copy and no
    mask, except for the two squared deviations. The arithmetic is the loop's, in its order:
    a fill row adds +0.0 to a sum, as the masked +0.0 of `window_columns` does, and leaves a
    min/max unchanged, as its `where` does. Costs (MAX_LOOKBACK x instruments) extra rows: meant
    for blocks with few instruments (see `update_frame`)."""
    n = len(pos)
    K = MAX_LOOKBACK
    if n == 0:
        return window_columns(w, last, T, pos, real_pos)
    starts = np.flatnonzero(pos == 0)  # rows are grouped by instrument, each group from pos 0
    group = np.cumsum(pos == 0) - 1
    q = np.arange(n) + K * (group + 1)  # each row's position in the padded layout
    M = n + K * len(starts)

    def padded(x: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(M, fill)
        out[q] = x
        return out

    spread_ticks, imb1, pv, volume, mid, ret = w.spread_ticks, w.imb1, w.pv, w.volume, w.mid, w.ret
    P_st = padded(spread_ticks, 0.0)
    P_st_lo = padded(spread_ticks, np.inf)
    P_st_hi = padded(spread_ticks, -np.inf)
    P_imb = padded(imb1, 0.0)
    P_pv = padded(pv, 0.0)
    P_vol = padded(volume, 0.0)
    P_m_lo = padded(mid, np.inf)
    P_m_hi = padded(mid, -np.inf)
    P_ret = padded(ret, 0.0)
    P_pos = padded(pos.astype(np.int64), -1)
    cur = slice(K, M)  # every position that has MAX_LOOKBACK positions before it
    N = M - K
    s_ref = P_st[cur]
    r_ref = P_ret[cur]
    p_ref = P_pos[cur]
    zeros = lambda: np.zeros(N)  # noqa: E731
    s_sum, s_sq, i_sum, pv_sum, v_sum, r_sum, r_sq = (zeros() for _ in range(7))
    s_min = np.full(N, np.inf)
    s_max = np.full(N, -np.inf)
    m_min = np.full(N, np.inf)
    m_max = np.full(N, -np.inf)
    at = q - K  # real rows among the N computed positions
    index = np.arange(n)
    cols: list[np.ndarray] = []
    tmp = np.empty(N)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(K):
            back = slice(K - k, M - k)
            st = P_st[back]
            s_sum += st
            have = p_ref >= k
            np.subtract(st, s_ref, out=tmp)
            ds = np.where(have, tmp, 0.0)
            ds *= ds
            s_sq += ds
            np.minimum(s_min, P_st_lo[back], out=s_min)
            np.maximum(s_max, P_st_hi[back], out=s_max)
            i_sum += P_imb[back]
            pv_sum += P_pv[back]
            v_sum += P_vol[back]
            np.minimum(m_min, P_m_lo[back], out=m_min)
            np.maximum(m_max, P_m_hi[back], out=m_max)
            np.subtract(P_ret[back], r_ref, out=tmp)
            dr = np.where(have, tmp, 0.0)
            r_sum += dr
            dr *= dr
            r_sq += dr
            lookback = k + 1
            if lookback not in LOOKBACKS:
                continue
            c = np.minimum(real_pos + 1, lookback).astype(np.float64)
            s_mean = s_sum[at] / c
            s_shift = s_mean - spread_ticks
            s_var = s_sq[at] / c - s_shift * s_shift
            r_shift = r_sum[at] / c
            r_var = r_sq[at] / c - r_shift * r_shift
            back_mid = mid[index - np.minimum(lookback, pos)]
            cols += _lookback_columns(
                s_mean, s_var, s_min[at], s_max[at], spread_ticks, imb1, i_sum[at] / c, pv_sum[at], v_sum[at], mid,
                last, T, back_mid, r_var, m_min[at], m_max[at],
            )  # fmt: skip
    return cols


def _snap(ticks: np.ndarray) -> np.ndarray:
    """Price differences in ticks, snapped to 1e-6 tick (see spec.py)."""
    return np.floor(ticks * 1e6 + 0.5) / 1e6


def _shift(x: np.ndarray, k: int, fill: float) -> np.ndarray:
    """x moved k rows down (row i gets x[i - k]); the first k rows get `fill`."""
    if k == 0:
        return x
    y = np.empty_like(x)
    y[:k] = fill
    y[k:] = x[:-k]
    return y


def _depth_imbalance(bid_size: np.ndarray, ask_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bids = np.where(np.isnan(bid_size), 0.0, bid_size)
    asks = np.where(np.isnan(ask_size), 0.0, ask_size)
    sb = np.zeros(len(bids))
    sa = np.zeros(len(asks))
    for level in range(5):
        sb += bids[:, level]
        sa += asks[:, level]
    d5 = sb + sa
    imb5 = np.where(d5 > 0, (sb - sa) / d5, 0.0)
    for level in range(5, min(10, bids.shape[1])):
        sb += bids[:, level]
        sa += asks[:, level]
    d10 = sb + sa
    return imb5, np.where(d10 > 0, (sb - sa) / d10, 0.0)


def _time_features(ts: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    calendar = config.calendar
    hours, inverse = np.unique(ts // HOUR_NS, return_inverse=True)
    offsets = np.array([calendar.utc_offset_ns(int(h)) for h in hours], dtype=np.int64)[inverse]
    local = ts + offsets
    day = local // DAY_NS
    in_day = local - day * DAY_NS
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    open_ns, close_ns = calendar.open_ns, calendar.close_ns
    in_session = np.isin(weekday, calendar.weekdays) & (in_day >= open_ns) & (in_day < close_ns)
    return (
        np.where(in_session, 1.0, 0.0),
        (in_day - open_ns) / _MINUTE,
        (close_ns - in_day) / _MINUTE,
    )
