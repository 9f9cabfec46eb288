"""Walk-forward folds: expanding training windows, purged, in time order, never shuffled.

The ticks are cut by time: the last `folds x test_fraction` of them form
`folds` test blocks of `test_fraction` each; fold k trains on every tick
before its test block (its last `valid_fraction` by time, the validation span,
stops the boosting and fits the calibration and the action weight) and is
scored on its block. With the defaults (3 folds of 20%) the first fold trains
on the first 40% of the ticks.

The last fold's model is the one shipped: it was trained on everything before
the test span, and the test span (the last block) informed no choice. The
earlier folds' models are thrown away; their scores show whether the approach
holds up across time, not only on the last span.

Purging: a training row is kept only if its label tick comes before the
validation span starts, and a validation row only if its label tick comes
before the test block starts, so no label looks into a later span. Test rows
are every labeled tick inside the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.ticks import TickFrame

_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class FoldSpans:
    """The time boundaries of one fold (ns): train [train_start, valid_start), validation
    [valid_start, test_start), test [test_start, test_end)."""

    fold: int  # 1-based
    train_start_ns: int
    valid_start_ns: int
    test_start_ns: int
    test_end_ns: int  # exclusive; the last fold's ends after the last tick

    def to_dict(self) -> dict:
        return {
            "fold": self.fold,
            "train_start_ns": self.train_start_ns,
            "valid_start_ns": self.valid_start_ns,
            "test_start_ns": self.test_start_ns,
            "test_end_ns": self.test_end_ns,
        }


@dataclass(frozen=True)
class FoldRows:
    spans: FoldSpans
    train: np.ndarray  # row indices
    valid: np.ndarray
    test: np.ndarray


def fold_spans(
    timestamps: np.ndarray, folds: int = 3, test_fraction: float = 0.2, valid_fraction: float = 0.15
) -> list[FoldSpans]:
    """The boundaries of the walk-forward folds of the module doc."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if not 0 < test_fraction or not folds * test_fraction < 1:
        raise ValueError(f"need 0 < test_fraction and folds x test_fraction < 1, got {folds} x {test_fraction}")
    if not 0 < valid_fraction < 1:
        raise ValueError(f"need 0 < valid_fraction < 1, got {valid_fraction}")
    ts = np.sort(np.asarray(timestamps))
    n = len(ts)
    if n == 0:
        raise ValueError("no ticks")
    out = []
    for k in range(1, folds + 1):
        start = int(n * (1 - (folds - k + 1) * test_fraction))
        end = int(n * (1 - (folds - k) * test_fraction))
        valid = int(start * (1 - valid_fraction))
        out.append(
            FoldSpans(
                fold=k,
                train_start_ns=int(ts[0]),
                valid_start_ns=int(ts[min(valid, n - 1)]),
                test_start_ns=int(ts[min(start, n - 1)]),
                test_end_ns=int(ts[end]) if end < n else _NEVER,
            )
        )
    return out


def fold_rows(frame: TickFrame, future: np.ndarray, spans: FoldSpans) -> FoldRows:
    """The purged row indices of one fold (labeled rows only)."""
    ts = frame.timestamp_ns
    labeled = future >= 0
    label_ts = np.where(labeled, ts[np.maximum(future, 0)], _NEVER)
    train = np.flatnonzero(labeled & (label_ts < spans.valid_start_ns))
    valid = np.flatnonzero(labeled & (ts >= spans.valid_start_ns) & (label_ts < spans.test_start_ns))
    test = np.flatnonzero(labeled & (ts >= spans.test_start_ns) & (ts < spans.test_end_ns))
    return FoldRows(spans, train, valid, test)
