"""The walk-forward folds of a training (`training.train_model`): check a fold's rows, fit the adapter on
its training and validation ticks, decide whether calibration helped the earlier folds, score each fold on
its test block against the baselines, and say in words where the model lost."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core.calibration import Calibrator, fit_temperature, log_loss
from ..core.signals import SignalRules
from ..evaluation.labels import CLASSES, LabelConfig
from ..plugin import Progress, TrainingData, TrainingResult
from .report import FoldReport
from .scores import expected_moves, score_span, tune_action_weight
from .walk_forward import FoldRows


class Trainer(Protocol):
    """Fits one fold, as `ModelAdapter.train` does (its default)."""

    def __call__(
        self, data: TrainingData, params: dict[str, Any], out_dir: Path, progress: Progress
    ) -> TrainingResult: ...


@dataclass
class FoldFit:
    rows: FoldRows
    staging: Path
    model: Any
    result: Any
    raw_valid: np.ndarray
    raw_test: np.ndarray
    temperature: float
    moves: tuple[float, float, float]


def check_rows(k: int, rows: FoldRows, y: np.ndarray) -> None:
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


def fit_fold(
    k,
    folds,
    rows,
    x_all,
    y,
    frame,
    future,
    sizes,
    adapter,
    params,
    manifest,
    workdir,
    progress,
    calibrate,
    trainer=None,
) -> FoldFit:
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
        result = (trainer or adapter.train)(data, dict(params or {}), staging, report)
        fold_manifest = replace(manifest, model_file=result.model_file, options=result.options, calibration={})
        model = adapter.load(staging, fold_manifest)
        raw_valid = model.predict_proba(x_all[rows.valid])
        raw_test = model.predict_proba(x_all[rows.test])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    temperature = fit_temperature(raw_valid, y[rows.valid]) if calibrate else 1.0
    moves = expected_moves(frame, rows.train, y, future, sizes)
    return FoldFit(rows, staging, model, result, raw_valid, raw_test, temperature, moves)


def calibration_decision(fits: list[FoldFit], y: np.ndarray, calibrate: bool) -> tuple[bool, str]:
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


def score_fold(
    fit: FoldFit,
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


def loss_notes(folds: list[FoldReport], y: np.ndarray, fits: list[FoldFit]) -> list[str]:
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
