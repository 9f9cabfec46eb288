"""Incremental evaluation: labels from the ticks themselves, memory bounded by the horizon.

Each scored tick waits in its instrument's queue until its label tick arrives
(`labels.StreamingLabeler`: the same rule as training's `make_labels`, with a
horizon in ticks or in time, in the model's label mode); then its label is
known and it is counted. Ticks still waiting when the stream ends have no
label (same rule as training). Ticks before `score_from_ns` are warm-up: they
feed the features (in the session) and serve as label and past ticks here,
but are not scored.

Besides the model's classification metrics, every report carries, on the same
labeled ticks:

- the baselines of `baselines.py` (majority class, last move, level-1
  imbalance sign), with accuracy and macro-F1;
- trading metrics of the model's BUY/SELL signals (docs/trading-metrics.md,
  `trading.round_trip`): hit and win rates, mean forward mid move, P&L after
  crossing the spread, `cost_ticks` and `fee_bps`, in ticks and bps, by
  strength, by risk and by action (signals may overlap), the same with one
  position per instrument (all signals, STRONG ones, each baseline), the
  signal rate and a downsampled cumulative P&L series.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import isfinite

import numpy as np

from .baselines import DESCRIPTIONS, imbalance_class
from .errors import InvalidArgument, ResourceExhausted
from .labels import BUY, CLASSES, HOLD, StreamingLabeler, label_class
from .metrics import CalibrationMetrics, ClassificationMetrics
from .repository import LoadedModel
from .signals import RISKS, STRENGTHS, SignalValues
from .ticks import Tick
from .trading import RoundTrips, round_trip

# Ticks of one instrument that may wait for their label tick (a few hundred bytes each). With a
# tick horizon the queue never exceeds the horizon; with a time horizon it grows while the
# ticks' clock stands still, so it is bounded here.
MAX_WAITING_TICKS = 200_000
_CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
MAX_PNL_POINTS = 1_000
TradingBucket = RoundTrips  # one kind of bucket for every group of round trips
_BASELINES = ("last_move", "imbalance")
# one-position books: every BUY/SELL signal, the STRONG ones, each baseline's
_BOOKS = ("all", "strong") + _BASELINES


class CumulativePnl:
    """(tick index, timestamp, cumulative P&L in ticks and price) after each closed round trip,
    downsampled on the fly to at most MAX_PNL_POINTS points: every `stride`-th trade is kept and
    the stride doubles whenever the list is full; the last trade is always the last point."""

    def __init__(self, max_points: int = MAX_PNL_POINTS) -> None:
        self.max_points = max(2, max_points)
        self.points: list[tuple[int, int, float, float]] = []
        self.stride = 1
        self.trades = 0
        self.last: tuple[int, int, float, float] | None = None

    def add(self, point: tuple[int, int, float, float]) -> None:
        self.trades += 1
        self.last = point
        if self.trades % self.stride == 0:
            self.points.append(point)
            if len(self.points) >= self.max_points:  # keep room for the final point
                self.points = self.points[1::2]
                self.stride *= 2

    def series(self) -> list[tuple[int, int, float, float]]:
        if self.last is not None and (not self.points or self.points[-1] is not self.last):
            return [*self.points, self.last]
        return list(self.points)


class _Pending:
    """One tick waiting for its label tick."""

    __slots__ = ("index", "bid", "ask", "signal", "raw", "baseline", "scored", "books")

    def __init__(self, index: int, bid: float, ask: float, signal: SignalValues, raw, scored: bool) -> None:
        self.index = index
        self.bid = bid
        self.ask = ask
        self.signal = signal
        self.raw = raw
        self.scored = scored
        self.baseline: tuple[int, int] = (HOLD, HOLD)
        self.books: list[tuple[str, bool]] = []  # (one-position book, buy?) opened on this tick


@dataclass
class Evaluation:
    model: LoadedModel
    # trading cost per round trip (one signal), in tick sizes, on top of the spread
    cost_ticks: float = 0.0
    # fees per round trip, in bps of the entry mid
    fee_bps: float = 0.0
    # ticks before this timestamp are warm-up (0: none)
    score_from_ns: int = 0
    # keep (label, label tick index) per tick index in `labels_seen` (tests compare with make_labels)
    record_labels: bool = False
    ticks: int = 0  # scored ticks
    warmup_ticks: int = 0
    metrics: ClassificationMetrics = field(default_factory=ClassificationMetrics)
    actions: Counter = field(default_factory=Counter)
    strengths: Counter = field(default_factory=Counter)
    risks: Counter = field(default_factory=Counter)
    calibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    uncalibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    baselines: dict = field(default_factory=lambda: {name: ClassificationMetrics() for name in _BASELINES})
    signals: int = 0  # BUY/SELL signals, labeled or not
    trading: RoundTrips = field(default_factory=RoundTrips)
    by_strength: dict = field(default_factory=lambda: {s: RoundTrips() for s in STRENGTHS})
    by_risk: dict = field(default_factory=lambda: {r: RoundTrips() for r in RISKS})
    by_action: dict = field(default_factory=lambda: {a: RoundTrips() for a in ("BUY", "SELL")})
    pnl: CumulativePnl = field(default_factory=CumulativePnl)
    # the same round trips for the baselines' BUY/SELL predictions (what a naive rule would have earned)
    baseline_trading: dict = field(default_factory=lambda: {name: RoundTrips() for name in _BASELINES})
    one_position: dict = field(default_factory=lambda: {name: RoundTrips() for name in _BOOKS})
    labels_seen: dict = field(default_factory=dict)
    _labeler: StreamingLabeler | None = None

    def __post_init__(self) -> None:
        for name, value in (("cost_ticks", self.cost_ticks), ("fee_bps", self.fee_bps)):
            if not (isfinite(value) and value >= 0):
                raise InvalidArgument(
                    f"config.{name}: must be a finite number >= 0, got {value!r}", field=f"config.{name}"
                )
        if self.score_from_ns < 0:
            raise InvalidArgument(
                f"config.score_from_ns: must be >= 0 (0 = score every tick), got {self.score_from_ns}",
                field="config.score_from_ns",
            )
        self._labeler = StreamingLabeler(self.model.manifest.label_config)
        self._sent = 0
        self._cum_ticks = 0.0
        self._cum_price = 0.0
        self._open: dict[str, set] = {name: set() for name in _BOOKS}  # instruments holding a position

    def add_tick(self, tick: Tick, signal: SignalValues, raw: tuple[float, float, float]) -> None:
        """Count one tick (in the order the ticks were sent) and settle the ticks it labels."""
        index = self._sent
        self._sent += 1
        scored = tick.timestamp_ns >= self.score_from_ns
        labels = self.model.manifest.label_config
        tick_size = self.model.manifest.feature_config.tick_size(tick.instrument)
        bid, ask = tick.bid_price[0], tick.ask_price[0]
        if scored:
            self.ticks += 1
            self.actions[signal.action] += 1
            self.strengths[signal.strength] += 1
            self.risks[signal.risk] += 1
            if signal.action != "HOLD":
                self.signals += 1
        else:
            self.warmup_ticks += 1
        item = _Pending(index, bid, ask, signal, raw, scored)
        resolved, past = self._labeler.push(tick.instrument, tick.timestamp_ns, item)
        if not resolved and self._labeler.waiting_for(tick.instrument) > MAX_WAITING_TICKS:
            # a time horizon over ticks whose clock barely moves: memory would grow without bound
            raise ResourceExhausted(
                f"ticks[{index}].timestamp_ns: {MAX_WAITING_TICKS} ticks of {tick.instrument!r} are waiting for "
                f"the label tick {labels.horizon_ns} ns later (max_waiting_ticks); "
                "the ticks' timestamps do not advance enough for this model's time horizon",
                field=f"ticks[{index}].timestamp_ns",
            )
        for then in resolved:
            self._settle(then, tick.instrument, index, tick.timestamp_ns, bid, ask, tick_size)
        if not scored:
            return
        last_move = HOLD if past is None else label_class(past.bid, past.ask, bid, ask, tick_size, labels)
        item.baseline = (last_move, imbalance_class(tick.bid_size[0], tick.ask_size[0]))
        wants = {
            "all": signal.action != "HOLD",
            "strong": signal.action != "HOLD" and signal.strength == "STRONG",
            "last_move": last_move != HOLD,
            "imbalance": item.baseline[1] != HOLD,
        }
        buys = {
            "all": signal.action == "BUY",
            "strong": signal.action == "BUY",
            "last_move": last_move == BUY,
            "imbalance": item.baseline[1] == BUY,
        }
        for book, want in wants.items():
            if want and tick.instrument not in self._open[book]:
                self._open[book].add(tick.instrument)
                item.books.append((book, buys[book]))

    def add(self, instrument: str, mid: float, signal: SignalValues, raw: tuple[float, float, float]) -> None:
        """Compatibility: a tick known only by its mid (no book: every tick gets the same timestamp,
        spread 0 and balanced sizes; use `add_tick` for time horizons and trading metrics)."""
        self.add_tick(Tick(instrument, 1, 0.0, 0.0, (mid,), (1.0,), (mid,), (1.0,)), signal, raw)

    def _settle(
        self, then: _Pending, instrument: str, index: int, ts: int, bid: float, ask: float, tick_size: float
    ) -> None:
        for book, buy in then.books:
            self._open[book].discard(instrument)
            self.one_position[book].add(*self._trip(buy, then, bid, ask, tick_size))
        if not then.scored:
            return
        labels = self.model.manifest.label_config
        signal = then.signal
        true = label_class(then.bid, then.ask, bid, ask, tick_size, labels)
        probs = (signal.p_sell, signal.p_hold, signal.p_buy)
        self.metrics.add(true, _CLASS_ID[signal.action], probs)
        self.calibrated.add(true, probs)
        self.uncalibrated.add(true, then.raw)
        for name, predicted in zip(_BASELINES, then.baseline):
            self.baselines[name].add_class(true, predicted)
            if predicted != HOLD:
                self.baseline_trading[name].add(*self._trip(predicted == BUY, then, bid, ask, tick_size))
        if self.record_labels:
            self.labels_seen[then.index] = (true, index)
        if signal.action == "HOLD":
            return
        trade = self._trip(signal.action == "BUY", then, bid, ask, tick_size)
        for bucket in (
            self.trading,
            self.by_strength[signal.strength],
            self.by_risk[signal.risk],
            self.by_action[signal.action],
        ):
            bucket.add(*trade)
        self._cum_ticks += trade[3]
        self._cum_price += trade[4]
        self.pnl.add((index, ts, self._cum_ticks, self._cum_price))

    def _trip(self, buy: bool, then: _Pending, bid: float, ask: float, tick_size: float):
        return round_trip(buy, then.bid, then.ask, bid, ask, tick_size, self.cost_ticks, self.fee_bps)

    @property
    def labeled(self) -> int:
        return self.metrics.count

    def baseline_report(self) -> list[dict]:
        m = self.metrics
        majority, accuracy = m.majority_baseline()
        out = [
            {
                "name": "majority",
                "description": f"always {majority}: {DESCRIPTIONS['majority']}",
                "accuracy": accuracy,
                "macro_f1": m.majority_macro_f1(),
            }
        ]
        for name, b in self.baselines.items():
            out.append(
                {"name": name, "description": DESCRIPTIONS[name], "accuracy": b.accuracy, "macro_f1": b.macro_f1}
            )
        return out

    def trading_report(self) -> dict:
        return {
            "cost_ticks": self.cost_ticks,
            "fee_bps": self.fee_bps,
            "signals": self.signals,
            "trades": self.trading.trades,
            "signals_per_1000_ticks": 1000.0 * self.signals / self.ticks if self.ticks else 0.0,
            "all": self.trading.to_dict(),
            "by_strength": {k: b.to_dict() for k, b in self.by_strength.items()},
            "by_risk": {k: b.to_dict() for k, b in self.by_risk.items()},
            "by_action": {k: b.to_dict() for k, b in self.by_action.items()},
            "cumulative_pnl": self.pnl.series(),
            "baselines": {k: b.to_dict() for k, b in self.baseline_trading.items()},
            "one_position_all": self.one_position["all"].to_dict(),
            "one_position_strong": self.one_position["strong"].to_dict(),
            "one_position_baselines": {k: self.one_position[k].to_dict() for k in _BASELINES},
        }

    def report(self) -> dict:
        m = self.metrics
        majority, baseline = m.majority_baseline()
        labels = self.model.manifest.label_config
        return {
            "model": self.model.name,
            "model_version": self.model.version,
            "ticks": self.ticks,
            "warmup_ticks": self.warmup_ticks,
            "labeled": m.count,
            "accuracy": m.accuracy,
            "macro_f1": m.macro_f1,
            "log_loss": m.log_loss,
            "majority_baseline_accuracy": baseline,
            "majority_class": majority,
            "classes": list(CLASSES),
            "per_class": m.per_class(),
            "confusion_matrix": np.asarray(m.confusion).ravel().tolist(),
            "action_counts": dict(self.actions),
            "strength_counts": dict(self.strengths),
            "risk_counts": dict(self.risks),
            "feature_importance": list(self.model.importance),
            "brier_score": self.calibrated.brier,
            "brier_score_uncalibrated": self.uncalibrated.brier,
            "expected_calibration_error": self.calibrated.ece,
            "expected_calibration_error_uncalibrated": self.uncalibrated.ece,
            "calibration_temperature": self.model.calibrator.temperature,
            "label_config": {
                "horizon_ticks": labels.horizon_ticks or 0,
                "horizon_ns": labels.horizon_ns or 0,
                "threshold_ticks": labels.threshold_ticks,
                "mode": labels.mode,
                "cost_ticks": labels.cost_ticks,
            },
            "baselines": self.baseline_report(),
            "trading": self.trading_report(),
        }


__all__ = ["CumulativePnl", "Evaluation", "TradingBucket"]
