"""Incremental evaluation: labels from the ticks themselves, memory bounded by the horizon.

Each scored tick waits in its instrument's queue until its label tick arrives
(`labels.StreamingLabeler`: the same rule as training's `make_labels`, with a
horizon in ticks or in time); then its label is known and it is counted. Ticks
still waiting when the stream ends have no label (same rule as training).

Besides the model's classification metrics, every report carries, on the same
labeled ticks:

- the baselines of `baselines.py` (majority class, last mid move, level-1
  imbalance sign), with accuracy and macro-F1;
- trading metrics of the model's BUY/SELL signals (docs/trading-metrics.md):
  hit rate, mean forward mid move, P&L after crossing the spread (and after
  `cost_ticks` per round trip), by strength, by risk and by action, the signal
  rate and a downsampled cumulative P&L series.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import isfinite

import numpy as np

from .baselines import DESCRIPTIONS, imbalance_class
from .errors import InvalidArgument, ResourceExhausted
from .labels import BUY, CLASSES, HOLD, StreamingLabeler, label_move
from .metrics import CalibrationMetrics, ClassificationMetrics
from .repository import LoadedModel

# Ticks of one instrument that may wait for their label tick (a few hundred bytes each). With a
# tick horizon the queue never exceeds the horizon; with a time horizon it grows while the
# ticks' clock stands still, so it is bounded here.
MAX_WAITING_TICKS = 200_000
from .signals import RISKS, STRENGTHS, SignalValues
from .ticks import Tick

_CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
MAX_PNL_POINTS = 1_000


def _snap(ticks: float) -> float:
    """A move or P&L in ticks to the nearest 1e-6 tick (float noise in prices like 61804.7 - 61804.8)."""
    return round(ticks * 1e6) / 1e6


class TradingBucket:
    """Round trips of one group of signals (all, one strength, one risk, one action)."""

    __slots__ = ("trades", "hits", "move_ticks", "pnl_ticks", "pnl_price")

    def __init__(self) -> None:
        self.trades = 0
        self.hits = 0
        self.move_ticks = 0.0
        self.pnl_ticks = 0.0
        self.pnl_price = 0.0

    def add(self, hit: bool, move_ticks: float, pnl_ticks: float, pnl_price: float) -> None:
        self.trades += 1
        self.hits += hit
        self.move_ticks += move_ticks
        self.pnl_ticks += pnl_ticks
        self.pnl_price += pnl_price

    def to_dict(self) -> dict:
        n = self.trades
        return {
            "trades": n,
            "hit_rate": self.hits / n if n else 0.0,
            "mean_move_ticks": self.move_ticks / n if n else 0.0,
            "mean_pnl_ticks": self.pnl_ticks / n if n else 0.0,
            "total_pnl_ticks": self.pnl_ticks,
            "total_pnl_price": self.pnl_price,
        }


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


@dataclass
class Evaluation:
    model: LoadedModel
    # trading cost per round trip (one signal), in tick sizes, on top of the spread
    cost_ticks: float = 0.0
    # keep (label, label tick index) per tick index in `labels_seen` (tests compare with make_labels)
    record_labels: bool = False
    ticks: int = 0
    metrics: ClassificationMetrics = field(default_factory=ClassificationMetrics)
    actions: Counter = field(default_factory=Counter)
    strengths: Counter = field(default_factory=Counter)
    risks: Counter = field(default_factory=Counter)
    calibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    uncalibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    baselines: dict = field(default_factory=lambda: {"last_move": ClassificationMetrics(), "imbalance": ClassificationMetrics()})
    signals: int = 0  # BUY/SELL signals, labeled or not
    trading: TradingBucket = field(default_factory=TradingBucket)
    by_strength: dict = field(default_factory=lambda: {s: TradingBucket() for s in STRENGTHS})
    by_risk: dict = field(default_factory=lambda: {r: TradingBucket() for r in RISKS})
    by_action: dict = field(default_factory=lambda: {a: TradingBucket() for a in ("BUY", "SELL")})
    pnl: CumulativePnl = field(default_factory=CumulativePnl)
    # the same round trips for the baselines' BUY/SELL predictions (what a naive rule would have earned)
    baseline_trading: dict = field(default_factory=lambda: {"last_move": TradingBucket(), "imbalance": TradingBucket()})
    labels_seen: dict = field(default_factory=dict)
    _labeler: StreamingLabeler | None = None

    def __post_init__(self) -> None:
        if not (isfinite(self.cost_ticks) and self.cost_ticks >= 0):
            raise InvalidArgument(
                f"config.cost_ticks: must be a finite number of ticks >= 0, got {self.cost_ticks!r}",
                field="config.cost_ticks",
            )
        self._labeler = StreamingLabeler(self.model.manifest.label_config)
        self._cum_ticks = 0.0
        self._cum_price = 0.0

    def add_tick(self, tick: Tick, signal: SignalValues, raw: tuple[float, float, float]) -> None:
        """Count one scored tick (in the order the ticks were sent) and settle the ticks it labels."""
        index = self.ticks
        self.ticks += 1
        self.actions[signal.action] += 1
        self.strengths[signal.strength] += 1
        self.risks[signal.risk] += 1
        if signal.action != "HOLD":
            self.signals += 1
        bid, ask = tick.bid_price[0], tick.ask_price[0]
        mid = (ask + bid) * 0.5
        tick_size = self.model.manifest.feature_config.tick_size(tick.instrument)
        threshold = self.model.manifest.label_config.threshold_ticks
        item = [index, mid, bid, ask, signal, raw, 0]
        resolved, past = self._labeler.push(tick.instrument, tick.timestamp_ns, item)
        if not resolved and self._labeler.waiting_for(tick.instrument) > MAX_WAITING_TICKS:
            # a time horizon over ticks whose clock barely moves: memory would grow without bound
            raise ResourceExhausted(
                f"ticks[{index}].timestamp_ns: {MAX_WAITING_TICKS} ticks of {tick.instrument!r} are waiting for "
                f"the label tick {self.model.manifest.label_config.horizon_ns} ns later (max_waiting_ticks); "
                "the ticks' timestamps do not advance enough for this model's time horizon",
                field=f"ticks[{index}].timestamp_ns",
            )
        for then in resolved:
            self._settle(then, index, tick.timestamp_ns, mid, bid, ask, tick_size, threshold)
        last_move = HOLD if past is None else label_move((mid - past[1]) / tick_size, threshold)
        item[6] = (last_move, imbalance_class(tick.bid_size[0], tick.ask_size[0]))

    def add(self, instrument: str, mid: float, signal: SignalValues, raw: tuple[float, float, float]) -> None:
        """Compatibility: a tick known only by its mid (no book: every tick gets the same timestamp,
        spread 0 and balanced sizes; use `add_tick` for time horizons and trading metrics)."""
        self.add_tick(Tick(instrument, 1, 0.0, 0.0, (mid,), (1.0,), (mid,), (1.0,)), signal, raw)

    def _settle(self, then: list, index: int, ts: int, mid: float, bid: float, ask: float,
                tick_size: float, threshold: float) -> None:
        then_index, then_mid, then_bid, then_ask, signal, raw, baseline = then
        move = (mid - then_mid) / tick_size
        true = label_move(move, threshold)
        probs = (signal.p_sell, signal.p_hold, signal.p_buy)
        self.metrics.add(true, _CLASS_ID[signal.action], probs)
        self.calibrated.add(true, probs)
        self.uncalibrated.add(true, raw)
        self.baselines["last_move"].add_class(true, baseline[0])
        self.baselines["imbalance"].add_class(true, baseline[1])
        if self.record_labels:
            self.labels_seen[then_index] = (true, index)
        for name, predicted in zip(("last_move", "imbalance"), baseline):
            if predicted != HOLD:
                self.baseline_trading[name].add(*self._round_trip(predicted == BUY, move, then_bid, then_ask, bid, ask,
                                                                  tick_size))
        if signal.action == "HOLD":
            return
        trade = self._round_trip(signal.action == "BUY", move, then_bid, then_ask, bid, ask, tick_size)
        for bucket in (self.trading, self.by_strength[signal.strength], self.by_risk[signal.risk],
                       self.by_action[signal.action]):
            bucket.add(*trade)
        self._cum_ticks += trade[2]
        self._cum_price += trade[3]
        self.pnl.add((index, ts, self._cum_ticks, self._cum_price))

    def _round_trip(self, buy: bool, move: float, then_bid: float, then_ask: float, bid: float, ask: float,
                    tick_size: float) -> tuple[bool, float, float, float]:
        """(hit, signed mid move in ticks, P&L in ticks, P&L in price) of one unit, after the spread and cost."""
        if buy:  # buy at the ask now, sell at the bid at the label tick
            direction, pnl_price = 1.0, bid - then_ask
        else:  # sell at the bid now, buy back at the ask at the label tick
            direction, pnl_price = -1.0, then_bid - ask
        move_ticks = _snap(direction * move)
        pnl_ticks = _snap(pnl_price / tick_size) - self.cost_ticks
        return move_ticks > 0, move_ticks, pnl_ticks, pnl_price - self.cost_ticks * tick_size

    @property
    def labeled(self) -> int:
        return self.metrics.count

    def baseline_report(self) -> list[dict]:
        m = self.metrics
        majority, accuracy = m.majority_baseline()
        out = [{"name": "majority", "description": f"always {majority}: {DESCRIPTIONS['majority']}",
                "accuracy": accuracy, "macro_f1": m.majority_macro_f1()}]
        for name, b in self.baselines.items():
            out.append({"name": name, "description": DESCRIPTIONS[name], "accuracy": b.accuracy, "macro_f1": b.macro_f1})
        return out

    def trading_report(self) -> dict:
        return {
            "cost_ticks": self.cost_ticks,
            "signals": self.signals,
            "trades": self.trading.trades,
            "signals_per_1000_ticks": 1000.0 * self.signals / self.ticks if self.ticks else 0.0,
            "all": self.trading.to_dict(),
            "by_strength": {k: b.to_dict() for k, b in self.by_strength.items()},
            "by_risk": {k: b.to_dict() for k, b in self.by_risk.items()},
            "by_action": {k: b.to_dict() for k, b in self.by_action.items()},
            "cumulative_pnl": self.pnl.series(),
            "baselines": {k: b.to_dict() for k, b in self.baseline_trading.items()},
        }

    def report(self) -> dict:
        m = self.metrics
        majority, baseline = m.majority_baseline()
        labels = self.model.manifest.label_config
        return {
            "model": self.model.name,
            "model_version": self.model.version,
            "ticks": self.ticks,
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
            },
            "baselines": self.baseline_report(),
            "trading": self.trading_report(),
        }


__all__ = ["CumulativePnl", "Evaluation", "TradingBucket"]
