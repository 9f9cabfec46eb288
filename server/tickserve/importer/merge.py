"""Book rows and trades -> one tick per event, in time order (the merge rule in the package doc)."""

from __future__ import annotations

import numpy as np

from ..core.ticks import TickFrame

MERGE_RULE = (
    "one tick per event in time order, trades before book updates at equal timestamps; a trade tick carries the "
    "current book, last_price/last_size = the trade and its aggressor side; a book tick carries the last trade price, "
    "last_size 0 and no side; last_price 0 before the first trade"
)


def merge_events(
    instrument: str,
    book_ts: np.ndarray,
    book: dict,
    trade_ts: np.ndarray,
    trade_px: np.ndarray,
    trade_qty: np.ndarray,
    trade_side: np.ndarray | None = None,
) -> tuple[TickFrame, int]:
    """One tick per event (see the module doc); the frame and the number of trades before the first book row.
    `trade_side`: each trade's aggressor (+1 / -1 / 0), default unknown.

    Both inputs must already be in time order (the bad-row checks guarantee it)."""
    nb, nt = len(book_ts), len(trade_ts)
    ts = np.concatenate([book_ts, trade_ts]).astype(np.int64)
    kind = np.concatenate([np.ones(nb, dtype=np.int8), np.zeros(nt, dtype=np.int8)])  # trades (0) first
    within = np.concatenate([np.arange(nb), np.arange(nt)])
    order = np.lexsort((within, kind, ts))
    ts, kind, within = ts[order], kind[order], within[order]
    is_book = kind == 1
    current_book = np.maximum.accumulate(np.where(is_book, within, -1)) if len(order) else np.zeros(0, np.int64)
    last_trade = np.maximum.accumulate(np.where(~is_book, within, -1)) if len(order) else np.zeros(0, np.int64)
    emitted = current_book >= 0
    before_book = int((~is_book & ~emitted).sum())
    ts, is_book, current_book, last_trade = ts[emitted], is_book[emitted], current_book[emitted], last_trade[emitted]
    n = len(ts)
    frame = TickFrame.empty(n)
    frame.instrument = np.full(n, instrument, dtype=object)
    frame.timestamp_ns = ts
    has_trade = last_trade >= 0
    frame.last_price = np.where(has_trade, trade_px[np.maximum(last_trade, 0)] if nt else 0.0, 0.0)
    frame.last_size = np.where(~is_book, trade_qty[np.maximum(last_trade, 0)] if nt else 0.0, 0.0)
    if trade_side is not None and nt:  # a trade tick's own side; a book tick has none
        frame.aggressor = np.where(~is_book, trade_side[np.maximum(last_trade, 0)], 0).astype(np.int8)
    for side, name in (
        ("bid_px", "bid_price"),
        ("bid_qty", "bid_size"),
        ("ask_px", "ask_price"),
        ("ask_qty", "ask_size"),
    ):
        values = book[side][current_book]
        getattr(frame, name)[:, : values.shape[1]] = values
    return frame, before_book
