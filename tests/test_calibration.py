"""Temperature scaling, Brier score and ECE: fitted at training time, applied after any adapter."""

from __future__ import annotations

import numpy as np
import pytest

from tickserve.core.calibration import (
    Calibrator,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    log_loss,
)
from tickserve.evaluation.metrics import CalibrationMetrics


def _overconfident(n: int, true_temperature: float, seed: int = 0):
    """Labels drawn from softmax(z); the model reports softmax(z * T): over-confident by T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (n, 3))
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p_true])
    reported = np.exp(z * true_temperature)
    return reported / reported.sum(axis=1, keepdims=True), y, p_true


def test_fit_recovers_the_distortion_and_lowers_log_loss():
    probs, y, _ = _overconfident(20_000, true_temperature=2.5)
    t = fit_temperature(probs, y)
    assert t == pytest.approx(2.5, rel=0.08)
    assert log_loss(apply_temperature(probs, t), y) < log_loss(probs, y) - 0.05
    assert brier_score(apply_temperature(probs, t), y) < brier_score(probs, y)
    assert expected_calibration_error(apply_temperature(probs, t), y) < expected_calibration_error(probs, y) / 2


def test_temperature_never_changes_the_predicted_class_and_keeps_sums():
    probs, _, _ = _overconfident(5_000, 3.0, seed=1)
    for t in (0.3, 1.7, 8.0):
        out = apply_temperature(probs, t)
        assert np.array_equal(out.argmax(axis=1), probs.argmax(axis=1))
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert apply_temperature(probs, 1.0) is probs


def test_brier_and_ece_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    y = np.array([0, 1, 1])
    assert brier_score(probs, y) == pytest.approx(
        ((0.09 + 0.04 + 0.01) + (0.01 + 0.49 + 0.36) + (0.0625 + 0.25 + 0.0625)) / 3
    )
    # bins: 0.7 -> bin 7 correct; 0.6 -> bin 6 wrong; 0.5 -> bin 5 correct
    assert expected_calibration_error(probs, y) == pytest.approx((abs(1 - 0.7) + abs(0 - 0.6) + abs(1 - 0.5)) / 3)


def test_incremental_metrics_do_not_depend_on_how_the_rows_are_split():
    """Evaluate adds each message's rows as they come: any split gives the same bits as one batch."""
    probs, y, _ = _overconfident(3_000, 2.0, seed=2)
    m = CalibrationMetrics()
    start = 0
    for size in np.random.default_rng(3).integers(1, 200, 100):
        m.add(y[start : start + size], probs[start : start + size])
        start += size
    m.add(y[start:], probs[start:])
    assert m.count == len(y)
    assert m.brier == brier_score(probs, y)
    assert m.ece == expected_calibration_error(probs, y)
    onehot = np.eye(3)[y]
    assert m.brier == pytest.approx(((probs - onehot) ** 2).sum(axis=1).mean(), rel=1e-12)


def test_calibrator_from_manifest_spec():
    assert Calibrator({}).identity
    assert Calibrator({"method": "temperature", "temperature": 2.0}).temperature == 2.0
    for bad in ({"method": "isotonic"}, {"method": "temperature", "temperature": 0}, {"method": "temperature"}):
        with pytest.raises((ValueError, KeyError)):
            Calibrator(bad)


def test_temperature_of_one_row_and_of_many_rows_are_the_same_bits():
    """A stream scales one row in Python floats and a batch in the compiled loop: the same bits,
    tiny and zero probabilities included, and the softmax of log(p) / T to rounding."""
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([0.3, 1.0, 0.3], 2_000)
    probs[:5] = [[0.0, 1.0, 0.0], [1e-300, 0.5, 0.5], [1e-16, 1 - 2e-16, 1e-16], [1 / 3, 1 / 3, 1 / 3], [0.2, 0.3, 0.5]]
    for t in (0.05, 0.7, 1.3, 20.0):
        many = apply_temperature(probs, t)
        ones = np.vstack([apply_temperature(probs[i : i + 1], t) for i in range(len(probs))])
        assert np.array_equal(many, ones), t
        z = np.log(np.maximum(probs, 1e-15)) / t
        expected = np.exp(z - z.max(axis=1)[:, None])
        assert np.allclose(many, expected / expected.sum(axis=1)[:, None], rtol=1e-13, atol=0), t
