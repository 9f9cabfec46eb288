"""Naive predictors every model is compared with, on the same labeled ticks.

- majority: always the most frequent true class of the evaluated span (chosen
  in hindsight, so it is an upper bound for any constant predictor);
- last_move: the label the past tick would have had with this tick as its label
  tick, in the model's own label mode (`labels.past_index`: the h-th earlier
  tick of the instrument, or the last one at or before t - H with a time
  horizon): momentum in the units of the label; HOLD when the instrument has
  no past tick yet;
- imbalance: the sign of the level-1 size imbalance: BUY if bid_size[0] >
  ask_size[0], SELL if bid_size[0] < ask_size[0], HOLD if equal (no threshold).

Each is scored with accuracy and macro-F1 exactly like a model. The batch
functions here serve training; `evaluation.Evaluation` computes the same
predictions message by message with the same functions.
"""

from __future__ import annotations

import numpy as np

from ..core.ticks import TickFrame
from ..features.config import FeatureConfig
from .labels import BUY, HOLD, SELL, LabelConfig, labels_between, past_index, tick_sizes
from .metrics import ClassificationMetrics

BASELINES = ("majority", "last_move", "imbalance")
DESCRIPTIONS = {
    "majority": "always the most frequent true class of this span",
    "last_move": "the label of the previous horizon (past tick -> this tick), in the model's label mode; HOLD when none",
    "imbalance": "sign of level-1 size imbalance: BUY if bid size > ask size, SELL if <, HOLD if equal",
}


def imbalance_classes(bid_size: np.ndarray, ask_size: np.ndarray) -> np.ndarray:
    """The imbalance baseline's class per row, from the sizes at the best bid and ask."""
    return np.where(bid_size > ask_size, BUY, np.where(bid_size < ask_size, SELL, HOLD)).astype(np.int64)


def baseline_predictions(frame: TickFrame, labels: LabelConfig, features: FeatureConfig) -> dict[str, np.ndarray]:
    """Per row, the last_move and imbalance baselines' classes."""
    n = len(frame)
    past = past_index(frame, labels)
    last_move = np.full(n, HOLD, dtype=np.int64)
    ok = np.flatnonzero(past >= 0)
    if len(ok):
        last_move[ok] = labels_between(frame, past[ok], ok, labels, tick_sizes(frame, features))
    return {"last_move": last_move, "imbalance": imbalance_classes(frame.bid_size[:, 0], frame.ask_size[:, 0])}


def score_baselines(y: np.ndarray, predictions: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{name: {"accuracy", "macro_f1"}} for the majority class and each prediction, on labels y (all labeled)."""
    out = {}
    truth = ClassificationMetrics()
    truth.add_batch(y, y)
    out["majority"] = {"accuracy": truth.majority_baseline()[1], "macro_f1": truth.majority_macro_f1()}
    for name, predicted in predictions.items():
        m = ClassificationMetrics()
        m.add_batch(y, predicted)
        out[name] = {"accuracy": m.accuracy, "macro_f1": m.macro_f1}
    return out
