"""Training: ticks -> features and labels -> walk-forward folds -> an adapter -> a model directory.

`train_model` runs the walk-forward of `walk_forward.py` (expanding windows,
purged, time order only): one model per fold, each scored on the block after
its training ticks against the baselines, with one-position trading figures.
The last fold's model is the one written: it was trained on every tick before
the test span, which informed no choice. What was chosen and why, and every
fold where the model lost to a baseline, is recorded in words in the
manifest's `training` report (`training_report.py`).

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
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .baselines import baseline_predictions
from .calibration import Calibrator, fit_temperature, log_loss
from .features import FEATURE_INDEX, FEATURE_STAGE_VERSION, FeatureConfig, batch_features
from .features.calendar import DAY_NS, HOUR_NS
from .features.spec import DEFAULT_MODEL_FEATURES, SESSION_FEATURES, missing_features
from .fold_scoring import expected_moves, score_span, tune_action_weight
from .label_choice import choose_horizon, median_spread_ticks
from .labels import CLASSES, NO_LABEL, LabelConfig, make_labels, tick_sizes
from .manifest import ModelManifest, check_name, file_sha256
from .plugin import ModelAdapter, Progress, TrainingData
from .repository import version_key
from .signals import SignalRules
from .ticks import TickFrame
from .training_report import FoldReport, TrainingReport, training_sample
from .walk_forward import FoldRows, fold_rows, fold_spans

MIN_SESSIONS = 5
_SPREAD_TICKS = FEATURE_INDEX["spread_ticks"]


@dataclass
class _FoldFit:
    rows: FoldRows
    staging: Path
    model: Any
    result: Any
    raw_valid: np.ndarray
    raw_test: np.ndarray
    temperature: float
    moves: tuple[float, float, float]


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
) -> tuple[Path, ModelManifest]:
    """Train (walk-forward) and write `models_dir/<name>/<version>/` atomically; returns its path and manifest.

    `label_config` None: taker labels with the horizon chosen from the data (`choose="ticks"`).
    `choose`: "ticks" or "time" to choose the horizon from the data (label_config's horizon is
    then ignored), None to keep label_config's. `threshold_spreads`: a mid threshold of this many
    median spreads. `cost_gate` / `tune_action` False: the seed's decision (the most probable
    class), for comparisons."""
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

    full = batch_features(frame, feature_config)
    x_all = full[:, [FEATURE_INDEX[f] for f in feature_names]]
    spread = full[:, _SPREAD_TICKS]
    y, future = make_labels(frame, label_config, feature_config)
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
    fits: list[_FoldFit] = []
    try:
        for k, fold_span in enumerate(spans, start=1):
            rows = fold_rows(frame, future, fold_span)
            _check_rows(k, rows, y)
            fits.append(
                _fit_fold(
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
                )
            )
        calibrated, calibration_text = _calibration_decision(fits, y, calibrate)
        rules = replace(
            signal_rules or SignalRules(),
            cost_gate=cost_gate,
            cost_ticks=label_config.cost_ticks if label_config.taker else 0.0,
        )
        reports = []
        for fit in fits:
            reports.append(
                _score_fold(
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
            notes=_loss_notes([r for r, _ in reports], y, fits),
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


def _check_rows(k: int, rows: FoldRows, y: np.ndarray) -> None:
    for what, r in (("training", rows.train), ("validation", rows.valid), ("test", rows.test)):
        if len(r) == 0:
            raise ValueError(
                f"walk-forward fold {k}: no labeled {what} ticks; use fewer --folds, a shorter horizon or more data"
            )
    for what, r in (("training", rows.train), ("validation", rows.valid)):
        classes = np.unique(y[r])
        if len(classes) < 2:
            raise ValueError(
                f"walk-forward fold {k}: every {what} label is {CLASSES[int(classes[0])]} ({len(r)} ticks): there is "
                "nothing to learn; use a longer --horizon, a smaller --threshold or --cost-ticks, or more data"
            )


def _fit_fold(
    k, folds, rows, x_all, y, frame, future, sizes, adapter, params, manifest, workdir, progress, calibrate
) -> _FoldFit:
    data = TrainingData(
        x_train=x_all[rows.train],
        y_train=y[rows.train],
        x_valid=x_all[rows.valid],
        y_valid=y[rows.valid],
        feature_names=list(manifest.feature_names),
        classes=list(CLASSES),
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}-{manifest.version}-fold{k}-", dir=workdir))
    try:
        report = (
            (lambda done, total, msg: progress(done, total, f"fold {k}/{folds} {msg}".strip()))
            if progress
            else (lambda *a: None)
        )
        result = adapter.train(data, dict(params or {}), staging, report)
        fold_manifest = replace(manifest, model_file=result.model_file, options=result.options, calibration={})
        model = adapter.load(staging, fold_manifest)
        raw_valid = model.predict_proba(x_all[rows.valid])
        raw_test = model.predict_proba(x_all[rows.test])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    temperature = fit_temperature(raw_valid, y[rows.valid]) if calibrate else 1.0
    moves = expected_moves(frame, rows.train, y, future, sizes)
    return _FoldFit(rows, staging, model, result, raw_valid, raw_test, temperature, moves)


def _calibration_decision(fits: list[_FoldFit], y: np.ndarray, calibrate: bool) -> tuple[bool, str]:
    if not calibrate:
        return False, "calibration: off (--no-calibrate)"
    judged = fits[:-1] or fits
    which = f"folds 1-{len(judged)}" if len(judged) > 1 else "fold 1"
    before = float(np.mean([log_loss(f.raw_test, y[f.rows.test]) for f in judged]))
    after = float(
        np.mean(
            [
                log_loss(
                    Calibrator({"method": "temperature", "temperature": f.temperature})(f.raw_test), y[f.rows.test]
                )
                for f in judged
            ]
        )
    )
    if after < before:
        return True, (
            f"calibration: temperature scaling improved the held-out log loss of {which} "
            f"({before:.4f} -> {after:.4f}), so it is applied (T = {fits[-1].temperature:.3f})"
        )
    return False, (
        f"calibration: temperature scaling made the held-out log loss of {which} worse "
        f"({before:.4f} -> {after:.4f}), so it is not applied"
    )


def _score_fold(
    fit: _FoldFit,
    calibrated: bool,
    rules: SignalRules,
    y,
    frame,
    future,
    sizes,
    spread,
    baselines,
    labels: LabelConfig,
    fee_bps: float,
    tune_action: bool = True,
) -> tuple[FoldReport, SignalRules]:
    calibrator = Calibrator({"method": "temperature", "temperature": fit.temperature} if calibrated else {})
    valid, test = fit.rows.valid, fit.rows.test
    p_valid, p_test = calibrator(fit.raw_valid), calibrator(fit.raw_test)
    rules = replace(
        rules,
        expected_move_sell_ticks=fit.moves[0],
        expected_move_hold_ticks=fit.moves[1],
        expected_move_buy_ticks=fit.moves[2],
    )
    if tune_action:
        rules = replace(rules, action_weight=tune_action_weight(p_valid, y[valid], spread[valid], rules))
    cost = labels.cost_ticks if labels.taker else 0.0
    valid_scores = score_span(
        frame, valid, y, future, sizes, p_valid, spread[valid], rules, baselines, cost_ticks=cost, fee_bps=fee_bps
    )
    scores = score_span(
        frame,
        test,
        y,
        future,
        sizes,
        p_test,
        spread[test],
        rules,
        baselines,
        cost_ticks=labels.cost_ticks if labels.taker else 0.0,
        fee_bps=fee_bps,
    )
    report = FoldReport(
        spans=fit.rows.spans,
        train_rows=len(fit.rows.train),
        valid_rows=len(valid),
        test=scores,
        valid=valid_scores,
        action_weight=rules.action_weight,
        temperature=fit.temperature,
        test_log_loss_uncalibrated=log_loss(fit.raw_test, y[test]),
        test_log_loss_calibrated=log_loss(
            Calibrator({"method": "temperature", "temperature": fit.temperature})(fit.raw_test), y[test]
        ),
        best_iteration=float(fit.result.info.get("best_iteration", 0.0)),
    )
    return report, rules


def _loss_notes(folds: list[FoldReport], y: np.ndarray, fits: list[_FoldFit]) -> list[str]:
    """Every fold where the model lost to a baseline, on macro-F1 or on P&L, in words."""
    notes = []
    for k, (fold, fit) in enumerate(zip(folds, fits), start=1):
        s = fold.test
        if len(np.unique(y[fit.rows.test])) < 2:
            notes.append(f"fold {k}: every test label is {CLASSES[int(y[fit.rows.test][0])]}: its scores say little")
        name, best = s.best_baseline()
        if s.macro_f1 <= best:
            notes.append(
                f"fold {k}: the model's macro-F1 {s.macro_f1:.4f} is not above the {name} baseline's "
                f"{best:.4f} ({s.macro_f1 - best:+.4f})"
            )
        strong = s.trading["strong"]
        if strong["total_pnl_ticks"] < 0:
            notes.append(
                f"fold {k}: STRONG signals lost {strong['total_pnl_ticks']:.1f} ticks "
                f"({strong['total_pnl_bps']:.2f} bps) over {strong['trades']} one-position trades after "
                "the spread"
            )
        mine = s.trading["all"]["total_pnl_ticks"]
        for baseline in ("last_move", "imbalance"):
            theirs = s.trading[baseline]["total_pnl_ticks"]
            if theirs > mine:
                notes.append(
                    f"fold {k}: on P&L (one position, every BUY/SELL, after the spread) the {baseline} rule "
                    f"earned {theirs:+.1f} ticks, the model {mine:+.1f}"
                )
    return notes


def label_counts(y: np.ndarray) -> dict[str, int]:
    return {CLASSES[k]: int((y == k).sum()) for k in range(len(CLASSES))} | {"unlabeled": int((y == NO_LABEL).sum())}


__all__ = ["MIN_SESSIONS", "default_features", "label_counts", "next_version", "train_model", "version_key"]
