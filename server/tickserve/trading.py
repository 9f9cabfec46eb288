"""Round trips of BUY/SELL signals, computed on whole arrays (training, the scoreboard).

One round trip of one unit per signal: BUY buys at the signal tick's best ask
and sells at its label tick's best bid; SELL sells at the bid and buys back at
the ask. P&L after crossing the spread twice, minus `cost_ticks` tick sizes
and `fee_bps` basis points of the entry mid, in ticks and in bps of the entry
mid. `docs/trading-metrics.md` defines every figure; `evaluation.Evaluation`
computes the same round trips tick by tick while Evaluate streams (tested
equal).

`one_position=True` counts what one account holding at most one position per
instrument earns: a signal is taken only when the instrument is flat, and the
position is held to the label tick (a signal on the label tick itself may open
the next one). Otherwise every signal is its own overlapping round trip, which
measures the average edge of a signal rather than an account's P&L.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RoundTrips:
    trades: int = 0
    hits: int = 0  # the mid moved in the signal's direction
    wins: int = 0  # the round trip made money after every cost
    move_ticks: float = 0.0
    pnl_ticks: float = 0.0
    pnl_price: float = 0.0
    pnl_bps: float = 0.0

    def add(self, hit: bool, win: bool, move_ticks: float, pnl_ticks: float, pnl_price: float, pnl_bps: float) -> None:
        self.trades += 1
        self.hits += hit
        self.wins += win
        self.move_ticks += move_ticks
        self.pnl_ticks += pnl_ticks
        self.pnl_price += pnl_price
        self.pnl_bps += pnl_bps

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


def _snap(ticks: float) -> float:
    return round(ticks * 1e6) / 1e6


def round_trip(
    buy: bool,
    then_bid: float,
    then_ask: float,
    bid: float,
    ask: float,
    tick_size: float,
    cost_ticks: float,
    fee_bps: float,
) -> tuple[bool, bool, float, float, float, float]:
    """(hit, win, signed mid move in ticks, P&L in ticks, in price, in bps) of one unit opened at
    (then_bid, then_ask) and closed at (bid, ask): the one formula of both the batch and the streaming path."""
    then_mid = (then_ask + then_bid) * 0.5
    mid = (ask + bid) * 0.5
    if buy:
        direction, gross = 1.0, bid - then_ask
    else:
        direction, gross = -1.0, then_bid - ask
    move_ticks = _snap(direction * (mid - then_mid) / tick_size)
    fee_price = fee_bps * then_mid * 1e-4
    pnl_price = gross - cost_ticks * tick_size - fee_price
    pnl_ticks = _snap(gross / tick_size) - cost_ticks - fee_price / tick_size
    pnl_bps = pnl_price / then_mid * 1e4
    return move_ticks > 0, pnl_ticks > 0, move_ticks, pnl_ticks, pnl_price, pnl_bps


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
    out = RoundTrips()
    bid, ask = frame.bid_price[:, 0], frame.ask_price[:, 0]
    busy_until: dict[str, int] = {}
    instruments = frame.instrument
    for r, d in zip(rows.tolist(), np.asarray(direction).tolist()):
        if d == 0:
            continue
        j = int(future[r])
        if j < 0:
            continue
        if one_position:
            name = instruments[r]
            if r < busy_until.get(name, -1):
                continue
            busy_until[name] = j
        out.add(
            *round_trip(
                d > 0, float(bid[r]), float(ask[r]), float(bid[j]), float(ask[j]), float(sizes[r]), cost_ticks, fee_bps
            )
        )
    return out
