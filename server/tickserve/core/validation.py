"""Tick validation: every rule a tick must meet before it may touch feature state.

Each failure names the field (relative to the tick) and the offending value.
Rules: instrument present, at most 128 characters, no control characters;
0 < timestamp < 2200-01-01; sequence (when set) at most 2^63-1; last price and size finite, >= 0 and below the
bounds below (so no feature overflows to inf); aggressor +1, -1 or 0 (a Side enum number the contract does not
define is rejected naming the number sent), and 0 when last_size is 0 (no trade printed: no side);
1 to MAX_LEVELS levels per side with as many sizes as prices; prices finite
and in [MIN_PRICE, MAX_PRICE), sizes finite and >= 0; bids strictly descending, asks strictly
ascending; the book not crossed (best bid > best ask). A locked book
(best bid == best ask) is accepted: it happens in real feeds.
"""

from __future__ import annotations

from math import isfinite
from operator import gt, lt

from ..errors import InvalidArgument
from .ticks import AGGRESSOR_NAMES, MAX_LEVELS, Tick, unknown_side_number

MAX_INSTRUMENT_LENGTH = 128
# Prices live in [MIN_PRICE, MAX_PRICE): the widest ratio between two mids (1e21) keeps every
# return and its square (volatility) finite. Below 1e-9 a mid move from a subnormal price to an
# ordinary one overflows returns to inf (found by tests/test_properties.py).
MIN_PRICE = 1e-9
MAX_PRICE = 1e12
MAX_SIZE = 1e15
# The proto field is uint64, but tick files and feature state keep sequences in int64.
MAX_SEQUENCE = 2**63 - 1
MAX_TIMESTAMP_NS = 7_258_118_400 * 1_000_000_000  # 2200-01-01: keeps local-time arithmetic in int64


def validate_tick(tick: Tick) -> None:
    if not tick.instrument:
        raise InvalidArgument("instrument: is required, got an empty string", field="instrument")
    if len(tick.instrument) > MAX_INSTRUMENT_LENGTH:
        raise InvalidArgument(
            f"instrument: at most {MAX_INSTRUMENT_LENGTH} characters, got {len(tick.instrument)}", field="instrument"
        )
    if not tick.instrument.isprintable():
        raise InvalidArgument(
            f"instrument: control characters are not allowed, got {tick.instrument!r}", field="instrument"
        )
    if not 0 < tick.timestamp_ns < MAX_TIMESTAMP_NS:
        raise InvalidArgument(
            f"timestamp_ns: must be ns since the Unix epoch, > 0 and before 2200, got {tick.timestamp_ns}",
            field="timestamp_ns",
        )
    if not (isfinite(tick.last_price) and 0 <= tick.last_price < MAX_PRICE):
        raise InvalidArgument(
            f"last_price: must be >= 0 and < {MAX_PRICE:g}, got {tick.last_price!r}", field="last_price"
        )
    if not (isfinite(tick.last_size) and 0 <= tick.last_size < MAX_SIZE):
        raise InvalidArgument(f"last_size: must be >= 0 and < {MAX_SIZE:g}, got {tick.last_size!r}", field="last_size")
    if tick.aggressor:
        _aggressor(tick.aggressor, tick.last_size)
    if tick.sequence is not None and tick.sequence > MAX_SEQUENCE:
        raise InvalidArgument(
            f"sequence: at most 2^63-1 ({MAX_SEQUENCE}) is supported, got {tick.sequence}", field="sequence"
        )
    _side(tick.bid_price, tick.bid_size, "bid", descending=True)
    _side(tick.ask_price, tick.ask_size, "ask", descending=False)
    if tick.bid_price[0] > tick.ask_price[0]:
        raise InvalidArgument(
            f"bid_price[0]: crossed book, best bid {tick.bid_price[0]!r} > best ask {tick.ask_price[0]!r}",
            field="bid_price[0]",
        )


def _aggressor(aggressor: int, last_size: float) -> None:
    """A non-zero aggressor: +1 or -1, on a tick that reports a trade."""
    if aggressor not in (1, -1):
        number = unknown_side_number(aggressor)
        if number is not None:  # an enum number off the wire that the contract does not define
            raise InvalidArgument(
                f"aggressor: must be SIDE_UNSPECIFIED (0), SIDE_BUY (1) or SIDE_SELL (2), got {number}",
                field="aggressor",
            )
        raise InvalidArgument(
            f"aggressor: must be +1 (buy), -1 (sell) or 0 (unknown or no trade), got {aggressor!r}", field="aggressor"
        )
    if last_size == 0:
        raise InvalidArgument(
            f"aggressor: {AGGRESSOR_NAMES[aggressor]} given but last_size is 0: no trade on this tick",
            field="aggressor",
        )


def _side(prices, sizes, side: str, *, descending: bool) -> None:
    # Fast path, all in C (map/min/max, no Python frame per level) for a good side;
    # only a bad side pays for the diagnosis below, which names the field and value.
    if (
        0 < len(prices) <= MAX_LEVELS
        and len(sizes) == len(prices)
        and all(map(isfinite, prices))
        and all(map(isfinite, sizes))
        and min(prices) >= MIN_PRICE
        and max(prices) < MAX_PRICE
        and min(sizes) >= 0
        and max(sizes) < MAX_SIZE
        and all(map(gt if descending else lt, prices, prices[1:]))
    ):
        return
    p, s = f"{side}_price", f"{side}_size"
    if not prices:
        raise InvalidArgument(f"{p}: needs at least one level, got none", field=p)
    if len(prices) > MAX_LEVELS:
        raise InvalidArgument(f"{p}: at most {MAX_LEVELS} levels, got {len(prices)}", field=p)
    if len(sizes) != len(prices):
        raise InvalidArgument(f"{s}: has {len(sizes)} values but {p} has {len(prices)}", field=s)
    previous = None
    for i, (price, size) in enumerate(zip(prices, sizes)):
        if not (isfinite(price) and MIN_PRICE <= price < MAX_PRICE):
            raise InvalidArgument(
                f"{p}[{i}]: must be a price >= {MIN_PRICE:g} and < {MAX_PRICE:g}, got {price!r}", field=f"{p}[{i}]"
            )
        if not (isfinite(size) and 0 <= size < MAX_SIZE):
            raise InvalidArgument(f"{s}[{i}]: must be a size >= 0 and < {MAX_SIZE:g}, got {size!r}", field=f"{s}[{i}]")
        if previous is not None and (price >= previous if descending else price <= previous):
            order = "below" if descending else "above"
            raise InvalidArgument(
                f"{p}[{i}]: levels must be strictly {order} the previous level, got {price!r} after {previous!r}",
                field=f"{p}[{i}]",
            )
        previous = price
