"""Tick validation: every rule a tick must meet before it may touch feature state.

Each failure names the field (relative to the tick) and the offending value.
Rules: instrument present; timestamp > 0; last price and size finite and >= 0;
1 to MAX_LEVELS levels per side with as many sizes as prices; prices finite
and > 0, sizes finite and >= 0; bids strictly descending, asks strictly
ascending; the book not crossed (best bid > best ask). A locked book
(best bid == best ask) is accepted: it happens in real feeds.
"""

from __future__ import annotations

from math import isfinite

from .errors import InvalidArgument
from .ticks import MAX_LEVELS, Tick

MAX_INSTRUMENT_LENGTH = 128


def validate_tick(tick: Tick) -> None:
    if not tick.instrument:
        raise InvalidArgument("instrument: is required, got an empty string", field="instrument")
    if len(tick.instrument) > MAX_INSTRUMENT_LENGTH:
        raise InvalidArgument(
            f"instrument: at most {MAX_INSTRUMENT_LENGTH} characters, got {len(tick.instrument)}", field="instrument"
        )
    if tick.timestamp_ns <= 0:
        raise InvalidArgument(
            f"timestamp_ns: must be > 0 (ns since the Unix epoch), got {tick.timestamp_ns}", field="timestamp_ns"
        )
    if not (isfinite(tick.last_price) and tick.last_price >= 0):
        raise InvalidArgument(f"last_price: must be finite and >= 0, got {tick.last_price!r}", field="last_price")
    if not (isfinite(tick.last_size) and tick.last_size >= 0):
        raise InvalidArgument(f"last_size: must be finite and >= 0, got {tick.last_size!r}", field="last_size")
    _side(tick.bid_price, tick.bid_size, "bid", descending=True)
    _side(tick.ask_price, tick.ask_size, "ask", descending=False)
    if tick.bid_price[0] > tick.ask_price[0]:
        raise InvalidArgument(
            f"bid_price[0]: crossed book, best bid {tick.bid_price[0]!r} > best ask {tick.ask_price[0]!r}",
            field="bid_price[0]",
        )


def _side(prices, sizes, side: str, *, descending: bool) -> None:
    p, s = f"{side}_price", f"{side}_size"
    if not prices:
        raise InvalidArgument(f"{p}: needs at least one level, got none", field=p)
    if len(prices) > MAX_LEVELS:
        raise InvalidArgument(f"{p}: at most {MAX_LEVELS} levels, got {len(prices)}", field=p)
    if len(sizes) != len(prices):
        raise InvalidArgument(f"{s}: has {len(sizes)} values but {p} has {len(prices)}", field=s)
    previous = None
    for i, (price, size) in enumerate(zip(prices, sizes)):
        if not (isfinite(price) and price > 0):
            raise InvalidArgument(f"{p}[{i}]: must be a finite price > 0, got {price!r}", field=f"{p}[{i}]")
        if not (isfinite(size) and size >= 0):
            raise InvalidArgument(f"{s}[{i}]: must be a finite size >= 0, got {size!r}", field=f"{s}[{i}]")
        if previous is not None and (price >= previous if descending else price <= previous):
            order = "below" if descending else "above"
            raise InvalidArgument(
                f"{p}[{i}]: levels must be strictly {order} the previous level, got {price!r} after {previous!r}",
                field=f"{p}[{i}]",
            )
        previous = price
