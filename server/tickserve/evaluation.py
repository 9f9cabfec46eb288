"""Incremental evaluation: labels from the ticks themselves, O(instruments x horizon) memory.

Each scored tick waits in its instrument's queue until the tick `horizon`
ticks later arrives; then its label is known and it is counted. Ticks still
waiting when the stream ends have no label (same rule as training).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .labels import CLASSES, label_move
from .metrics import CalibrationMetrics, ClassificationMetrics
from .repository import LoadedModel
from .signals import SignalValues

_CLASS_ID = {name: i for i, name in enumerate(CLASSES)}


@dataclass
class Evaluation:
    model: LoadedModel
    ticks: int = 0
    metrics: ClassificationMetrics = field(default_factory=ClassificationMetrics)
    actions: Counter = field(default_factory=Counter)
    strengths: Counter = field(default_factory=Counter)
    risks: Counter = field(default_factory=Counter)
    calibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    uncalibrated: CalibrationMetrics = field(default_factory=CalibrationMetrics)
    _pending: dict = field(default_factory=dict)

    def add(self, instrument: str, mid: float, signal: SignalValues, raw: tuple[float, float, float]) -> None:
        self.ticks += 1
        self.actions[signal.action] += 1
        self.strengths[signal.strength] += 1
        self.risks[signal.risk] += 1
        labels = self.model.manifest.label_config
        queue = self._pending.get(instrument)
        if queue is None:
            queue = self._pending[instrument] = deque()
        queue.append((mid, _CLASS_ID[signal.action], (signal.p_sell, signal.p_hold, signal.p_buy), raw))
        if len(queue) > labels.horizon_ticks:
            then_mid, predicted, probs, then_raw = queue.popleft()
            tick_size = self.model.manifest.feature_config.tick_size(instrument)
            true = label_move((mid - then_mid) / tick_size, labels.threshold_ticks)
            self.metrics.add(true, predicted, probs)
            self.calibrated.add(true, probs)
            self.uncalibrated.add(true, then_raw)

    @property
    def labeled(self) -> int:
        return self.metrics.count

    def report(self) -> dict:
        m = self.metrics
        majority, baseline = m.majority_baseline()
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
        }
