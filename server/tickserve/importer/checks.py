"""What an import drops: bad book and trade rows (the first reason that applies), ticks failing the
server's own `validate_tick`; and prices off the tick-size grid, only counted."""

from __future__ import annotations

import numpy as np

from ..core.ticks import TickFrame
from ..core.validation import MAX_PRICE, MAX_SIZE, MAX_TIMESTAMP_NS, validate_tick
from ..errors import InvalidArgument
from .columns import _Column
from .report import BOOK_REASONS, EXAMPLES, TRADE_REASONS, FileCounts, ImportReport
from .settings import SIDE_VALUES, SIDES, TIMESTAMP, UNIT_NS


class _Reasons:
    """The first reason that applies, per row; rows are marked in the order of the reasons."""

    def __init__(self, n: int, reasons: tuple[str, ...]) -> None:
        self.reasons = reasons
        self.code = np.zeros(n, dtype=np.int16)  # 0 = good, k = reasons[k - 1]

    def mark(self, reason: str, mask: np.ndarray) -> None:
        k = self.reasons.index(reason) + 1
        self.code[(self.code == 0) & mask] = k

    @property
    def good(self) -> np.ndarray:
        return self.code == 0

    def mark_time_order(self, ts: np.ndarray) -> None:
        """Drop rows earlier than a kept row before them (a dropped row is below the running
        maximum, so it never raises it: the maximum over all good rows so far is the same)."""
        good = self.good
        running = np.maximum.accumulate(np.where(good, ts, np.iinfo(np.int64).min))
        before = np.concatenate([[np.iinfo(np.int64).min], running[:-1]])
        self.mark("non_monotonic_time", good & (ts < before))

    def counts(self, into: FileCounts) -> None:
        into.rows = len(self.code)
        into.kept = int(self.good.sum())
        for k, reason in enumerate(self.reasons, start=1):
            rows = np.flatnonzero(self.code == k)
            if len(rows):
                into.dropped[reason] = len(rows)
                into.examples[reason] = (rows[:EXAMPLES] + 1).tolist()


def _timestamps(col: _Column, unit: str, reasons: _Reasons) -> np.ndarray:
    reasons.mark("missing_timestamp", col.null)
    factor = UNIT_NS[unit]
    limit = MAX_TIMESTAMP_NS // factor
    ts = col.values.astype(np.int64)
    out_of_range = (ts <= 0) | (ts >= limit)
    return np.where(out_of_range, 0, ts) * factor, out_of_range


def _book(columns: dict[str, _Column], n: int, levels: int, unit: str) -> tuple[dict, np.ndarray, _Reasons]:
    reasons = _Reasons(n, BOOK_REASONS)
    ts, ts_invalid = _timestamps(columns[TIMESTAMP], unit, reasons)
    reasons.mark("unparseable_value", np.logical_or.reduce([c.unparseable for c in columns.values()]))
    arrays = {}
    for side in SIDES:
        cols = [columns[f"{side}_{lvl}"] for lvl in range(1, levels + 1)]
        arrays[side] = (np.column_stack([c.values for c in cols]), np.column_stack([c.null for c in cols]))
    missing = np.zeros(n, dtype=bool)
    for px, qty in (("bid_px", "bid_qty"), ("ask_px", "ask_qty")):
        null_p, null_q = arrays[px][1], arrays[qty][1]
        present = ~null_p & ~null_q
        missing |= (null_p ^ null_q).any(axis=1) | ~present[:, 0] | (~present[:, :-1] & present[:, 1:]).any(axis=1)
    reasons.mark("missing_level", missing)
    non_finite = np.zeros(n, dtype=bool)
    invalid = ts_invalid.copy()
    with np.errstate(invalid="ignore"):
        for side in SIDES:
            values, null = arrays[side]
            non_finite |= (~np.isfinite(values) & ~null).any(axis=1)
            if side.endswith("_px"):
                invalid |= (~null & ((values <= 0) | (values >= MAX_PRICE))).any(axis=1)
            else:
                invalid |= (~null & ((values < 0) | (values >= MAX_SIZE))).any(axis=1)
        reasons.mark("non_finite_value", non_finite)
        reasons.mark("invalid_value", invalid)
        bids, bid_null = arrays["bid_px"]
        asks, ask_null = arrays["ask_px"]
        unordered = (~bid_null[:, 1:] & ~(bids[:, 1:] < bids[:, :-1])).any(axis=1)
        unordered |= (~ask_null[:, 1:] & ~(asks[:, 1:] > asks[:, :-1])).any(axis=1)
        reasons.mark("unordered_levels", unordered)
        reasons.mark("crossed_book", bids[:, 0] > asks[:, 0])
    reasons.mark_time_order(ts)
    # absent levels as NaN, as in TickFrame
    book = {side: np.where(arrays[side][1], np.nan, arrays[side][0]) for side in SIDES}
    return book, ts, reasons


def _trades(columns: dict[str, _Column], n: int, unit: str):
    """(timestamps, prices, quantities, sides (+1/-1/0), reasons) of the trade rows."""
    reasons = _Reasons(n, TRADE_REASONS)
    ts, ts_invalid = _timestamps(columns[TIMESTAMP], unit, reasons)
    price, qty = columns["price"], columns["qty"]
    reasons.mark("unparseable_value", price.unparseable | qty.unparseable | columns[TIMESTAMP].unparseable)
    reasons.mark("missing_value", price.null | qty.null)
    p, q = price.values, qty.values
    reasons.mark("non_finite_value", ~np.isfinite(p) | ~np.isfinite(q))
    with np.errstate(invalid="ignore"):
        reasons.mark("invalid_value", ts_invalid | (p <= 0) | (p >= MAX_PRICE) | (q <= 0) | (q >= MAX_SIZE))
    side_column = next((columns[c] for c in SIDE_VALUES if c in columns), None)
    if side_column is None:
        side = np.zeros(n, dtype=np.int8)
    else:
        reasons.mark("invalid_aggressor", side_column.unparseable)
        side = side_column.values.astype(np.int8)
    reasons.mark_time_order(ts)
    return ts, p, q, side, reasons


def _off_grid(prices: np.ndarray, tick_size: float) -> np.ndarray:
    """Per row, whether any present price is off the grid by more than 1e-6 tick."""
    steps = prices / tick_size
    with np.errstate(invalid="ignore"):
        off = np.abs(steps - np.round(steps)) > 1e-6
    off &= ~np.isnan(prices)
    return off.any(axis=1) if off.ndim == 2 else off


def _validated(frame: TickFrame, report: ImportReport) -> TickFrame:
    """Every tick through the server's own `validate_tick`; failures are dropped and counted."""
    failed = []
    for i, tick in enumerate(frame.ticks()):
        try:
            validate_tick(tick)
        except InvalidArgument as exc:
            report.failed_validation[exc.field or "tick"] += 1
            failed.append(i)
    if not failed:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    keep[failed] = False
    return frame.take(keep)
