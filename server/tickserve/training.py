"""Training: ticks -> batch features and labels -> a time-ordered split -> an adapter -> a model directory.

The split is by time, never shuffled, and purged: a training row is kept only
if the tick that defines its label (its label tick, a horizon in ticks or in
time later) comes before the validation span starts, and likewise for
validation against the test span, so no label looks into a later split.

The manifest's metrics hold, for the validation and test spans, the model's
accuracy, macro-F1, log loss and calibration, and the same for the baselines
of `baselines.py` on the same rows (`{span}_baseline_{name}_accuracy` and
`_macro_f1`, name in majority, last_move, imbalance).

Walk-forward (`folds=K`): the ticks are cut by time into K + 1 equal blocks;
fold k (1..K) trains on blocks 0..k-1 (its last `valid_fraction` by time for
early stopping and calibration, purged like the main split) and tests on block
k. Only time order is used, never shuffling. Each fold's model is thrown away;
its test metrics and baselines go to the manifest as `wf{k}_...`, with their
means as `wf_mean_...`. The model written is the one of the main split.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .calibration import Calibrator, brier_score, expected_calibration_error, fit_temperature
from .features import DEFAULT_MODEL_FEATURES, FEATURE_INDEX, FEATURE_STAGE_VERSION, FeatureConfig, batch_features
from .features.spec import missing_features
from .baselines import baseline_predictions, score_baselines
from .labels import CLASSES, NO_LABEL, LabelConfig, make_labels
from .manifest import ModelManifest, check_name
from .metrics import ClassificationMetrics
from .plugin import ModelAdapter, Progress, TrainingData
from .repository import version_key
from .signals import SignalRules, predicted_class
from .ticks import TickFrame


@dataclass
class Split:
    train: np.ndarray  # row indices
    valid: np.ndarray
    test: np.ndarray


def span_starts(timestamps: np.ndarray, valid_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(first timestamp of the validation span, of the test span): the time_split boundaries."""
    if not (0 < valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError("need 0 < valid_fraction, 0 <= test_fraction, valid + test < 1")
    sorted_ts = np.sort(timestamps)
    n = len(sorted_ts)
    t_valid = sorted_ts[int(n * (1 - valid_fraction - test_fraction))]
    t_test = sorted_ts[min(n - 1, int(n * (1 - test_fraction)))] if test_fraction > 0 else np.iinfo(np.int64).max
    return int(t_valid), int(t_test)


def time_split(frame: TickFrame, future: np.ndarray, valid_fraction: float, test_fraction: float) -> Split:
    """Row indices of the purged train / validation / test spans (see the module doc)."""
    t_valid, t_test = span_starts(frame.timestamp_ns, valid_fraction, test_fraction)
    ts = frame.timestamp_ns
    labeled = future >= 0
    label_ts = np.where(labeled, ts[np.maximum(future, 0)], np.iinfo(np.int64).max)
    train = np.flatnonzero(labeled & (label_ts < t_valid))
    valid = np.flatnonzero(labeled & (ts >= t_valid) & (label_ts < t_test))
    test = np.flatnonzero(labeled & (ts >= t_test))
    return Split(train, valid, test)


def walk_forward_splits(frame: TickFrame, future: np.ndarray, folds: int, valid_fraction: float) -> list[Split]:
    """The K walk-forward folds of the module doc, each purged like `time_split`."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if not 0 < valid_fraction < 1:
        raise ValueError("need 0 < valid_fraction < 1")
    ts = frame.timestamp_ns
    sorted_ts = np.sort(ts)
    n = len(ts)
    labeled = future >= 0
    label_ts = np.where(labeled, ts[np.maximum(future, 0)], np.iinfo(np.int64).max)
    end = np.iinfo(np.int64).max
    splits = []
    for k in range(1, folds + 1):
        t_test = sorted_ts[min(n - 1, n * k // (folds + 1))]
        t_next = sorted_ts[n * (k + 1) // (folds + 1)] if k < folds else end
        t_valid = sorted_ts[int(n * k // (folds + 1) * (1 - valid_fraction))]
        train = np.flatnonzero(labeled & (label_ts < t_valid))
        valid = np.flatnonzero(labeled & (ts >= t_valid) & (label_ts < t_test))
        test = np.flatnonzero(labeled & (ts >= t_test) & (ts < t_next))
        splits.append(Split(train, valid, test))
    return splits


def next_version(models_dir: Path, name: str) -> str:
    existing = [p.name for p in (models_dir / name).glob("*") if p.is_dir() and p.name.isascii() and p.name.isdecimal()]
    return str(max((int(v) for v in existing), default=0) + 1)


def train_model(
    frame: TickFrame,
    *,
    adapter: type[ModelAdapter],
    models_dir: Path,
    name: str,
    version: str | None = None,
    feature_config: FeatureConfig | None = None,
    label_config: LabelConfig | None = None,
    signal_rules: SignalRules | None = None,
    feature_names: tuple[str, ...] = DEFAULT_MODEL_FEATURES,
    params: dict[str, Any] | None = None,
    valid_fraction: float = 0.15,
    test_fraction: float = 0.15,
    progress: Progress | None = None,
    calibrate: bool = True,
    folds: int = 0,
) -> tuple[Path, ModelManifest]:
    """Train and write `models_dir/<name>/<version>/` atomically; returns its path and manifest."""
    check_name("model", name)
    feature_config = feature_config or FeatureConfig()
    label_config = label_config or LabelConfig()
    missing = missing_features(feature_names)
    if missing:
        raise ValueError(f"unknown feature(s): {', '.join(missing)}")
    models_dir = Path(models_dir)
    version = check_name("version", version or next_version(models_dir, name))
    target = models_dir / name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists")

    x_all = batch_features(frame, feature_config)[:, [FEATURE_INDEX[f] for f in feature_names]]
    y, future = make_labels(frame, label_config, feature_config)
    baselines = baseline_predictions(frame, label_config, feature_config)
    split = time_split(frame, future, valid_fraction, test_fraction)
    if len(split.train) == 0 or len(split.valid) == 0:
        raise ValueError(f"too few ticks to train: {len(frame)} ticks gave {len(split.train)} training rows")
    data = TrainingData(
        x_train=x_all[split.train],
        y_train=y[split.train],
        x_valid=x_all[split.valid],
        y_valid=y[split.valid],
        feature_names=list(feature_names),
        classes=list(CLASSES),
    )
    (target.parent).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=target.parent))
    try:
        result = adapter.train(data, dict(params or {}), staging, progress or (lambda *a: None))
        manifest = ModelManifest(
            name=name,
            version=version,
            adapter=adapter.name,
            model_file=result.model_file,
            feature_names=list(feature_names),
            feature_stage_version=FEATURE_STAGE_VERSION,
            feature_config=feature_config,
            label_config=label_config,
            signal_rules=signal_rules or SignalRules(),
            parameters=result.parameters,
            options=result.options,
            data_fingerprint=frame.fingerprint(),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            tickserve_version=__version__,
        )
        manifest.model_sha256 = file_sha256(staging / result.model_file)
        model = adapter.load(staging, manifest)
        if calibrate:
            temperature = fit_temperature(model.predict_proba(data.x_valid), data.y_valid)
            manifest.calibration = {"method": "temperature", "temperature": temperature, "fitted_on": "valid"}
        calibrator = Calibrator(manifest.calibration)
        metrics = dict(result.info)
        metrics.update({"train_rows": float(len(split.train)), "ticks": float(len(frame))})
        for span, rows in (("valid", split.valid), ("test", split.test)):
            if len(rows) == 0:
                continue
            raw = model.predict_proba(x_all[rows])
            probs = calibrator(raw)
            m = ClassificationMetrics()
            m.add_batch(y[rows], predicted_class(probs), probs)
            metrics.update({f"{span}_{k}": v for k, v in m.summary().items()})
            metrics[f"{span}_brier_uncalibrated"] = brier_score(raw, y[rows])
            metrics[f"{span}_brier"] = brier_score(probs, y[rows])
            metrics[f"{span}_ece_uncalibrated"] = expected_calibration_error(raw, y[rows])
            metrics[f"{span}_ece"] = expected_calibration_error(probs, y[rows])
            metrics.update(_baseline_metrics(f"{span}_baseline", y, rows, baselines))
        if folds:
            metrics.update(
                _walk_forward(frame, x_all, y, future, baselines, folds, valid_fraction, adapter, params, manifest,
                              target.parent, calibrate)
            )
        manifest.metrics = metrics
        manifest.save(staging)
        os.replace(staging, target)  # readers never see a half-written model
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, manifest


def _baseline_metrics(prefix: str, y: np.ndarray, rows: np.ndarray, baselines: dict[str, np.ndarray]) -> dict[str, float]:
    scored = score_baselines(y[rows], {name: pred[rows] for name, pred in baselines.items()})
    return {f"{prefix}_{name}_{k}": float(v) for name, values in scored.items() for k, v in values.items()}


def _walk_forward(frame, x_all, y, future, baselines, folds, valid_fraction, adapter, params, manifest, workdir,
                  calibrate) -> dict[str, float]:
    """Train and test one throw-away model per fold (see the module doc); the fold metrics."""
    import dataclasses

    metrics: dict[str, float] = {"wf_folds": float(folds)}
    per_fold: list[dict[str, float]] = []
    for k, split in enumerate(walk_forward_splits(frame, future, folds, valid_fraction), start=1):
        if len(split.train) == 0 or len(split.valid) == 0 or len(split.test) == 0:
            raise ValueError(f"walk-forward fold {k} of {folds}: too few ticks ({len(split.train)} training, "
                             f"{len(split.valid)} validation, {len(split.test)} test rows); use fewer folds")
        data = TrainingData(x_train=x_all[split.train], y_train=y[split.train], x_valid=x_all[split.valid],
                            y_valid=y[split.valid], feature_names=list(manifest.feature_names), classes=list(CLASSES))
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}-fold{k}-", dir=workdir))
        try:
            result = adapter.train(data, dict(params or {}), staging, lambda *a: None)
            fold_manifest = dataclasses.replace(manifest, model_file=result.model_file, options=result.options,
                                                calibration={})
            model = adapter.load(staging, fold_manifest)
            calibration = {}
            if calibrate:
                calibration = {"method": "temperature",
                               "temperature": fit_temperature(model.predict_proba(data.x_valid), data.y_valid)}
            probs = Calibrator(calibration)(model.predict_proba(x_all[split.test]))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        m = ClassificationMetrics()
        m.add_batch(y[split.test], predicted_class(probs), probs)
        fold = {"train_rows": float(len(split.train)), "test_rows": float(len(split.test)),
                "accuracy": m.accuracy, "macro_f1": m.macro_f1, "log_loss": m.log_loss}
        fold.update(_baseline_metrics("baseline", y, split.test, baselines))
        fold["test_start_ns"] = float(frame.timestamp_ns[split.test].min())
        per_fold.append(fold)
        metrics.update({f"wf{k}_{name}": v for name, v in fold.items()})
    for name in per_fold[0]:
        if name not in ("train_rows", "test_rows", "test_start_ns"):
            metrics[f"wf_mean_{name}"] = float(np.mean([f[name] for f in per_fold]))
    return metrics


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def label_counts(y: np.ndarray) -> dict[str, int]:
    return {CLASSES[k]: int((y == k).sum()) for k in range(len(CLASSES))} | {"unlabeled": int((y == NO_LABEL).sum())}


__all__ = ["Split", "label_counts", "next_version", "span_starts", "time_split", "train_model", "version_key",
           "walk_forward_splits"]
