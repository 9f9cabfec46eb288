"""Labels from the ticks themselves: what a trade opened now would have been worth `horizon` later.

The horizon is given in ticks or in time (exactly one of the two):

- ticks (`horizon_ticks=h`): the label tick of tick i is the h-th later tick of
  the same instrument;
- time (`horizon_ns=H`): the label tick of tick i (timestamp t) is the first
  later tick of the same instrument whose timestamp is at or after t + H
  ("first" in arrival order, which is time order within an instrument; ticks
  with equal timestamps count in arrival order).

Two label modes compare the tick with its label tick, in tick sizes, each
difference rounded to 1e-6 tick so that float noise in prices like 100.01
cannot flip a label:

- `taker` (cost-aware, the default of `tickserve train`): BUY when the bid at
  the label tick is above today's ask by more than `cost_ticks`, SELL when the
  ask at the label tick is below today's bid by more than `cost_ticks`, else
  HOLD. A correct BUY or SELL is a round trip that pays for crossing the spread
  twice and the cost; on a market where nothing short-term pays for the spread
  almost every tick is HOLD, and abstaining is the right answer.
- `mid` (the seed's rule): the mid move, >= +threshold is BUY, <= -threshold is
  SELL, else HOLD. It ignores the spread, so a correct BUY can lose money.

A tick with no label tick (the last h ticks of an instrument, or the ticks
within H of its last one) gets no label.

One implementation serves training (`make_labels` on a whole frame) and
Evaluate (`evaluation.Evaluation`, which runs `label_rows` on each
message joined to the ticks still waiting for their label tick); tests compare
the two on every tick, with messages of any size.

The "past" tick of tick i, used by the last-move baseline, mirrors the label
tick backwards: the h-th earlier tick of the same instrument, or, with a time
horizon, the last earlier tick whose timestamp is at or before t - H. The
baseline predicts the label the past tick would have had with tick i as its
label tick (`label_classes(past, now)`), in the model's own label mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import isfinite

import numpy as np

from ..core.ticks import TickFrame
from ..features.config import FeatureConfig

# Class order of every model: index = class id.
CLASSES = ("SELL", "HOLD", "BUY")
SELL, HOLD, BUY = 0, 1, 2
NO_LABEL = -1
DEFAULT_HORIZON_TICKS = 50
LABEL_MODES = ("mid", "taker")

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|min|m|h)\s*$")


def parse_duration_ns(text: str) -> int:
    """'1s', '500ms', '2.5s', '100us', '1m' -> nanoseconds (> 0, a whole number of ns)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(
            f"duration: expected a number and a unit (ns, us, ms, s, m, h), e.g. 500ms or 1s; got {text!r}"
        )
    value, unit = match.groups()
    ns = float(value) * _UNITS_NS[unit]
    if ns != int(ns) or ns < 1:
        raise ValueError(f"duration: {text!r} is not a whole number of nanoseconds >= 1")
    return int(ns)


def format_duration_ns(ns: int) -> str:
    for unit in ("h", "m", "s", "ms", "us"):
        if ns % _UNITS_NS[unit] == 0:
            return f"{ns // _UNITS_NS[unit]}{unit}"
    return f"{ns}ns"


@dataclass(frozen=True)
class LabelConfig:
    """horizon_ticks (default 50) or horizon_ns: exactly one is set after construction.

    `mode` "mid" uses `threshold_ticks`; "taker" uses `cost_ticks` (the round trip's
    cost beyond the spread, >= 0). A manifest without a mode is a "mid" one."""

    horizon_ticks: int | None = None
    threshold_ticks: float = 2.0
    horizon_ns: int | None = None
    mode: str = "mid"
    cost_ticks: float = 0.0

    def __post_init__(self) -> None:
        if self.horizon_ticks is None and self.horizon_ns is None:
            object.__setattr__(self, "horizon_ticks", DEFAULT_HORIZON_TICKS)
        elif self.horizon_ticks is not None and self.horizon_ns is not None:
            raise ValueError("give the horizon in ticks or in time (horizon_ns), not both")
        if self.horizon_ticks is not None and (isinstance(self.horizon_ticks, bool) or self.horizon_ticks < 1):
            raise ValueError(f"horizon_ticks must be >= 1, got {self.horizon_ticks}")
        if self.horizon_ns is not None and (isinstance(self.horizon_ns, bool) or self.horizon_ns < 1):
            raise ValueError(f"horizon_ns must be >= 1, got {self.horizon_ns}")
        if self.mode not in LABEL_MODES:
            raise ValueError(f"label mode must be one of {', '.join(LABEL_MODES)}, got {self.mode!r}")
        if not (isfinite(self.threshold_ticks) and self.threshold_ticks > 0):
            raise ValueError(f"threshold_ticks must be > 0, got {self.threshold_ticks}")
        if not (isfinite(self.cost_ticks) and self.cost_ticks >= 0):
            raise ValueError(f"cost_ticks must be a finite number >= 0, got {self.cost_ticks}")

    @property
    def in_time(self) -> bool:
        return self.horizon_ns is not None

    @property
    def taker(self) -> bool:
        return self.mode == "taker"

    def describe(self) -> str:
        horizon = format_duration_ns(self.horizon_ns) if self.in_time else f"{self.horizon_ticks} ticks"
        if self.taker:
            return f"taker, horizon {horizon}, cost {self.cost_ticks:g} ticks beyond the spread"
        return f"mid, horizon {horizon}, threshold {self.threshold_ticks:g} ticks"

    def to_dict(self) -> dict:
        # a mid label writes exactly the keys manifests always had, so older readers still load it
        d: dict = {"horizon_ns": self.horizon_ns} if self.in_time else {"horizon_ticks": self.horizon_ticks}
        d["threshold_ticks"] = self.threshold_ticks
        if self.taker:
            d.update(mode=self.mode, cost_ticks=self.cost_ticks)
        return d

    @staticmethod
    def from_dict(d: dict) -> LabelConfig:
        mode = str(d.get("mode", "mid"))
        cost = float(d.get("cost_ticks", 0.0))
        horizon_ns = d.get("horizon_ns")
        if horizon_ns is not None:
            if "horizon_ticks" in d and d["horizon_ticks"] is not None:
                raise ValueError("label_config: horizon_ticks and horizon_ns are both set")
            return LabelConfig(
                None, float(d["threshold_ticks"]), horizon_ns=int(horizon_ns), mode=mode, cost_ticks=cost
            )
        return LabelConfig(int(d["horizon_ticks"]), float(d["threshold_ticks"]), mode=mode, cost_ticks=cost)


def label_class(
    now_bid: float, now_ask: float, later_bid: float, later_ask: float, tick_size: float, labels: LabelConfig
) -> int:
    """The class of one tick given its label tick's best bid and ask (`label_classes` of one row)."""
    one = np.ones(1)
    return int(
        label_classes(one * now_bid, one * now_ask, one * later_bid, one * later_ask, one * tick_size, labels)[0]
    )


def label_classes(
    now_bid: np.ndarray,
    now_ask: np.ndarray,
    later_bid: np.ndarray,
    later_ask: np.ndarray,
    tick_size: np.ndarray,
    labels: LabelConfig,
) -> np.ndarray:
    """The class of each tick given its label tick's best bid and ask, in tick sizes (the rule of the module doc)."""
    if labels.taker:
        up = np.round((later_bid - now_ask) / tick_size, 6)
        down = np.round((now_bid - later_ask) / tick_size, 6)
        cost = labels.cost_ticks
        return np.where(up > cost, BUY, np.where(down > cost, SELL, HOLD)).astype(np.int64)
    move = np.round(((later_ask + later_bid) * 0.5 - (now_ask + now_bid) * 0.5) / tick_size, 6)
    threshold = labels.threshold_ticks
    return np.where(move >= threshold, BUY, np.where(move <= -threshold, SELL, HOLD)).astype(np.int64)


def mid_prices(frame: TickFrame) -> np.ndarray:
    return (frame.ask_price[:, 0] + frame.bid_price[:, 0]) * 0.5


def instrument_codes(frame: TickFrame) -> np.ndarray:
    """Per row, a small int naming its instrument; refuses rows out of time order within an instrument."""
    _, codes = np.unique(frame.instrument, return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    order, start, _ = _groups(codes)
    ts = frame.timestamp_ns[order]
    backwards = np.flatnonzero((np.diff(ts) < 0) & (start[1:] == start[:-1]))
    if len(backwards):
        row = int(order[backwards[0] + 1])
        name = frame.instrument[row]
        raise ValueError(f"ticks of {name!r} are not in time order: row {row} is earlier than the tick before it")
    return codes


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows sorted by instrument, arrival order kept; per sorted position the first and the
    one-past-last position of its instrument's run)."""
    order = np.argsort(codes, kind="stable")
    c = codes[order]
    n = len(c)
    first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if n else np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.r_[first, n])
    start = np.repeat(first, lengths)
    return order, start, start + np.repeat(lengths, lengths)


def label_rows(codes: np.ndarray, timestamp_ns: np.ndarray, labels: LabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the row of its label tick and of its past tick (see the module doc); -1 where
    there is none. Rows are in arrival order, `codes` (ints) name their instruments, and time
    never goes back within an instrument. One sort serves every instrument: rows sorted by
    instrument (arrival order kept), then searched with keys that sort like (instrument, time)."""
    n = len(codes)
    future = np.full(n, -1, dtype=np.int64)
    past = np.full(n, -1, dtype=np.int64)
    order, start, end = _groups(codes)
    if labels.in_time:
        ts = timestamp_ns[order]
        h = labels.horizon_ns
        _, rank = np.unique(np.concatenate([ts, ts + h, ts - h]), return_inverse=True)
        rank = rank.ravel().astype(np.int64)
        c = codes[order] * (len(rank) + 1)
        keys = c + rank[:n]
        j = np.searchsorted(keys, c + rank[n : 2 * n], side="left")  # the first at or after t + H
        k = np.searchsorted(keys, c + rank[2 * n :], side="right") - 1  # the last at or before t - H
    else:
        position = np.arange(n)
        j = position + labels.horizon_ticks
        k = position - labels.horizon_ticks
    ok = j < end
    future[order[ok]] = order[j[ok]]
    ok = k >= start
    past[order[ok]] = order[k[ok]]
    return future, past


def future_index(frame: TickFrame, labels: LabelConfig) -> np.ndarray:
    """Per row of a frame, the row of its label tick; -1 where there is none."""
    return label_rows(instrument_codes(frame), frame.timestamp_ns, labels)[0]


def past_index(frame: TickFrame, labels: LabelConfig) -> np.ndarray:
    """Per row of a frame, the row of its past tick; -1 where there is none."""
    return label_rows(instrument_codes(frame), frame.timestamp_ns, labels)[1]


def tick_sizes(frame: TickFrame, features: FeatureConfig) -> np.ndarray:
    sizes = np.empty(len(frame))
    for name in np.unique(frame.instrument):
        sizes[frame.instrument == name] = features.tick_size(str(name))
    return sizes


def labels_between(
    frame: TickFrame, now: np.ndarray, later: np.ndarray, labels: LabelConfig, sizes: np.ndarray
) -> np.ndarray:
    """The classes of rows `now` with label ticks `later` (row indices, same length)."""
    bid, ask = frame.bid_price[:, 0], frame.ask_price[:, 0]
    return label_classes(bid[now], ask[now], bid[later], ask[later], sizes[now], labels)


def make_labels(frame: TickFrame, labels: LabelConfig, features: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(label per row, index of the row that defines it); both -1 where unlabeled."""
    y = np.full(len(frame), NO_LABEL, dtype=np.int64)
    future = future_index(frame, labels)
    now = np.flatnonzero(future >= 0)
    if len(now):
        y[now] = labels_between(frame, now, future[now], labels, tick_sizes(frame, features))
    return y, future
