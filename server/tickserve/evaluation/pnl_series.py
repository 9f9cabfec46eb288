"""The cumulative P&L series of an Evaluate report, downsampled as trades come in."""

from __future__ import annotations

import numpy as np

MAX_PNL_POINTS = 1_000


class CumulativePnl:
    """(tick index, timestamp, cumulative P&L in ticks and price) after each closed round trip,
    downsampled on the fly to at most MAX_PNL_POINTS points: every `stride`-th trade is kept and
    the stride doubles whenever the list is full; the last trade is always the last point."""

    def __init__(self, max_points: int = MAX_PNL_POINTS) -> None:
        self.max_points = max(2, max_points)
        self.kept: list[tuple[int, tuple[int, int, float, float]]] = []  # (trade number, point)
        self.stride = 1
        self.trades = 0
        self.last: tuple[int, int, float, float] | None = None

    def add(self, point: tuple[int, int, float, float]) -> None:
        self.add_many(*(np.array([v]) for v in point))

    def add_many(self, index: np.ndarray, ts: np.ndarray, pnl_ticks: np.ndarray, pnl_price: np.ndarray) -> None:
        """The points of trades self.trades + 1, + 2, ... in order; Python work only for the points kept."""
        n = len(index)
        if not n:
            return
        number = self.trades + 1 + np.arange(n)  # each trade's number
        done = 0
        while done < n:
            kept = done + np.flatnonzero(number[done:] % self.stride == 0)
            room = self.max_points - len(self.kept)
            if len(kept) < room:
                self.kept += _points(number, index, ts, pnl_ticks, pnl_price, kept)
                break
            self.kept += _points(number, index, ts, pnl_ticks, pnl_price, kept[:room])
            self.kept = self.kept[1::2]  # full: every other point, and twice the stride from here
            self.stride *= 2
            done = int(kept[room - 1]) + 1
        self.trades += n
        self.last = _points(number, index, ts, pnl_ticks, pnl_price, [n - 1])[0][1]

    @property
    def points(self) -> list[tuple[int, int, float, float]]:
        return [point for _, point in self.kept]

    def series(self) -> list[tuple[int, int, float, float]]:
        if self.last is not None and (not self.kept or self.kept[-1][0] != self.trades):
            return [*self.points, self.last]
        return self.points


def _points(number, index, ts, pnl_ticks, pnl_price, rows) -> list[tuple[int, tuple[int, int, float, float]]]:
    rows = np.asarray(rows, dtype=np.int64)
    points = zip(index[rows].tolist(), ts[rows].tolist(), pnl_ticks[rows].tolist(), pnl_price[rows].tolist())
    return list(zip(number[rows].tolist(), points))


__all__ = ["MAX_PNL_POINTS", "CumulativePnl"]
