"""Progress as a user sees it: a bar with ETA on a terminal, a few lines in a log, and training
that says where early stopping ended instead of claiming every planned round."""

from __future__ import annotations

import io

import numpy as np

from tickserve.cli.progress import ProgressBar
from tickserve.plugin import TrainingData


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_shows_rate_and_eta_and_a_new_total_starts_a_new_bar():
    out = Terminal()
    bar = ProgressBar("boosting", stream=out)
    for done in range(1, 51):
        bar(done, 50, "fold 1/3 valid multi_logloss 0.9")
    for done in range(1, 21):
        bar(done, 20, "fold 2/3")
    text = out.getvalue()
    assert "boosting: 100%" in text and "50/50 [" in text and "20/20 [" in text
    assert "<00:00" in text  # elapsed<remaining: the ETA
    assert "fold 1/3 valid multi_logloss 0.9" in text


def test_in_a_log_one_line_per_tenth():
    out = io.StringIO()
    bar = ProgressBar("evaluating", stream=out)
    for done in range(0, 1001, 10):
        bar(done, 1000, "accuracy 0.5")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1] == "evaluating 1000/1000 accuracy 0.5"


def _data(rng, n=3000) -> TrainingData:
    x = rng.normal(size=(n, 4))
    y = rng.integers(0, 3, size=n)  # noise: validation loss stops improving at once
    half = n * 2 // 3
    return TrainingData(x[:half], y[:half], x[half:], y[half:], ["a", "b", "c", "d"], ["SELL", "HOLD", "BUY"])


def test_training_that_stops_early_says_where_not_every_planned_round(plugins, tmp_path):
    rng = np.random.default_rng(0)
    for name, params in (
        ("lightgbm", {"num_boost_round": 300, "early_stopping_rounds": 5}),
        ("xgboost", {"num_boost_round": 300, "early_stopping_rounds": 5, "nthread": 1}),
    ):
        calls = []
        (tmp_path / name).mkdir()
        plugins.adapters[name].train(_data(rng), params, tmp_path / name, lambda *a: calls.append(a))
        done, total, message = calls[-1]
        assert done == total < 300, (name, calls[-1])
        assert message.startswith(f"stopped early at round {done} of 300, best iteration"), (name, message)
