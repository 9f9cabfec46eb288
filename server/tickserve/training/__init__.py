"""Training: walk-forward folds of a tick file -> a model version in the repository.

`train.py` (the orchestration: features, labels, folds, the model written), `walk_forward.py`
(the fold spans), `folds.py` (fitting and scoring one fold), `scores.py` (a span's scores: the
model, the baselines, the round trips), `report.py` (the per-fold report kept in the
manifest), `label_choice.py` (the horizon chosen from the data).
"""

from .train import next_version, train_model

__all__ = ["next_version", "train_model"]
