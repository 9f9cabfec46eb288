"""A seeded multi-instrument order-book simulator: the default data source for the demo and tests.

Each instrument is a 10-level limit order book (one queue per price tick, no empty levels) driven by
discrete events, as a real book is: market orders that take from a best queue, limit orders that join
a best queue or a deeper one, cancellations, and limit orders that improve a spread wider than a tick.
Prices move only through the queues: when market orders and/or cancellations empty a best queue, that
side's price steps one tick away and the next level becomes the best (the spread widens, usually to 2
ticks, until a limit order improves it again: one tick in, on either side). So the mid moves half a
tick at a time, spreads are mostly 1 tick, and a new 10th level appears from a depth profile that grows
with the level (deeper queues grow and shrink around it).

A hidden pressure `p` per instrument (an AR(1) in event time, std 1, half-life ~70 events) drives the
order flow, never the book snapshot directly. It biases the side of market orders (buyers lift the
ask when p > 0), which best queue limit orders join and which one is cancelled from (bids gain, asks
are pulled) and which side improves a wide spread; and it raises activity: the event rate and the share
of trades grow with |p|. That is how informed order flow shows in real markets (Cont, Kukanov and
Stoikov 2014): order-flow imbalance and signed trade volume over the last few dozen events estimate
`p`, and so the coming mid moves, better than the snapshot, whose best queues are renewed at every
price step; the level-1 queue imbalance still says which queue empties first, so it stays informative,
but less (benchmarks/simulator_check.py measures it).

Ticks follow imported data (`importer/`: the exchange publishes a trade before the book change it
causes): a market order makes a trade tick carrying the book as it was before the trade (last_price =
the touch it took: the best ask for a buy, aggressor +1, the best bid for a sell, aggressor -1;
last_size = its quantity, at most that queue), then, 1-50 us later, a book tick with the book after it.
Every other event makes one book tick (last_size 0, aggressor 0, the last trade price carried forward;
0 before the first trade). Timestamps are event-driven (exponential gaps at the current event rate,
scaled so that the mean gap between an instrument's ticks is `mean_interval_ms`), strictly increasing per
instrument; instruments are interleaved in time order. Simplifications: a market order never walks the
book, a limit order never leaves an empty level, and queues hold only a few orders (order sizes median
20; best queues ~50 on average, deeper ones ~35), so the mid moves every few ticks and a 50-tick label
has all three classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp

import numpy as np

from .core.ticks import MAX_LEVELS, TickFrame

# 2024-01-02 14:30:00 UTC = 09:30 in New York, the US equity open.
DEFAULT_START_NS = 1_704_205_800 * 1_000_000_000


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    start_price: float
    tick_size: float = 0.01


DEFAULT_INSTRUMENTS = (
    InstrumentSpec("SIMA", 100.0),
    InstrumentSpec("SIMB", 50.0),
    InstrumentSpec("SIMC", 250.0),
)

# The model's parameters. Event rates are relative to each other (the clock is scaled afterwards);
# RATE_IMPROVE is per tick of spread beyond one; sizes are in shares.
PERSISTENCE = 0.99  # AR(1) coefficient of the pressure per event (half-life ~70 events)
RATE_MARKET, RATE_JOIN, RATE_CANCEL, RATE_DEEP, RATE_IMPROVE = 0.45, 0.4, 0.3, 0.4, 1.5
MARKET_ACTIVITY, ACTIVITY = 0.6, 0.5  # how |p| raises the market-order rate and every rate
SIDE_MARKET, SIDE_JOIN, SIDE_CANCEL, SIDE_IMPROVE = 1.2, 0.8, 0.8, 1.0  # P(buy side) = logistic(slope * p)
ORDER_MU, ORDER_SIGMA = 3.0, 0.8  # lognormal order sizes: median 20
DEPTH = tuple(8.0 * (1.0 + 0.15 * level) for level in range(MAX_LEVELS))  # typical queue by level
LATENCY_NS = (1_000, 50_000)  # from a trade tick to the book tick that shows its effect


def simulate(
    n_ticks: int,
    *,
    seed: int = 0,
    instruments: tuple[InstrumentSpec, ...] = DEFAULT_INSTRUMENTS,
    start_ns: int = DEFAULT_START_NS,
    mean_interval_ms: float = 250.0,
) -> TickFrame:
    """About `n_ticks` ticks in total, instruments interleaved in time order."""
    if n_ticks < 1:
        raise ValueError(f"n_ticks must be >= 1, got {n_ticks}")
    rng = np.random.default_rng(seed)
    per = [n_ticks // len(instruments) + (1 if i < n_ticks % len(instruments) else 0) for i in range(len(instruments))]
    frames = [_instrument(spec, n, rng, start_ns, mean_interval_ms) for spec, n in zip(instruments, per) if n > 0]
    merged = TickFrame.concat(frames)
    order = np.argsort(merged.timestamp_ns, kind="stable")
    merged = merged.take(order)
    merged.sequence = np.arange(len(merged), dtype=np.int64)
    return merged


def _instrument(spec: InstrumentSpec, n: int, rng: np.random.Generator, start_ns: int, interval_ms: float) -> TickFrame:
    # Every event makes at least one tick, so n draws of each kind are enough.
    shocks = rng.normal(0.0, (1.0 - PERSISTENCE**2) ** 0.5, n).tolist()  # keeps the pressure's std at 1
    u_kind, u_side, u_level, u_book = (rng.random(n).tolist() for _ in range(4))
    sizes = np.maximum(1.0, np.round(rng.lognormal(ORDER_MU, ORDER_SIGMA, n))).tolist()
    gaps = rng.exponential(1.0, n).tolist()
    latency = rng.integers(*LATENCY_NS, n).tolist()
    depth = np.asarray(DEPTH)
    refill = np.maximum(1.0, np.round(depth[-1] * rng.lognormal(0.0, 0.5, n))).tolist()  # a new 10th level
    bids, asks = np.maximum(1.0, np.round(depth * rng.lognormal(0.0, 0.5, (2, MAX_LEVELS)))).tolist()
    p = float(rng.normal())
    bid = int(round(spec.start_price / spec.tick_size))  # best prices in ticks
    ask = bid + 1
    last = 0  # last trade price in ticks, 0 = none yet
    # one row per tick: event clock (arbitrary units), delay in ns (a book tick after its trade), best bid and
    # ask, last trade price, last size, aggressor, bid sizes, ask sizes
    clock = gaps[-1] / (RATE_MARKET + RATE_JOIN + RATE_CANCEL + RATE_DEEP)  # the first tick (events use gaps[:-1])
    rows = [(clock, 0, bid, ask, last, 0.0, 0, bids[:], asks[:])]
    k = 0
    while len(rows) < n:
        p = PERSISTENCE * p + shocks[k]
        r_market = RATE_MARKET * (1.0 + MARKET_ACTIVITY * abs(p))
        r_improve = RATE_IMPROVE * (ask - bid - 1)
        total = r_market + r_improve + RATE_JOIN + RATE_CANCEL + RATE_DEEP
        clock += gaps[k] / (total * (1.0 + ACTIVITY * abs(p)))
        x, u, q = u_kind[k] * total - r_market, u_side[k], sizes[k]  # x < 0: a market order
        delay = 0
        if x < 0:  # a market order takes from the best queue on the other side
            buy = u < _logistic(SIDE_MARKET * p)
            queue = asks if buy else bids
            q = min(q, queue[0])
            last = ask if buy else bid
            rows.append((clock, 0, bid, ask, last, q, 1 if buy else -1, rows[-1][7], rows[-1][8]))  # book before
            if len(rows) == n:
                break
            queue[0] -= q
            delay = latency[k]
        elif x < r_improve:  # a limit order inside the spread: its side steps one tick in
            if u < _logistic(SIDE_IMPROVE * p):
                bids.insert(0, q)
                bids.pop()
                bid += 1
            else:
                asks.insert(0, q)
                asks.pop()
                ask -= 1
        elif (x := x - r_improve) < RATE_JOIN:  # a limit order joins a best queue: the bid's when buyers press
            (bids if u < _logistic(SIDE_JOIN * p) else asks)[0] += q
        elif x < RATE_JOIN + RATE_CANCEL:  # a cancellation at a best queue: the ask's when buyers press
            (asks if u < _logistic(SIDE_CANCEL * p) else bids)[0] -= q
        else:  # a deeper queue (levels 2-10, either side) grows or shrinks around its typical size
            level = 1 + int(u_level[k] * (MAX_LEVELS - 1))
            queue = bids if u_book[k] < 0.5 else asks
            joins = u * (DEPTH[level] + queue[level]) < DEPTH[level]  # P(join) = typical / (typical + now)
            queue[level] = queue[level] + q if joins else max(1.0, queue[level] - q)
        if bids[0] <= 0:
            bid = _deplete(bids, bid, -1, refill[k])
        if asks[0] <= 0:
            ask = _deplete(asks, ask, 1, refill[k])
        rows.append((clock, delay, bid, ask, last, 0.0, 0, bids[:], asks[:]))
        k += 1

    clock_col, delay_col, bid_col, ask_col, last_col, size_col, side_col, bid_sizes, ask_sizes = zip(*rows)
    delays = np.asarray(delay_col, dtype=np.int64)
    event_gaps = np.diff(np.asarray(clock_col), prepend=0.0)
    scale = max(0.0, interval_ms * 1e6 * n - delays.sum()) / event_gaps.sum()  # so the mean gap is interval_ms
    frame = TickFrame.empty(n)
    frame.instrument[:] = spec.name
    steps = np.where(delays > 0, delays, np.maximum(1_000, event_gaps * scale)).astype(np.int64)
    frame.timestamp_ns = start_ns + np.cumsum(steps)
    T, levels = spec.tick_size, np.arange(MAX_LEVELS)
    frame.bid_price = np.round((np.asarray(bid_col)[:, None] - levels) * T, 10)
    frame.ask_price = np.round((np.asarray(ask_col)[:, None] + levels) * T, 10)
    frame.bid_size = np.asarray(bid_sizes, dtype=np.float64)
    frame.ask_size = np.asarray(ask_sizes, dtype=np.float64)
    frame.last_price = np.round(np.asarray(last_col, dtype=np.float64) * T, 10)
    frame.last_size = np.asarray(size_col, dtype=np.float64)
    frame.aggressor = np.asarray(side_col, dtype=np.int8)
    return frame


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + exp(-x))


def _deplete(queues: list, price: int, away: int, new_last_level: float) -> int:
    """The best queue is empty: the next level becomes the best, a new level appears at the back, and the
    price steps one tick away. (A bid that would put the 10th level at or below 0 refills instead.)"""
    if price + away * MAX_LEVELS <= 0:
        queues[0] = new_last_level
        return price
    queues.pop(0)
    queues.append(new_last_level)
    return price + away
