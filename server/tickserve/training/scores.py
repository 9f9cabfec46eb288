"""Scoring a model on a span of labeled ticks, as the training report and the scoreboard show it.

For one span: the model's accuracy, macro-F1, log loss and calibration; each
baseline's accuracy and macro-F1 on the same rows; and what one account
holding at most one position per instrument would have earned acting on the
model's STRONG signals, on all its BUY/SELL signals, and on each baseline's
BUY/SELL predictions (`trading.round_trips`, after the spread and the label's
cost). Also the decision rule's two fitted parts, from the training rows
and the validation span only: each class's mean mid move, and the action
weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..core.calibration import brier_score, expected_calibration_error
from ..core.signals import SignalRules, decide_many
from ..core.ticks import TickFrame
from ..evaluation.baselines import score_baselines
from ..evaluation.labels import BUY, CLASSES, HOLD, SELL, mid_prices
from ..evaluation.metrics import ClassificationMetrics
from ..evaluation.trading import round_trips

ACTION_WEIGHTS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
BOOKS = ("strong", "all", "last_move", "imbalance")


@dataclass
class SpanScores:
    rows: int
    accuracy: float
    macro_f1: float
    log_loss: float
    brier: float
    ece: float
    label_shares: dict[str, float]
    action_shares: dict[str, float]
    baselines: dict[str, dict[str, float]]  # name -> {"accuracy", "macro_f1"}
    # one position per instrument: "strong", "all" (the model's signals), "last_move", "imbalance"
    trading: dict[str, dict] = field(default_factory=dict)

    def best_baseline(self) -> tuple[str, float]:
        name = max(self.baselines, key=lambda b: self.baselines[b]["macro_f1"])
        return name, self.baselines[name]["macro_f1"]

    @property
    def margin(self) -> float:
        return self.macro_f1 - self.best_baseline()[1]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "log_loss": self.log_loss,
            "brier": self.brier,
            "ece": self.ece,
            "label_shares": self.label_shares,
            "action_shares": self.action_shares,
            "baselines": self.baselines,
            "trading": self.trading,
        }

    @staticmethod
    def from_dict(d: dict) -> SpanScores:
        return SpanScores(**{k: d[k] for k in SpanScores.__dataclass_fields__})


def expected_moves(
    frame: TickFrame, rows: np.ndarray, y: np.ndarray, future: np.ndarray, sizes: np.ndarray
) -> tuple[float, float, float]:
    """The mean mid move to the label tick, in ticks, of the rows of each true class (SELL, HOLD, BUY)."""
    mid = mid_prices(frame)
    move = (mid[future[rows]] - mid[rows]) / sizes[rows]
    out = []
    for c in (SELL, HOLD, BUY):
        members = y[rows] == c
        out.append(float(move[members].mean()) if members.any() else 0.0)
    return out[0], out[1], out[2]


def tune_action_weight(probs: np.ndarray, y: np.ndarray, spread_ticks: np.ndarray, rules: SignalRules) -> float:
    """The weight of ACTION_WEIGHTS (smallest on ties) whose decisions, cost gate included, have the
    best macro-F1 on these rows (the validation span)."""
    best, best_f1 = 1.0, -1.0
    for w in ACTION_WEIGHTS:
        action = decide_many(probs, spread_ticks, replace(rules, action_weight=w)).action
        m = ClassificationMetrics()
        m.add_batch(y, action)
        if m.macro_f1 > best_f1 + 1e-12:
            best, best_f1 = w, m.macro_f1
    return best


def shares(classes: np.ndarray) -> dict[str, float]:
    counts = np.bincount(classes, minlength=len(CLASSES)).astype(float)
    total = counts.sum()
    return {name: float(counts[k] / total) if total else 0.0 for k, name in enumerate(CLASSES)}


def score_span(
    frame: TickFrame,
    rows: np.ndarray,
    y: np.ndarray,
    future: np.ndarray,
    sizes: np.ndarray,
    probs: np.ndarray,
    spread_ticks: np.ndarray,
    rules: SignalRules,
    baselines: dict[str, np.ndarray],
    cost_ticks: float = 0.0,
    fee_bps: float = 0.0,
) -> SpanScores:
    """The span's scores (module doc). `probs` and `spread_ticks` are per row of `rows`; `y`,
    `future`, `sizes` and `baselines` per row of the frame."""
    truth = y[rows]
    signals = decide_many(probs, spread_ticks, rules)
    m = ClassificationMetrics()
    m.add_batch(truth, signals.action, probs)
    direction = np.where(signals.action == BUY, 1, np.where(signals.action == SELL, -1, 0))
    strong = np.where(signals.strength == 2, direction, 0)
    trading = {}
    for book, d in (("strong", strong), ("all", direction)) + tuple(
        (name, np.where(baselines[name][rows] == BUY, 1, np.where(baselines[name][rows] == SELL, -1, 0)))
        for name in ("last_move", "imbalance")
    ):
        trading[book] = round_trips(frame, rows, d, future, sizes, cost_ticks=cost_ticks, fee_bps=fee_bps).to_dict()
    return SpanScores(
        rows=int(len(rows)),
        accuracy=m.accuracy,
        macro_f1=m.macro_f1,
        log_loss=m.log_loss,
        brier=brier_score(probs, truth),
        ece=expected_calibration_error(probs, truth),
        label_shares=shares(truth),
        action_shares=shares(signals.action),
        baselines=score_baselines(truth, {name: pred[rows] for name, pred in baselines.items()}),
        trading=trading,
    )


__all__ = [
    "ACTION_WEIGHTS",
    "BOOKS",
    "HOLD",
    "SpanScores",
    "expected_moves",
    "score_span",
    "shares",
    "tune_action_weight",
]
