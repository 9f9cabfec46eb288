"""Classification metrics, accumulated incrementally so Evaluate can stream any number of ticks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .labels import CLASSES
from .trading import group_totals, running_total

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
        self.add_batch(np.array([true]), np.array([predicted]), np.asarray(probs, dtype=np.float64)[None, :])

    def add_batch(self, true: np.ndarray, predicted: np.ndarray, probs: np.ndarray | None = None) -> None:
        """`probs` None: classes only (a baseline), no log loss. The log loss is summed row after
        row, so the total does not depend on how the rows were split into batches."""
        k = self.n_classes
        self.confusion += np.bincount(true * k + predicted, minlength=k * k).reshape(k, k)
        if probs is None or not len(true):
            return
        p = np.clip(probs[np.arange(len(true)), true], _EPS, 1.0)
        self.log_loss_sum = float(running_total(self.log_loss_sum, -np.log(p))[-1])

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
        self.bin_count = np.zeros(self.BINS, dtype=np.int64)
        self.bin_confidence = np.zeros(self.BINS)
        self.bin_correct = np.zeros(self.BINS, dtype=np.int64)

    def add(self, true: np.ndarray, probs: np.ndarray) -> None:
        """Rows of (n, 3) probabilities with their true classes; sums run row after row
        (`running_total`, `group_totals`), so they do not depend on how rows are split."""
        n = len(true)
        if not n:
            return
        self.count += n
        d = probs - (np.arange(probs.shape[1]) == true[:, None])
        squares = d * d
        self.brier_sum = float(running_total(self.brier_sum, squares[:, 0] + squares[:, 1] + squares[:, 2])[-1])
        confidence = probs.max(axis=1)
        bins = np.minimum((confidence * self.BINS).astype(np.int64), self.BINS - 1)
        self.bin_count += np.bincount(bins, minlength=self.BINS)
        self.bin_confidence = group_totals(self.bin_confidence, bins, confidence)
        self.bin_correct += np.bincount(bins, weights=probs.argmax(axis=1) == true, minlength=self.BINS).astype(
            np.int64
        )

    @property
    def brier(self) -> float:
        return self.brier_sum / self.count if self.count else 0.0

    @property
    def ece(self) -> float:
        if not self.count:
            return 0.0
        correct, confidence, count = self.bin_correct.tolist(), self.bin_confidence.tolist(), self.bin_count.tolist()
        return sum(abs(correct[k] - confidence[k]) / self.count for k in range(self.BINS) if count[k])
