"""Batch feature path: whole arrays with numpy, for training, offline scoring and large messages.

Mirrors `streaming.py`'s per-tick `update` operation for operation (same
formulas, same order of summation: newest tick to oldest, absent values added
as +0.0, which leaves a sum unchanged), so both give bit-identical features.
`batch_features` is `StreamingFeatures.update_frame` on a fresh state: one
vectorised implementation serves training and the columnar stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ticks import TickFrame
from .calendar import DAY_NS, HOUR_NS, MINUTE_NS
from .config import FeatureConfig
from .spec import LOOKBACKS, MAX_LOOKBACK, MAX_PER_DEPTH, MIN_SPAN_S, NS_PER_S

_MINUTE = float(MINUTE_NS)


def batch_features(frame: TickFrame, config: FeatureConfig) -> np.ndarray:
    """The feature matrix (len(frame), len(FEATURE_NAMES)), rows in frame order."""
    from .streaming import StreamingFeatures

    return StreamingFeatures(config).update_frame(frame)[0]


@dataclass
class RowColumns:
    """What each tick gives on its own (frame order): the inputs of the base features and of the windows."""

    spread: np.ndarray
    mid: np.ndarray
    spread_ticks: np.ndarray
    imb1: np.ndarray
    imb5: np.ndarray
    imb10: np.ndarray
    micro: np.ndarray
    last: np.ndarray
    T: np.ndarray  # tick size per row
    session: np.ndarray
    since_open: np.ndarray
    to_close: np.ndarray
    pv: np.ndarray  # last * last_size
    volume: np.ndarray  # last_size
    depth1: np.ndarray
    sv: np.ndarray  # signed trade volume
    trade: np.ndarray  # 1.0 on a trade tick


@dataclass
class WindowInputs:
    """Per-tick values the rolling windows read, grouped by instrument, oldest first."""

    spread_ticks: np.ndarray
    imb1: np.ndarray
    pv: np.ndarray
    volume: np.ndarray
    mid: np.ndarray
    ret: np.ndarray  # 1-tick return, 0 for an instrument's first tick
    depth1: np.ndarray
    sv: np.ndarray
    trade: np.ndarray
    ts: np.ndarray  # int64 ns


def row_columns(frame: TickFrame, config: FeatureConfig, groups: tuple | None = None) -> RowColumns:
    """Row-wise values, in frame order (no grouping needed).
    `groups`: (names, codes) of the instruments, when the caller has them."""
    names, codes = groups if groups is not None else np.unique(frame.instrument, return_inverse=True)
    T = np.array([config.tick_size(str(name)) for name in names])[codes]
    bid_price, bid_size, ask_price, ask_size = frame.bid_price, frame.bid_size, frame.ask_price, frame.ask_size
    with np.errstate(divide="ignore", invalid="ignore"):
        b1, a1, bs1, as1 = bid_price[:, 0], ask_price[:, 0], bid_size[:, 0], ask_size[:, 0]
        mid = (a1 + b1) * 0.5
        spread_ticks = _snap((a1 - b1) / T)  # snapped to 1e-6 tick, as streaming
        d1 = bs1 + as1
        imb1 = np.where(d1 > 0, (bs1 - as1) / d1, 0.0)
        imb5, imb10 = _depth_imbalance(bid_size, ask_size)
        micro = np.where(d1 > 0, (b1 * as1 + a1 * bs1) / d1, mid)
        last = np.where(frame.last_price > 0, frame.last_price, mid)
        session, since_open, to_close = _time_features(frame.timestamp_ns, config)
        size = frame.last_size
        quote_side = np.where(
            last >= a1, 1.0, np.where(last <= b1, -1.0, np.where(last > mid, 1.0, np.where(last < mid, -1.0, 0.0)))
        )
        side = np.where(frame.aggressor != 0, frame.aggressor.astype(np.float64), quote_side)
        sv = np.where(size > 0, side * size, 0.0)
    return RowColumns(
        spread=spread_ticks * T,
        mid=mid,
        spread_ticks=spread_ticks,
        imb1=imb1,
        imb5=imb5,
        imb10=imb10,
        micro=micro,
        last=last,
        T=T,
        session=session,
        since_open=since_open,
        to_close=to_close,
        pv=last * size,
        volume=size,
        depth1=d1 * 0.5,
        sv=sv,
        trade=np.where(size > 0, 1.0, 0.0),
    )


def window_columns(
    w: WindowInputs,
    last: np.ndarray,
    T: np.ndarray,
    pos: np.ndarray,
    real_pos: np.ndarray,
    rows: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The rolling features (rows grouped by instrument and oldest first) and since_trade_s of
    the rows `rows` (default: every row; the others are only read as history).

    `pos` counts the earlier rows of the same instrument present in these arrays;
    `real_pos` the earlier ticks the instrument really had (more, when the arrays
    start with only the last MAX_LOOKBACK ticks of a longer history). Computing only the
    rows asked for keeps a message of one tick each for many instruments from paying for
    (and holding the memory of) their carried history rows.
    """
    if rows is None:
        rows = np.arange(len(pos))
    n = len(rows)
    p = pos[rows]
    spread_ticks, ret, mid = w.spread_ticks[rows], w.ret[rows], w.mid[rows]
    cols: list[np.ndarray] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        zeros = lambda: np.zeros(n)  # noqa: E731
        s_sum, s_sq, i_sum, pv_sum, v_sum, r_sum, r_sq = (zeros() for _ in range(7))
        d1_sum, sv_sum, t_sum = (zeros() for _ in range(3))
        s_min = np.full(n, np.inf)
        s_max = np.full(n, -np.inf)
        m_min = np.full(n, np.inf)
        m_max = np.full(n, -np.inf)
        for k in range(MAX_LOOKBACK):
            have = p >= k
            back_k = np.maximum(rows - k, 0)  # masked by `have` wherever it would leave the instrument
            st = np.where(have, w.spread_ticks[back_k], 0.0)
            r = np.where(have, w.ret[back_k], 0.0)
            m = w.mid[back_k]
            s_sum += st
            ds = np.where(have, st - spread_ticks, 0.0)
            s_sq += ds * ds
            s_min = np.where(have, np.minimum(s_min, st), s_min)
            s_max = np.where(have, np.maximum(s_max, st), s_max)
            i_sum += np.where(have, w.imb1[back_k], 0.0)
            pv_sum += np.where(have, w.pv[back_k], 0.0)
            v_sum += np.where(have, w.volume[back_k], 0.0)
            m_min = np.where(have, np.minimum(m_min, m), m_min)
            m_max = np.where(have, np.maximum(m_max, m), m_max)
            dr = np.where(have, r - ret, 0.0)
            r_sum += dr
            r_sq += dr * dr
            for total, x in ((d1_sum, w.depth1), (sv_sum, w.sv), (t_sum, w.trade)):
                total += np.where(have, x[back_k], 0.0)
            lookback = k + 1
            if lookback not in LOOKBACKS:
                continue
            c = np.minimum(real_pos[rows] + 1, lookback).astype(np.float64)
            s_mean = s_sum / c
            s_shift = s_mean - spread_ticks
            s_var = s_sq / c - s_shift * s_shift
            r_shift = r_sum / c
            r_var = r_sq / c - r_shift * r_shift
            # pos >= lookback whenever real_pos > pos (a history of MAX_LOOKBACK rows is kept)
            back = w.mid[rows - np.minimum(lookback, p)]
            oldest = w.ts[rows - (c.astype(np.int64) - 1)]
            cols += _lookback_columns(
                s_mean,
                s_var,
                s_min,
                s_max,
                spread_ticks,
                w.imb1[rows],
                i_sum / c,
                pv_sum,
                v_sum,
                mid,
                last[rows],
                T[rows],
                back,
                r_var,
                m_min,
                m_max,
                c,
                d1_sum,
                sv_sum,
                t_sum,
                (w.ts[rows] - oldest) / NS_PER_S,
            )
    return cols, since_trade(w.trade, w.ts, pos)[rows]


def _lookback_columns(
    s_mean,
    s_var,
    s_min,
    s_max,
    spread_ticks,
    imb1,
    i_mean,
    pv_sum,
    v_sum,
    mid,
    last,
    T,
    back,
    r_var,
    m_min,
    m_max,
    c,
    d1_sum,
    sv_sum,
    t_sum,
    span,
) -> list[np.ndarray]:
    """The features of one lookback from its window statistics: the one formula both window
    kernels use, so they cannot drift apart (streaming == batch to the last bit)."""
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
        np.where(v_sum > 0, sv_sum / v_sum, 0.0),
        _per_depth(sv_sum, d1_sum / c),
        np.where(c > 1, t_sum / np.maximum(span, MIN_SPAN_S), 0.0),
        np.where(c > 1, span / (c - 1), 0.0),
    ]


def _per_depth(flow: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """`streaming._per_depth` on arrays."""
    return np.where(depth > 0, np.clip(flow / depth, -MAX_PER_DEPTH, MAX_PER_DEPTH), 0.0)


def since_trade(trade: np.ndarray, ts: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """since_trade_s of spec.py per row (rows grouped by instrument, oldest first, `pos` as in
    `window_columns`; the arrays hold at least each row's last MAX_LOOKBACK ticks)."""
    index = np.arange(len(pos))
    newest = np.maximum.accumulate(np.where(trade > 0, index, -1))
    window_start = index - np.minimum(pos, MAX_LOOKBACK - 1)
    found = newest >= window_start
    return (ts - ts[np.where(found, newest, window_start)]) / NS_PER_S


def window_columns_padded(
    w: WindowInputs, last: np.ndarray, T: np.ndarray, pos: np.ndarray, real_pos: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
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

    spread_ticks, imb1, mid, ret = w.spread_ticks, w.imb1, w.mid, w.ret
    P_st = padded(spread_ticks, 0.0)
    P_st_lo = padded(spread_ticks, np.inf)
    P_st_hi = padded(spread_ticks, -np.inf)
    P_m_lo = padded(mid, np.inf)
    P_m_hi = padded(mid, -np.inf)
    P_ret = padded(ret, 0.0)
    P_pos = padded(pos.astype(np.int64), -1)
    # the plain sums: (padded input, running sum)
    summed = {name: padded(getattr(w, name), 0.0) for name in ("imb1", "pv", "volume", "depth1", "sv", "trade")}
    cur = slice(K, M)  # every position that has MAX_LOOKBACK positions before it
    N = M - K
    s_ref = P_st[cur]
    r_ref = P_ret[cur]
    p_ref = P_pos[cur]
    zeros = lambda: np.zeros(N)  # noqa: E731
    s_sum, s_sq, r_sum, r_sq = (zeros() for _ in range(4))
    sums = {name: zeros() for name in summed}
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
            for name, x in summed.items():
                sums[name] += x[back]
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
            oldest = w.ts[index - (c.astype(np.int64) - 1)]
            g = {name: total[at] for name, total in sums.items()}
            cols += _lookback_columns(
                s_mean,
                s_var,
                s_min[at],
                s_max[at],
                spread_ticks,
                imb1,
                g["imb1"] / c,
                g["pv"],
                g["volume"],
                mid,
                last,
                T,
                back_mid,
                r_var,
                m_min[at],
                m_max[at],
                c,
                g["depth1"],
                g["sv"],
                g["trade"],
                (w.ts - oldest) / NS_PER_S,
            )
    return cols, since_trade(w.trade, w.ts, pos)


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
