"""Example adapter: scikit-learn trains, numpy serves, an .npz stores.

Train: StandardScaler + LogisticRegression (multinomial) from scikit-learn. Store: the fitted
arrays (mean, scale, coef, intercept) in `model.npz`, read back with `allow_pickle=False`, so
`load` can never run code hidden in a model file; pickle and joblib would. Serve: the same
arithmetic in numpy, written so a row's answer is the same bits alone or in any batch (the
server batches rows of different streams together), and with no scikit-learn import at all.
`tickserve check-plugin sklearn-logistic` checks all of that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tickserve.plugin import ModelAdapter, Progress, TrainingData, TrainingResult, hookimpl

MODEL_FILE = "model.npz"
_ARRAYS = ("mean", "scale", "coef", "intercept")


class SklearnLogisticAdapter(ModelAdapter):
    name = "sklearn-logistic"
    native_threads = 1  # the default, said out loud: numpy's BLAS and any OpenMP run one thread a call

    def __init__(self, arrays: dict[str, np.ndarray], names: list[str], sklearn_version: str) -> None:
        self.mean, self.scale = arrays["mean"], arrays["scale"]
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]  # (3, n_features), (3,)
        self.names, self.sklearn_version = names, sklearn_version

    @classmethod
    def load(cls, model_dir: Path, manifest) -> SklearnLogisticAdapter:
        with np.load(model_dir / manifest.model_file, allow_pickle=False) as stored:
            arrays = {k: np.asarray(stored[k], dtype=np.float64) for k in _ARRAYS}
            version = str(stored["sklearn_version"])
        n, k = len(manifest.feature_names), len(manifest.classes)
        for key, shape in (("mean", (n,)), ("scale", (n,)), ("coef", (k, n)), ("intercept", (k,))):
            if arrays[key].shape != shape:
                raise ValueError(f"{key} has shape {arrays[key].shape}, expected {shape}")
        return cls(arrays, list(manifest.feature_names), version)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = (features - self.mean) / self.scale
        # Not `x @ self.coef.T`: BLAS picks its kernel by the batch's shape, so a row alone and in a
        # batch can differ in the last bits. Products summed along the contiguous last axis give
        # every row the same additions in any batch.
        z = (x[:, None, :] * self.coef[None, :, :]).sum(axis=2) + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def feature_importance(self) -> dict[str, float]:
        # |coefficient| on standardised features, summed over the classes
        return {n: float(v) for n, v in zip(self.names, np.abs(self.coef).sum(axis=0))}

    def metadata(self) -> dict[str, str]:
        return {"trained_with": f"scikit-learn {self.sklearn_version}", "numpy_version": np.__version__}

    @classmethod
    def train(cls, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress) -> TrainingResult:
        import sklearn  # training only: serving never imports it
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        c = float(params.get("C", 1.0))
        max_iter = int(params.get("max_iter", 300))
        scaler = StandardScaler().fit(data.x_train)
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # a constant feature: divide by 1
        model = LogisticRegression(C=c, max_iter=max_iter).fit((data.x_train - scaler.mean_) / scale, data.y_train)
        if list(model.classes_) != list(range(len(data.classes))):
            raise ValueError(f"the training labels hold classes {list(model.classes_)}, not all of {data.classes}")
        progress(1, 1, "fitted")
        np.savez(
            out_dir / MODEL_FILE,
            mean=scaler.mean_,
            scale=scale,
            coef=model.coef_,
            intercept=model.intercept_,
            sklearn_version=np.array(sklearn.__version__),  # a str array: no pickle needed
        )
        accuracy = float(model.score((data.x_valid - scaler.mean_) / scale, data.y_valid))
        return TrainingResult(MODEL_FILE, {"C": c, "max_iter": max_iter}, {"valid_accuracy": accuracy})


@hookimpl
def tickserve_adapters() -> list[type[ModelAdapter]]:
    return [SklearnLogisticAdapter]
