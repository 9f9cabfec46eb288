"""Probability calibration: a shared stage applied after any adapter.

Temperature scaling (Guo et al., 2017): p' = softmax(log(p) / T), one scalar T
fitted on the validation split at training time by minimising log loss.
Chosen over per-class isotonic regression because it never changes the most
probable class (so accuracy and the served action are untouched), has one
parameter (no overfitting on a small validation split), keeps the three
probabilities summing to 1 without renormalisation, and costs a few float
operations per tick. T > 1 softens an over-confident model, T < 1 sharpens.
"""

from __future__ import annotations

from math import exp, log

import numpy as np

from .. import _temperature
from ..evaluation.metrics import CalibrationMetrics

_EPS = 1e-15
_LOG_T_RANGE = (log(0.05), log(20.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T) per row. One row is done in plain floats (numpy's per-call overhead
    is most of the cost there), many rows by the compiled loop of `_temperature.c`, with the
    same operations in the same order, so a row gets the same bits either way: log and exp are
    libm's in both (numpy's SIMD log/exp may differ from libm in the last bit on some CPUs),
    the sum runs left to right in both."""
    if temperature == 1.0:
        return probs
    probs = np.ascontiguousarray(probs, dtype=np.float64)  # the float64 contract: _EPS is one number in both
    if len(probs) == 1:
        return np.array([_temperature_row(probs[0].tolist(), temperature)])
    out = np.empty_like(probs)
    _temperature.apply(probs, out, probs.shape[1], float(temperature), _EPS)
    return out


def _temperature_row(p: list[float], temperature: float) -> list[float]:
    z = [log(_EPS if v < _EPS else v) / temperature for v in p]  # as np.maximum: NaN stays NaN
    top = max(z)
    e = [exp(v - top) for v in z]
    total = e[0]
    for v in e[1:]:
        total += v
    return [v / total for v in e]


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0)).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray, *, iterations: int = 60) -> float:
    """The T in [0.05, 20] minimising validation log loss (golden-section search on log T;
    log loss is unimodal in log T for this family)."""
    lo, hi = _LOG_T_RANGE
    golden = (5**0.5 - 1) / 2
    a = hi - golden * (hi - lo)
    b = lo + golden * (hi - lo)
    fa = log_loss(apply_temperature(probs, exp(a)), y)
    fb = log_loss(apply_temperature(probs, exp(b)), y)
    for _ in range(iterations):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = log_loss(apply_temperature(probs, exp(a)), y)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = log_loss(apply_temperature(probs, exp(b)), y)
    return float(exp((lo + hi) / 2))


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of the squared distance between the probabilities and the one-hot truth."""
    return _scores(probs, y).brier


def expected_calibration_error(probs: np.ndarray, y: np.ndarray) -> float:
    """Top-label ECE: |accuracy - confidence| per confidence bin (10), weighted by bin size."""
    return _scores(probs, y).ece


def _scores(probs: np.ndarray, y: np.ndarray) -> CalibrationMetrics:
    scores = CalibrationMetrics()
    scores.add(np.asarray(y), np.asarray(probs, dtype=np.float64))
    return scores


class Calibrator:
    """The calibration recorded in a manifest, ready to apply."""

    def __init__(self, spec: dict) -> None:
        method = spec.get("method", "none") if spec else "none"
        if method == "none":
            self.temperature = 1.0
        elif method == "temperature":
            self.temperature = float(spec["temperature"])
            lo, hi = (exp(bound) for bound in _LOG_T_RANGE)
            if not lo * 0.999 <= self.temperature <= hi * 1.001:  # the range fit_temperature searches
                raise ValueError(f"calibration temperature must be in [{lo:g}, {hi:g}], got {self.temperature!r}")
        else:
            raise ValueError(f"unknown calibration method {method!r}")

    @property
    def identity(self) -> bool:
        return self.temperature == 1.0

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return apply_temperature(probs, self.temperature)
