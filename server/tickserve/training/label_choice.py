"""Fitting a label to the instrument: the horizon and the mid threshold, from the training span only.

A fixed horizon is seconds on one market and minutes on another, and a fixed
2-tick threshold is noise on a stock with a 20-tick spread but a rare event
on a 1-tick future. So `tickserve train` can choose them from the data:

- `--horizon auto` (the default): the shortest horizon of `TICK_LADDER` (or,
  with `--horizon-time auto`, of `TIME_LADDER_NS`) at which at least
  `MIN_ACTION_SHARE` of the labeled ticks are BUY or SELL. Short horizons are
  where order-book information lives (it decays within seconds), but at too
  short a horizon almost nothing pays for the spread and every label is HOLD;
  this picks the shortest horizon at which one tick in about seven would have
  been a trade worth taking (taker labels) or a move past the threshold (mid).
- `--threshold 1.5spread`: a mid threshold of 1.5 x the median spread in ticks.

Both look only at ticks before `end_ns` (the first walk-forward test block),
and only at labels whose label tick also lies before it, so no fold is tested
on ticks that informed the choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from ..core.ticks import TickFrame
from ..evaluation.labels import HOLD, LabelConfig, format_duration_ns, future_index, labels_between, tick_sizes
from ..features.config import FeatureConfig

TICK_LADDER = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_S = 1_000_000_000
TIME_LADDER_NS = (
    _S // 10,
    _S // 5,
    _S // 2,
    _S,
    2 * _S,
    5 * _S,
    10 * _S,
    20 * _S,
    30 * _S,
    60 * _S,
    120 * _S,
    300 * _S,
    600 * _S,
)
MIN_ACTION_SHARE = 0.15
# a candidate must leave this many labeled ticks per horizon in the span, else it is not tried
MIN_SPAN_HORIZONS = 10
_SPREAD_MULTIPLE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x\s*)?spreads?\s*$")


@dataclass(frozen=True)
class HorizonChoice:
    labels: LabelConfig
    # (horizon as text, share of BUY/SELL labels) per candidate tried, in ladder order
    shares: tuple[tuple[str, float], ...]
    rule: str  # one sentence: what was chosen and why


def choose_horizon(
    frame: TickFrame,
    template: LabelConfig,
    features: FeatureConfig,
    end_ns: int,
    *,
    in_time: bool = False,
    min_share: float = MIN_ACTION_SHARE,
) -> HorizonChoice:
    """The shortest ladder horizon at which >= min_share of the span's labels are BUY or SELL."""
    span = frame.timestamp_ns < end_ns
    rows = np.flatnonzero(span)
    if len(rows) == 0:
        raise ValueError("choosing the label horizon: no tick before the first test block")
    sizes = tick_sizes(frame, features)
    seconds = (frame.timestamp_ns[rows].max() - frame.timestamp_ns[rows].min()) / _S
    instruments = max(1, len(np.unique(frame.instrument[rows])))
    shares: list[tuple[str, float]] = []
    ladder = TIME_LADDER_NS if in_time else TICK_LADDER
    for h in ladder:
        if in_time:
            if h / _S * MIN_SPAN_HORIZONS > seconds:
                break
            labels = replace(template, horizon_ticks=None, horizon_ns=h)
            text = format_duration_ns(h)
        else:
            if h * MIN_SPAN_HORIZONS * instruments > len(rows):
                break
            labels = replace(template, horizon_ticks=h, horizon_ns=None)
            text = f"{h} ticks"
        future = future_index(frame, labels)
        ok = rows[(future[rows] >= 0)]
        ok = ok[frame.timestamp_ns[future[ok]] < end_ns]
        if len(ok) == 0:
            break
        y = labels_between(frame, ok, future[ok], labels, sizes)
        share = float(np.mean(y != HOLD))
        shares.append((text, share))
        if share >= min_share:
            rule = (
                f"horizon {text}: the shortest of {_ladder_text(ladder, in_time)} at which at least "
                f"{min_share:.0%} of the training span's labels are BUY or SELL ({share:.1%})"
            )
            return HorizonChoice(labels, tuple(shares), rule)
    if not shares:
        raise ValueError(
            f"choosing the label horizon: {len(rows)} ticks before the first test block are too few "
            f"for the shortest candidate horizon; give --horizon or --horizon-time"
        )
    text, share = shares[-1]
    rule = (
        f"horizon {text}: no horizon the span allows reaches {min_share:.0%} BUY or SELL labels, so the "
        f"longest tried ({share:.1%} BUY or SELL); expect mostly HOLD"
    )
    return HorizonChoice(labels, tuple(shares), rule)


def _ladder_text(ladder, in_time: bool) -> str:
    return ", ".join(format_duration_ns(h) if in_time else str(h) for h in ladder) + ("" if in_time else " ticks")


def parse_threshold(text: str) -> tuple[float | None, float | None]:
    """'2' -> (2.0 ticks, None); '1.5spread' -> (None, 1.5 median spreads)."""
    text = str(text)
    match = _SPREAD_MULTIPLE.match(text)
    if match:
        multiple = float(match.group(1))
        if not multiple > 0:
            raise ValueError(f"--threshold: a multiple of the spread must be > 0, got {text!r}")
        return None, multiple
    try:
        ticks = float(text)
    except ValueError:
        raise ValueError(
            f"--threshold: expected ticks (e.g. 2) or a multiple of the median spread (e.g. 1.5spread), got {text!r}"
        ) from None
    if not ticks > 0:
        raise ValueError(f"--threshold: must be > 0 ticks, got {text!r}")
    return ticks, None


def median_spread_ticks(frame: TickFrame, features: FeatureConfig, end_ns: int) -> float:
    """The median best-level spread in ticks over the ticks before end_ns."""
    rows = frame.timestamp_ns < end_ns
    spread = (frame.ask_price[rows, 0] - frame.bid_price[rows, 0]) / tick_sizes(frame, features)[rows]
    if len(spread) == 0:
        raise ValueError("median spread: no tick before the first test block")
    return float(np.round(np.median(spread), 6))
