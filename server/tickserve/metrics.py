"""Classification metrics, accumulated incrementally so Evaluate can stream any number of ticks."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import log

import numpy as np

from .labels import CLASSES

_EPS = 1e-15


@dataclass
class ClassificationMetrics:
    n_classes: int = len(CLASSES)
    confusion: np.ndarray = field(default=None)  # rows = true class, columns = predicted
    log_loss_sum: float = 0.0

    def __post_init__(self) -> None:
        if self.confusion is None:
            self.confusion = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def add(self, true: int, predicted: int, probs) -> None:
        self.confusion[true, predicted] += 1
        self.log_loss_sum -= log(min(max(probs[true], _EPS), 1.0))

    def add_class(self, true: int, predicted: int) -> None:
        """A prediction without probabilities (a baseline): counts in the confusion matrix only."""
        self.confusion[true, predicted] += 1

    def add_batch(self, true: np.ndarray, predicted: np.ndarray, probs: np.ndarray | None = None) -> None:
        """`probs` None: classes only (a baseline), no log loss."""
        if probs is None:
            np.add.at(self.confusion, (true, predicted), 1)
            return
        np.add.at(self.confusion, (true, predicted), 1)
        p = np.clip(probs[np.arange(len(true)), true], _EPS, 1.0)
        self.log_loss_sum -= float(np.log(p).sum())

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        n = self.count
        return float(np.trace(self.confusion)) / n if n else 0.0

    @property
    def log_loss(self) -> float:
        n = self.count
        return self.log_loss_sum / n if n else 0.0

    def per_class(self) -> list[dict]:
        out = []
        for k in range(self.n_classes):
            tp = float(self.confusion[k, k])
            predicted = float(self.confusion[:, k].sum())
            support = int(self.confusion[k, :].sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out.append({"label": CLASSES[k], "precision": precision, "recall": recall, "f1": f1, "support": support})
        return out

    @property
    def macro_f1(self) -> float:
        return float(np.mean([c["f1"] for c in self.per_class()]))

    def majority_baseline(self) -> tuple[str, float]:
        """The most frequent true class and the accuracy of always predicting it."""
        support = self.confusion.sum(axis=1)
        k = int(support.argmax())
        n = self.count
        return CLASSES[k], (float(support[k]) / n if n else 0.0)

    def majority_macro_f1(self) -> float:
        """Macro-F1 of always predicting the most frequent true class."""
        support = self.confusion.sum(axis=1)
        n = self.count
        if not n:
            return 0.0
        share = float(support.max()) / n  # precision of the majority class; its recall is 1
        return 2 * share / (share + 1) / self.n_classes

    def summary(self) -> dict[str, float]:
        cls, base = self.majority_baseline()
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "log_loss": self.log_loss,
            "majority_baseline_accuracy": base,
            "count": float(self.count),
        }


class CalibrationMetrics:
    """Brier score and top-label expected calibration error (10 bins), accumulated row by row."""

    BINS = 10

    def __init__(self) -> None:
        self.count = 0
        self.brier_sum = 0.0
        self.bin_count = [0] * self.BINS
        self.bin_confidence = [0.0] * self.BINS
        self.bin_correct = [0] * self.BINS

    def add(self, true: int, probs) -> None:
        self.count += 1
        self.brier_sum += sum((p - (1.0 if k == true else 0.0)) ** 2 for k, p in enumerate(probs))
        confidence = max(probs)
        k = min(int(confidence * self.BINS), self.BINS - 1)
        self.bin_count[k] += 1
        self.bin_confidence[k] += confidence
        self.bin_correct[k] += int(probs.index(confidence) == true)

    @property
    def brier(self) -> float:
        return self.brier_sum / self.count if self.count else 0.0

    @property
    def ece(self) -> float:
        if not self.count:
            return 0.0
        return sum(
            abs(self.bin_correct[k] - self.bin_confidence[k]) / self.count
            for k in range(self.BINS)
            if self.bin_count[k]
        )
