"""Round trips of BUY/SELL signals, computed on whole arrays (training, the scoreboard).

One round trip of one unit per signal: BUY buys at the signal tick's best ask
and sells at its label tick's best bid; SELL sells at the bid and buys back at
the ask. P&L after crossing the spread twice, minus `cost_ticks` tick sizes
and `fee_bps` basis points of the entry mid, in ticks and in bps of the entry
mid. `docs/trading-metrics.md` defines every figure; `evaluation.Evaluation`
computes the same round trips with the same functions, message by message,
while Evaluate streams (tested equal).

`one_position=True` (`one_position_rows`) counts what one account holding at most one position per
instrument earns: a signal is taken only when the instrument is flat, and the
position is held to the label tick (a signal on the label tick itself may open
the next one). Otherwise every signal is its own overlapping round trip, which
measures the average edge of a signal rather than an account's P&L.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import instrument_codes


def running_total(start: float, values: np.ndarray) -> np.ndarray:
    """start + values[0] + values[1] + ..., added left to right as a loop would (np.cumsum
    accumulates in order, unlike np.sum's pairwise sum), each partial total: totals kept this way
    do not depend on how the values were split into messages."""
    return np.cumsum(np.concatenate(([float(start)], np.asarray(values, dtype=np.float64))))[1:]


def group_totals(totals: np.ndarray, groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """totals[g] + each value of group g, added left to right within each group (as a loop
    would): np.bincount adds its weights one by one in order, and starts from 0 + totals[g]."""
    k = len(totals)
    return np.bincount(np.concatenate((np.arange(k), groups)), weights=np.concatenate((totals, values)), minlength=k)


_SUMS = ("move_ticks", "pnl_ticks", "pnl_price", "pnl_bps")  # the columns of Trips.sums


@dataclass(frozen=True)
class Trips:
    """Round trips as arrays, one row each (`round_trips_of`)."""

    hit: np.ndarray  # bool: the mid moved in the signal's direction
    win: np.ndarray  # bool: the round trip made money after every cost
    sums: np.ndarray  # (n, 4) float: the _SUMS of each round trip

    def __len__(self) -> int:
        return len(self.hit)

    def take(self, which: np.ndarray) -> Trips:
        return Trips(self.hit[which], self.win[which], self.sums[which])

    @property
    def pnl_ticks(self) -> np.ndarray:
        return self.sums[:, 1]

    @property
    def pnl_price(self) -> np.ndarray:
        return self.sums[:, 2]


@dataclass
class RoundTrips:
    trades: int = 0
    hits: int = 0  # the mid moved in the signal's direction
    wins: int = 0  # the round trip made money after every cost
    move_ticks: float = 0.0
    pnl_ticks: float = 0.0
    pnl_price: float = 0.0
    pnl_bps: float = 0.0

    def add(self, trips: Trips) -> None:
        if not len(trips):
            return
        self.trades += len(trips)
        self.hits += int(trips.hit.sum())
        self.wins += int(trips.win.sum())
        start = np.array([[getattr(self, name) for name in _SUMS]])
        # one cumsum down each column: every total added left to right, as running_total does
        totals = np.cumsum(np.concatenate((start, trips.sums)), axis=0)[-1].tolist()
        for name, total in zip(_SUMS, totals):
            setattr(self, name, total)

    def to_dict(self) -> dict:
        n = self.trades
        return {
            "trades": n,
            "hit_rate": self.hits / n if n else 0.0,
            "win_rate": self.wins / n if n else 0.0,
            "mean_move_ticks": self.move_ticks / n if n else 0.0,
            "mean_pnl_ticks": self.pnl_ticks / n if n else 0.0,
            "total_pnl_ticks": self.pnl_ticks,
            "total_pnl_price": self.pnl_price,
            "mean_pnl_bps": self.pnl_bps / n if n else 0.0,
            "total_pnl_bps": self.pnl_bps,
        }


class GroupedRoundTrips:
    """One RoundTrips per name (e.g. per strength), all added in one pass: `add(trips, groups)`
    gives each round trip to the RoundTrips of its group, sums in order (`group_totals`)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        k = len(names)
        self.trades = np.zeros(k, dtype=np.int64)
        self.hits = np.zeros(k, dtype=np.int64)
        self.wins = np.zeros(k, dtype=np.int64)
        self.sums = np.zeros((k, len(_SUMS)))

    def add(self, trips: Trips, groups: np.ndarray) -> None:
        if not len(trips):
            return
        k = len(self.names)
        self.trades += np.bincount(groups, minlength=k)
        self.hits += np.bincount(groups[trips.hit], minlength=k)
        self.wins += np.bincount(groups[trips.win], minlength=k)
        for c in range(len(_SUMS)):
            self.sums[:, c] = group_totals(self.sums[:, c], groups, trips.sums[:, c])

    def __getitem__(self, name: str) -> RoundTrips:
        k = self.names.index(name)
        sums = dict(zip(_SUMS, self.sums[k].tolist()))
        return RoundTrips(int(self.trades[k]), int(self.hits[k]), int(self.wins[k]), **sums)

    def to_dict(self) -> dict[str, dict]:
        return {name: self[name].to_dict() for name in self.names}


def _snap(ticks: np.ndarray) -> np.ndarray:
    return np.rint(ticks * 1e6) / 1e6


def round_trips_of(
    buy: np.ndarray,
    then_bid: np.ndarray,
    then_ask: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    tick_size: np.ndarray,
    cost_ticks: float,
    fee_bps: float,
) -> Trips:
    """The round trips of units opened at (then_bid, then_ask) and closed at (bid, ask): BUY where
    `buy`, else SELL. The one formula of training, the scoreboard and Evaluate."""
    then_mid = (then_ask + then_bid) * 0.5
    mid = (ask + bid) * 0.5
    direction = np.where(buy, 1.0, -1.0)
    gross = np.where(buy, bid - then_ask, then_bid - ask)
    move_ticks = _snap(direction * (mid - then_mid) / tick_size)
    fee_price = fee_bps * then_mid * 1e-4
    pnl_price = gross - cost_ticks * tick_size - fee_price
    pnl_ticks = _snap(gross / tick_size) - cost_ticks - fee_price / tick_size
    pnl_bps = pnl_price / then_mid * 1e4
    return Trips(move_ticks > 0, pnl_ticks > 0, np.column_stack((move_ticks, pnl_ticks, pnl_price, pnl_bps)))


def one_position_rows(
    codes: np.ndarray, rows: np.ndarray, future: np.ndarray, flat_from: dict[int, int] | None = None
) -> tuple[np.ndarray, dict[int, int]]:
    """Of the candidate `rows` (ascending), the ones an account holding at most one position per
    instrument takes, and {instrument code: row} of the positions still open at the end.

    A candidate is taken when its instrument is flat: at or after `flat_from[code]` (0 when
    absent) and at or after the label tick `future[row]` of the position it took before (a
    signal on the label tick itself opens the next one). A position whose label tick is not
    among the rows (`future` -1) stays open. The loop runs once per position taken, not per row."""
    flat_from = flat_from or {}
    still_open: dict[int, int] = {}
    if not len(rows):
        return rows, still_open
    order = np.argsort(codes[rows], kind="stable")
    r = rows[order]
    c = codes[r]
    span = len(future) + 1
    key = c * span + r
    f = future[r]
    after = np.searchsorted(key, c * span + np.maximum(f, 0), side="left")  # first candidate at/after f
    first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    ends = np.r_[first[1:], len(r)].tolist()
    r_list, f_list, after_list = r.tolist(), f.tolist(), after.tolist()
    taken = []
    for g0, g1 in zip(first.tolist(), ends):
        code = int(c[g0])
        i = int(np.searchsorted(key, code * span + flat_from.get(code, 0), side="left"))
        while i < g1:
            taken.append(r_list[i])
            if f_list[i] < 0:
                still_open[code] = r_list[i]
                break
            i = after_list[i]
    return np.sort(np.asarray(taken, dtype=np.int64)), still_open


def round_trips(
    frame,
    rows: np.ndarray,
    direction: np.ndarray,
    future: np.ndarray,
    sizes: np.ndarray,
    *,
    cost_ticks: float = 0.0,
    fee_bps: float = 0.0,
    one_position: bool = True,
) -> RoundTrips:
    """The round trips of the signals `direction` (+1 BUY, -1 SELL, 0 none) at `rows` (ascending
    row indices, i.e. arrival order), closed at their label ticks `future[row]` (-1: none, not counted)."""
    direction = np.asarray(direction)
    signal_rows = np.asarray(rows)[direction != 0]
    buy_at = np.zeros(len(frame), dtype=bool)
    buy_at[signal_rows] = direction[direction != 0] > 0
    if one_position:
        signal_rows, _ = one_position_rows(instrument_codes(frame), signal_rows, future)
    signal_rows = signal_rows[future[signal_rows] >= 0]
    j = future[signal_rows]
    bid, ask = frame.bid_price[:, 0], frame.ask_price[:, 0]
    out = RoundTrips()
    out.add(
        round_trips_of(
            buy_at[signal_rows],
            bid[signal_rows],
            ask[signal_rows],
            bid[j],
            ask[j],
            sizes[signal_rows],
            cost_ticks,
            fee_bps,
        )
    )
    return out
