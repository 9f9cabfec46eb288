"""A seeded multi-instrument order-book simulator: the default data source for the demo and tests.

Each instrument has a hidden order-flow pressure `alpha` (an AR(1) process).
Pressure tilts the book (bid sizes up and ask sizes down when it is positive,
with noise), biases the side of trade prints, and drifts the mid: so order-book
imbalance and microprice carry real, but noisy, information about the next mid
moves, which is what the models are meant to learn. Prices sit on each
instrument's tick grid; spreads are 1-3 ticks; 10 levels per side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ticks import MAX_LEVELS, TickFrame

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
    T = spec.tick_size
    # hidden pressure
    shocks = rng.normal(0.0, 0.25, n)
    alpha = np.empty(n)
    a = rng.normal(0.0, 1.0)
    for i in range(n):
        a = 0.97 * a + shocks[i]
        alpha[i] = a
    tilt = 1.0 / (1.0 + np.exp(-1.5 * alpha))  # probability an up-move beats a down-move

    # mid path on the tick grid: at most one tick per update
    move_rate = 0.35
    u = rng.random(n)
    move = (u < move_rate * tilt).astype(np.int64) - ((u >= move_rate * tilt) & (u < move_rate)).astype(np.int64)
    move[0] = 0
    bid_ticks = int(round(spec.start_price / T)) + np.cumsum(move)
    spread_ticks = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])

    frame = TickFrame.empty(n)
    frame.instrument[:] = spec.name
    gaps = rng.exponential(interval_ms * 1e6, n).astype(np.int64) + 1_000
    frame.timestamp_ns = start_ns + np.cumsum(gaps)

    levels = np.arange(MAX_LEVELS)
    frame.bid_price = np.round((bid_ticks[:, None] - levels[None, :]) * T, 10)
    frame.ask_price = np.round((bid_ticks[:, None] + spread_ticks[:, None] + levels[None, :]) * T, 10)
    # Sizes: deeper levels hold more; the first three lean with the pressure.
    lean = np.where(levels < 3, 0.6 / (1.0 + levels), 0.0)[None, :]
    base = 100.0 * (1.0 + 0.15 * levels)[None, :]
    noise_b = rng.normal(0.0, 0.5, (n, MAX_LEVELS))
    noise_a = rng.normal(0.0, 0.5, (n, MAX_LEVELS))
    frame.bid_size = np.maximum(1.0, np.round(base * np.exp(lean * alpha[:, None] + noise_b)))
    frame.ask_size = np.maximum(1.0, np.round(base * np.exp(-lean * alpha[:, None] + noise_a)))

    # Trade prints: buyers lift the ask more often under positive pressure.
    traded = rng.random(n) < 0.3
    buy = rng.random(n) < tilt
    price = np.where(buy, frame.ask_price[:, 0], frame.bid_price[:, 0])
    size = np.where(traded, np.maximum(1.0, np.round(rng.lognormal(3.0, 0.8, n))), 0.0)
    last = np.where(traded, price, np.nan)
    # carry the last trade price forward; 0 before the first print
    idx = np.where(traded, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    frame.last_price = np.where(idx >= 0, last[np.maximum(idx, 0)], 0.0)
    frame.last_size = size
    frame.aggressor = np.where(traded, np.where(buy, 1, -1), 0).astype(np.int8)  # the print's side, 0 = no print
    return frame
