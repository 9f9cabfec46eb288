"""Inferring an instrument's price tick size from its prices (`tickserve import --tick-size auto`).

Every book level and trade price lies on the tick grid, and ten levels deep a
book almost always holds two prices one tick apart, so the tick is the
smallest gap between distinct prices, provided every price is a whole number
of it. Prices are compared on a 1e-9 relative grid so float noise (100.01 is
not exactly representable) cannot make a gap look smaller than a tick.
"""

from __future__ import annotations

import numpy as np


def infer_tick_size(prices: np.ndarray) -> float:
    """The tick size of these prices (NaN ignored); ValueError when they do not reveal one."""
    p = np.asarray(prices, dtype=np.float64).ravel()
    p = p[np.isfinite(p) & (p > 0)]
    if len(p) < 2:
        raise ValueError("tick size: fewer than two prices to infer it from; give --tick-size")
    scale = float(np.max(p))
    unit = 10.0 ** (np.floor(np.log10(scale)) - 9)  # the 1e-9 relative grid
    grid = np.unique(np.round(p / unit).astype(np.int64))
    if len(grid) < 2:
        raise ValueError("tick size: every price is the same; give --tick-size")
    gap = int(np.min(np.diff(grid)))
    # the tick divides every gap: the gcd of the gaps to the smallest price
    step = int(np.gcd.reduce(grid - grid[0]))
    tick = min(gap, step) if step else gap
    value = float(np.format_float_positional(tick * unit, precision=12, unique=False, trim="-"))
    if not value > 0:
        raise ValueError("tick size: could not infer it from the prices; give --tick-size")
    return value
