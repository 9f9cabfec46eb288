"""Training: ticks -> features and labels -> walk-forward folds -> an adapter -> a model directory.

`train_model` runs the walk-forward of `walk_forward.py` (expanding windows,
purged, time order only): one model per fold, each scored on the block after
its training ticks against the baselines, with one-position trading figures.
The last fold's model is the one written: it was trained on every tick before
the test span, which informed no choice. What was chosen and why, and every
fold where the model lost to a baseline, is recorded in words in the
manifest's `training` report (`report.py`). The per-fold steps (fit,
calibration decision, scoring, loss notes) are in `folds.py`.

Choices made from the data, never from a test span the choice is scored on:

- the label horizon (`label_choice.choose_horizon`) and a mid threshold in
  spreads, from the ticks before the first test block;
- the features: session features only where they can generalise (a calendar
  with sessions and training ticks over at least MIN_SESSIONS of them);
- per fold, from its training and validation ticks: the temperature, the
  decision rule's expected class moves and the action weight (macro-F1 on the
  validation span, cost gate included);
- whether to apply calibration at all: only if it improved the held-out log
  loss of the earlier folds (all folds but the last; the last one alone when
  there is only one).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..core.signals import SignalRules
from ..core.ticks import TickFrame
from ..evaluation.baselines import baseline_predictions
from ..evaluation.labels import CLASSES, NO_LABEL, LabelConfig, tick_sizes
from ..features import FEATURE_INDEX, FEATURE_STAGE_VERSION, FeatureConfig
from ..features.calendar import DAY_NS, HOUR_NS
from ..features.spec import DEFAULT_MODEL_FEATURES, SESSION_FEATURES, missing_features
from ..models.manifest import ModelManifest, check_name, file_sha256
from ..models.repository import version_key
from ..plugin import ModelAdapter, Progress
from .distributed import FeatureLabelStage, local_stage
from .folds import FoldFit, Trainer, calibration_decision, check_rows, fit_fold, loss_notes, score_fold
from .label_choice import choose_horizon, median_spread_ticks
from .report import TrainingReport, training_sample
from .walk_forward import fold_rows, fold_spans

MIN_SESSIONS = 5
_SPREAD_TICKS = FEATURE_INDEX["spread_ticks"]


def next_version(models_dir: Path, name: str) -> str:
    existing = [p.name for p in (models_dir / name).glob("*") if p.is_dir() and p.name.isascii() and p.name.isdecimal()]
    return str(max((int(v) for v in existing), default=0) + 1)


def default_features(frame: TickFrame, config: FeatureConfig, end_ns: int) -> tuple[tuple[str, ...], list[str]]:
    """The default model input and, in words, what it leaves out and why."""
    calendar = config.calendar
    left_out = [
        "price-level features (microprice, vwap_*, spread, spread_pct) are left out: they follow the price "
        "level (and, across instruments, the tick size), which a later span need not share"
    ]
    always_open = calendar.open_minute == 0 and calendar.close_minute == 1440 and len(set(calendar.weekdays)) == 7
    if always_open:
        why = f"the {calendar.name} calendar has no sessions, so they only tell the time of day"
    else:
        sessions = _sessions_seen(frame.timestamp_ns[frame.timestamp_ns < end_ns], config)
        why = (
            None
            if sessions >= MIN_SESSIONS
            else (
                f"the training ticks cover {sessions} {calendar.name} session(s), fewer than {MIN_SESSIONS}: "
                "a model would learn the clock of those days, not a session pattern"
            )
        )
    if why is None:
        return DEFAULT_MODEL_FEATURES, left_out
    left_out.append(f"session features ({', '.join(SESSION_FEATURES)}) are left out: {why}")
    return tuple(n for n in DEFAULT_MODEL_FEATURES if n not in SESSION_FEATURES), left_out


def _sessions_seen(ts: np.ndarray, config: FeatureConfig) -> int:
    """Distinct local dates with at least one tick inside the calendar's session."""
    if len(ts) == 0:
        return 0
    calendar = config.calendar
    hours, inverse = np.unique(ts // HOUR_NS, return_inverse=True)
    local = ts + np.array([calendar.utc_offset_ns(int(h)) for h in hours], dtype=np.int64)[inverse]
    day = local // DAY_NS
    in_day = local - day * DAY_NS
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    inside = np.isin(weekday, calendar.weekdays) & (in_day >= calendar.open_ns) & (in_day < calendar.close_ns)
    return int(len(np.unique(day[inside])))


def train_model(
    frame: TickFrame,
    *,
    adapter: type[ModelAdapter],
    models_dir: Path,
    name: str,
    version: str | None = None,
    feature_config: FeatureConfig | None = None,
    label_config: LabelConfig | None = None,
    choose: str | None = None,
    threshold_spreads: float | None = None,
    signal_rules: SignalRules | None = None,
    feature_names: tuple[str, ...] | None = None,
    params: dict[str, Any] | None = None,
    folds: int = 3,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.15,
    progress: Progress | None = None,
    calibrate: bool = True,
    cost_gate: bool = True,
    tune_action: bool = True,
    fee_bps: float = 0.0,
    stage: FeatureLabelStage | None = None,
    trainer: Trainer | None = None,
) -> tuple[Path, ModelManifest]:
    """Train (walk-forward) and write `models_dir/<name>/<version>/` atomically; returns its path and manifest.

    `label_config` None: taker labels with the horizon chosen from the data (`choose="ticks"`).
    `choose`: "ticks" or "time" to choose the horizon from the data (label_config's horizon is
    then ignored), None to keep label_config's. `threshold_spreads`: a mid threshold of this many
    median spreads. `cost_gate` / `tune_action` False: the seed's decision (the most probable
    class), for comparisons. `stage`: computes (features, labels, label-tick rows) of the frame
    (default: one process; `distributed.DaskStage` on a cluster, the same bits). `trainer`: fits
    one fold in place of `adapter.train` (e.g. the LightGBM adapter's `train_dask`)."""
    check_name("model", name)
    feature_config = feature_config or FeatureConfig()
    if label_config is None:
        label_config, choose = LabelConfig(mode="taker"), choose or "ticks"
    if feature_names is not None:
        missing = missing_features(feature_names)
        if missing:
            raise ValueError(f"unknown feature(s): {', '.join(missing)}")
    models_dir = Path(models_dir)
    version = check_name("version", version or next_version(models_dir, name))
    target = models_dir / name / version
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    if len(frame) == 0:
        raise ValueError("no ticks to train on")

    spans = fold_spans(frame.timestamp_ns, folds, test_fraction, valid_fraction)
    first_test = spans[0].test_start_ns
    rule = f"label: {label_config.describe()}, as given"
    if threshold_spreads is not None:
        median = median_spread_ticks(frame, feature_config, first_test)
        label_config = replace(label_config, threshold_ticks=max(round(threshold_spreads * median, 6), 1e-6))
        rule = (
            f"threshold {label_config.threshold_ticks:g} ticks: {threshold_spreads:g} x the median spread "
            f"({median:g} ticks) before the first test block"
        )
    shares: tuple = ()
    if choose is not None:
        choice = choose_horizon(frame, label_config, feature_config, first_test, in_time=choose == "time")
        label_config, shares = choice.labels, choice.shares
        rule = choice.rule if threshold_spreads is None else f"{choice.rule}; {rule}"
    if feature_names is None:
        feature_names, left_out = default_features(frame, feature_config, spans[-1].valid_start_ns)
    else:
        left_out = []

    full, y, future = (stage or local_stage)(frame, feature_config, label_config)
    x_all = full[:, [FEATURE_INDEX[f] for f in feature_names]]
    spread = full[:, _SPREAD_TICKS]
    sizes = tick_sizes(frame, feature_config)
    baselines = baseline_predictions(frame, label_config, feature_config)
    base_manifest = ModelManifest(
        name=name,
        version=version,
        adapter=adapter.name,
        model_file="",
        feature_names=list(feature_names),
        feature_stage_version=FEATURE_STAGE_VERSION,
        feature_config=feature_config,
        label_config=label_config,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    fits: list[FoldFit] = []
    try:
        for k, fold_span in enumerate(spans, start=1):
            rows = fold_rows(frame, future, fold_span)
            check_rows(k, rows, y)
            fits.append(
                fit_fold(
                    k,
                    len(spans),
                    rows,
                    x_all,
                    y,
                    frame,
                    future,
                    sizes,
                    adapter,
                    params,
                    base_manifest,
                    target.parent,
                    progress,
                    calibrate,
                    trainer,
                )
            )
        calibrated, calibration_text = calibration_decision(fits, y, calibrate)
        rules = replace(
            signal_rules or SignalRules(),
            cost_gate=cost_gate,
            cost_ticks=label_config.cost_ticks if label_config.taker else 0.0,
        )
        reports = []
        for fit in fits:
            reports.append(
                score_fold(
                    fit,
                    calibrated,
                    rules,
                    y,
                    frame,
                    future,
                    sizes,
                    spread,
                    baselines,
                    label_config,
                    fee_bps,
                    tune_action,
                )
            )
        report = TrainingReport(
            label=label_config.describe(),
            label_rule=rule,
            horizon_shares=list(shares),
            features=list(feature_names),
            left_out=left_out,
            calibrated=calibrated,
            calibration=calibration_text,
            folds=[r for r, _ in reports],
            instruments=sorted(set(frame.instrument.tolist())),
            notes=loss_notes([r for r, _ in reports], y, fits),
            sample=training_sample(frame, spans[-1].test_start_ns),
        )
        final, final_rules = fits[-1], reports[-1][1]
        manifest = replace(
            base_manifest,
            model_file=final.result.model_file,
            signal_rules=final_rules,
            parameters=final.result.parameters,
            options=final.result.options,
            data_fingerprint=frame.fingerprint(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tickserve_version=__version__,
            calibration={"method": "temperature", "temperature": final.temperature, "fitted_on": "valid"}
            if calibrated
            else {},
            metrics={**dict(final.result.info), **report.flat_metrics(), "ticks": float(len(frame))},
            training=report.to_dict(),
        )
        manifest.model_sha256 = file_sha256(final.staging / final.result.model_file)
        manifest.save(final.staging)
        os.replace(final.staging, target)  # readers never see a half-written model
    finally:
        for fit in fits:
            shutil.rmtree(fit.staging, ignore_errors=True)
    return target, manifest


def label_counts(y: np.ndarray) -> dict[str, int]:
    return {CLASSES[k]: int((y == k).sum()) for k in range(len(CLASSES))} | {"unlabeled": int((y == NO_LABEL).sum())}


__all__ = ["MIN_SESSIONS", "default_features", "label_counts", "next_version", "train_model", "version_key"]
