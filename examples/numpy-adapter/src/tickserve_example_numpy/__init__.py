"""Example adapter: softmax(standardise(x) @ W + b), weights in a JSON file.

Small on purpose: it shows the whole contract (load, predict_proba,
feature_importance, metadata, train) and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tickserve.plugin import ModelAdapter, Progress, TrainingData, TrainingResult, hookimpl

MODEL_FILE = "weights.json"


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _linear(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """x @ weights, each row's sums taken over that row alone: `@` hands the batch to BLAS, whose
    kernel (and the order it adds in) depends on the batch's shape, so a row alone and the same
    row in a batch differed in the last bits (`tickserve check-plugin` caught it). Summing the
    products along the contiguous last axis gives every row the same additions in any batch."""
    return (x[:, None, :] * weights.T[None, :, :]).sum(axis=2)


class NumpyLogisticAdapter(ModelAdapter):
    name = "numpy-logistic"

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray, bias: np.ndarray, names: list[str]):
        self.mean, self.scale, self.weights, self.bias, self.names = mean, scale, weights, bias, names

    @classmethod
    def load(cls, model_dir: Path, manifest) -> NumpyLogisticAdapter:
        d = json.loads((model_dir / manifest.model_file).read_text())
        weights = np.array(d["weights"], dtype=np.float64)
        if weights.shape != (len(manifest.feature_names), len(manifest.classes)):
            raise ValueError(f"weights have shape {weights.shape}, expected ({len(manifest.feature_names)}, 3)")
        return cls(
            np.array(d["mean"]), np.array(d["scale"]), weights, np.array(d["bias"]), list(manifest.feature_names)
        )

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return _softmax(_linear((features - self.mean) / self.scale, self.weights) + self.bias)

    def feature_importance(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, np.abs(self.weights).sum(axis=1))}

    def metadata(self) -> dict[str, str]:
        return {"numpy_version": np.__version__}

    @classmethod
    def train(cls, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress) -> TrainingResult:
        steps = int(params.get("steps", 300))
        rate = float(params.get("learning_rate", 0.5))
        l2 = float(params.get("l2", 1e-3))
        mean = data.x_train.mean(axis=0)
        scale = data.x_train.std(axis=0)
        scale[scale == 0] = 1.0
        x = (data.x_train - mean) / scale
        onehot = np.eye(len(data.classes))[data.y_train]
        w = np.zeros((x.shape[1], len(data.classes)))
        b = np.zeros(len(data.classes))
        for step in range(steps):  # full-batch gradient descent on the log loss
            grad = _softmax(x @ w + b) - onehot
            w -= rate * (x.T @ grad / len(x) + l2 * w)
            b -= rate * grad.mean(axis=0)
            progress(step + 1, steps, "")
        weights = {"mean": mean.tolist(), "scale": scale.tolist(), "weights": w.tolist(), "bias": b.tolist()}
        (out_dir / MODEL_FILE).write_text(json.dumps(weights))
        return TrainingResult(MODEL_FILE, {"steps": steps, "learning_rate": rate, "l2": l2})


@hookimpl
def tickserve_adapters() -> list[type[ModelAdapter]]:
    return [NumpyLogisticAdapter]
