"""The project's own types -> protobuf (signals, results, columns, model info, reports), and a
frame's ticks -> messages for clients. Inbound ticks are converted in `tick_input`; nothing past
these two modules sees protobuf."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np

from tickserve_proto.contract import tick_message
from tickserve_proto.v1 import tickserve_pb2 as pb

from ..core.columnar import ColumnResults, TickBlock
from ..core.session import Rejection, Result, Scored
from ..core.signals import ACTIONS, RISKS, STRENGTHS, URGENCIES, SignalValues
from ..core.ticks import (
    AGGRESSOR_NAMES,
    AGGRESSOR_NONE,
    Tick,
    TickFrame,
    unknown_side_number,
)
from ..features import MAX_LOOKBACK
from ..models.repository import ModelEntry

log = logging.getLogger(__name__)

ACTION = {name: pb.Action.Value(f"ACTION_{name}") for name in ("BUY", "HOLD", "SELL")}
STRENGTH = {name: pb.Strength.Value(f"STRENGTH_{name}") for name in ("WEAK", "MEDIUM", "STRONG")}
URGENCY = {name: pb.Urgency.Value(f"URGENCY_{name}") for name in ("PASSIVE", "AGGRESSIVE")}
RISK = {name: pb.Risk.Value(f"RISK_{name}") for name in ("LOW", "MEDIUM", "HIGH")}
MODEL_STATE = {name: pb.ModelState.Value(f"MODEL_STATE_{name}") for name in ("LOADING", "READY", "FAILED", "UNLOADED")}

# --- out -----------------------------------------------------------------------------


def signal_to_proto(scored: Scored, model: str, version: str) -> pb.Signal:
    s: SignalValues = scored.signal
    tick = scored.tick
    msg = pb.Signal(
        action=ACTION[s.action],
        p_buy=s.p_buy,
        p_hold=s.p_hold,
        p_sell=s.p_sell,
        confidence=s.confidence,
        edge_score=s.edge_score,
        strength=STRENGTH[s.strength],
        urgency=URGENCY[s.urgency],
        risk=RISK[s.risk],
        model=model,
        model_version=version,
        instrument=tick.instrument,
        timestamp_ns=tick.timestamp_ns,
        warmed_up=scored.warmed_up,
        features=scored.features or (),
    )
    if tick.sequence is not None:
        msg.sequence = tick.sequence
        if scored.sequence_gap:
            msg.sequence_gap = scored.sequence_gap
    return msg


def result_to_proto(result: Result, tick: Tick, model: str, version: str) -> pb.TickResult:
    if isinstance(result, Rejection):
        error = pb.TickError(
            code=result.status.value,
            message=result.message,
            field=result.field,
            instrument=tick.instrument,
            timestamp_ns=tick.timestamp_ns,
        )
        if tick.sequence is not None:
            error.sequence = tick.sequence
        return pb.TickResult(error=error)
    return pb.TickResult(signal=signal_to_proto(result, model, version))


def warmup_to_proto(results: list, ticks: list[Tick]) -> pb.WarmupResult:
    """The answer to a warmup message: how many ticks entered the state, the first refusal."""
    rejected = [(r, t) for r, t in zip(results, ticks) if isinstance(r, Rejection)]
    answer = pb.WarmupResult(accepted=len(results) - len(rejected), rejected=len(rejected))
    if rejected:
        answer.first_error.CopyFrom(result_to_proto(*rejected[0], "", "").error)
    return answer


_ACTION_CODES = np.array([ACTION[name] for name in ACTIONS], dtype=np.int32)
_STRENGTH_CODES = np.array([STRENGTH[name] for name in STRENGTHS], dtype=np.int32)
_URGENCY_CODES = np.array([URGENCY[name] for name in URGENCIES], dtype=np.int32)
_RISK_CODES = np.array([RISK[name] for name in RISKS], dtype=np.int32)


def tick_results_to_proto(results: ColumnResults, block: TickBlock, model: str, version: str) -> list[pb.TickResult]:
    """A block's answers one TickResult per tick, as `result_to_proto` makes them from the
    per-tick path's results (tested equal, field for field)."""
    out: list[pb.TickResult] = [None] * results.n  # type: ignore[list-item]
    for i, rejection in results.rejections.items():
        out[i] = result_to_proto(rejection, block.tick(i), model, version)
    rows = results.admitted
    if not len(rows):
        return out
    sig, probs = results.signal, results.probs
    names = block.names
    sequence = block.sequence[rows].tolist() if block.sequence is not None else None
    features = results.x.tolist() if results.x is not None else None
    columns = zip(
        rows.tolist(),
        _ACTION_CODES[sig.action].tolist(),
        probs[:, 2].tolist(),
        probs[:, 1].tolist(),
        probs[:, 0].tolist(),
        sig.confidence.tolist(),
        sig.edge_score.tolist(),
        _STRENGTH_CODES[sig.strength].tolist(),
        _URGENCY_CODES[sig.urgency].tolist(),
        _RISK_CODES[sig.risk].tolist(),
        block.index[rows].tolist(),
        block.timestamp_ns[rows].tolist(),
        results.warmed.tolist(),
        results.gaps.tolist(),
    )
    for j, (i, action, p_buy, p_hold, p_sell, conf, edge, strength, urgency, risk, k, ts, warm, gap) in enumerate(
        columns
    ):
        msg = pb.Signal(
            action=action,
            p_buy=p_buy,
            p_hold=p_hold,
            p_sell=p_sell,
            confidence=conf,
            edge_score=edge,
            strength=strength,
            urgency=urgency,
            risk=risk,
            model=model,
            model_version=version,
            instrument=names[k],
            timestamp_ns=ts,
            warmed_up=warm,
            features=features[j] if features is not None else (),
        )
        if sequence is not None:
            msg.sequence = sequence[j]
            if gap:
                msg.sequence_gap = gap
        out[i] = pb.TickResult(signal=msg)
    return out


def columns_to_proto(results: ColumnResults, block: TickBlock, model: str, version: str) -> pb.SignalColumns:
    """SignalColumns from arrays: a row per tick, NaN / 0 in the rows of rejected ticks."""
    n, rows = results.n, results.admitted
    out = pb.SignalColumns(model=model, model_version=version)
    every = len(rows) == n  # no rejection: the admitted rows are all rows, in order

    def floats(values: np.ndarray) -> list:
        if every:
            return values.tolist()
        full = np.full(n, np.nan)
        full[rows] = values
        return full.tolist()

    def ints(values: np.ndarray, dtype=np.int32) -> list:
        if every:
            return values.tolist()
        full = np.zeros(n, dtype=dtype)
        full[rows] = values
        return full.tolist()

    code = np.zeros(n, dtype=np.int32)
    for i, r in results.rejections.items():
        code[i] = r.status.value
    out.code.extend(code.tolist())
    if results.signal is not None:
        sig = results.signal
        out.p_sell.extend(floats(results.probs[:, 0]))
        out.p_hold.extend(floats(results.probs[:, 1]))
        out.p_buy.extend(floats(results.probs[:, 2]))
        out.confidence.extend(floats(sig.confidence))
        out.edge_score.extend(floats(sig.edge_score))
        out.action.extend(ints(_ACTION_CODES[sig.action]))
        out.strength.extend(ints(_STRENGTH_CODES[sig.strength]))
        out.urgency.extend(ints(_URGENCY_CODES[sig.urgency]))
        out.risk.extend(ints(_RISK_CODES[sig.risk]))
        out.warmed_up.extend(ints(results.warmed, bool))
        out.sequence_gap.extend(ints(results.gaps, np.uint64))
        if results.x is not None:
            full = np.full((n, results.x.shape[1]), np.nan)
            full[rows] = results.x
            out.features.extend(full.ravel().tolist())
    elif n:
        nan = [float("nan")] * n
        zero = [0] * n
        for field in (out.p_sell, out.p_hold, out.p_buy, out.confidence, out.edge_score):
            field.extend(nan)
        out.features.extend([float("nan")] * (n * results.n_features))
        for field in (out.action, out.strength, out.urgency, out.risk, out.sequence_gap):
            field.extend(zero)
        out.warmed_up.extend([False] * n)
    for i in sorted(results.rejections):
        out.error_index.append(i)
        out.errors.append(result_to_proto(results.rejections[i], block.tick(i), model, version).error)
    return out


def model_info(entry: ModelEntry) -> pb.ModelInfo:
    info = pb.ModelInfo(
        name=entry.name,
        version=entry.version,
        state=MODEL_STATE[entry.state.value],
        state_reason=entry.reason,
    )
    m = entry.manifest
    if m is not None:
        info.adapter = m.adapter
        info.feature_names.extend(m.feature_names)
        info.classes.extend(m.classes)
        info.label_config.horizon_ticks = m.label_config.horizon_ticks or 0  # 0: a time horizon
        info.label_config.horizon_ns = m.label_config.horizon_ns or 0
        info.label_config.threshold_ticks = m.label_config.threshold_ticks
        info.label_config.mode = m.label_config.mode
        info.label_config.cost_ticks = m.label_config.cost_ticks
        info.feature_stage_version = m.feature_stage_version
        info.parameters.update({k: json.dumps(v) for k, v in m.parameters.items()})
        info.metrics.update(m.metrics)
        info.signal_rules.update(m.signal_rules.to_numbers())
        info.data_fingerprint = m.data_fingerprint
        info.max_lookback = MAX_LOOKBACK
        spans = m.training.get("spans")
        if spans:
            info.training_spans.CopyFrom(
                pb.TrainingSpans(
                    train_start_ns=spans["train_start_ns"],
                    valid_start_ns=spans["valid_start_ns"],
                    test_start_ns=spans["test_start_ns"],
                    test_end_ns=min(spans["test_end_ns"], 2**63 - 1),
                    instruments=spans.get("instruments", []),
                    sample_instruments=[str(name) for name, _ in spans.get("sample", [])],
                    sample_timestamps_ns=[int(ts) for _, ts in spans.get("sample", [])],
                )
            )
        if m.training:
            info.training_notes.extend(
                [
                    m.training["label_rule"],
                    *m.training.get("left_out", []),
                    m.training["calibration"],
                    *m.training.get("notes", []),
                ]
            )
    if entry.model is not None:
        try:  # a plugin's metadata() must not break ListModels for every model
            runtime = entry.model.adapter.metadata()
        except Exception:
            log.exception("metadata() of %s/%s failed", entry.name, entry.version)
            runtime = {}
        info.runtime.update({str(k): str(v) for k, v in runtime.items()})
    return info


def report_to_proto(report: dict) -> pb.EvaluationReport:
    msg = pb.EvaluationReport(
        model=report["model"],
        model_version=report["model_version"],
        ticks=report["ticks"],
        labeled=report["labeled"],
        accuracy=report["accuracy"],
        macro_f1=report["macro_f1"],
        log_loss=report["log_loss"],
        majority_baseline_accuracy=report["majority_baseline_accuracy"],
        majority_class=report["majority_class"],
        classes=report["classes"],
        confusion_matrix=report["confusion_matrix"],
        brier_score=report["brier_score"],
        brier_score_uncalibrated=report["brier_score_uncalibrated"],
        expected_calibration_error=report["expected_calibration_error"],
        expected_calibration_error_uncalibrated=report["expected_calibration_error_uncalibrated"],
        calibration_temperature=report["calibration_temperature"],
        warmup_ticks=report.get("warmup_ticks", 0),
    )
    for c in report["per_class"]:
        msg.per_class.add(**c)
    msg.action_counts.update(report["action_counts"])
    msg.strength_counts.update(report["strength_counts"])
    msg.risk_counts.update(report["risk_counts"])
    for name, value in report["feature_importance"]:
        msg.feature_importance.add(feature=name, importance=value)
    if "label_config" in report:
        msg.label_config.CopyFrom(pb.LabelConfig(**report["label_config"]))
    for b in report.get("baselines", ()):
        msg.baselines.add(**b)
    trading = report.get("trading")
    if trading is not None:
        t = msg.trading
        t.cost_ticks = trading["cost_ticks"]
        t.fee_bps = trading.get("fee_bps", 0.0)
        t.signals = trading["signals"]
        t.trades = trading["trades"]
        t.signals_per_1000_ticks = trading["signals_per_1000_ticks"]
        t.all.CopyFrom(pb.EvaluationReport.TradingBucket(**trading["all"]))
        for group in ("by_strength", "by_risk", "by_action", "baselines", "one_position_baselines"):
            for key, bucket in trading.get(group, {}).items():
                getattr(t, group)[key].CopyFrom(pb.EvaluationReport.TradingBucket(**bucket))
        for group in ("one_position_all", "one_position_strong"):
            if group in trading:
                getattr(t, group).CopyFrom(pb.EvaluationReport.TradingBucket(**trading[group]))
        for index, ts, pnl_ticks, pnl_price in trading["cumulative_pnl"]:
            t.cumulative_pnl.add(
                tick_index=index, timestamp_ns=ts, cumulative_pnl_ticks=pnl_ticks, cumulative_pnl_price=pnl_price
            )
    return msg


# --- for clients: the canonical tick file -> messages ------------------------------------


def tick_to_proto(tick: Tick) -> pb.Tick:
    """As `tickserve_proto.contract.tick_message` (aggressor +1 -> SIDE_BUY, -1 -> SIDE_SELL, 0 -> unset); an
    undefined Side number carried from the wire (`aggressor_from_proto`) goes back as that number."""
    number = unknown_side_number(tick.aggressor) if tick.aggressor not in AGGRESSOR_NAMES else None
    if number is None:
        return tick_message(tick)
    msg = tick_message(replace(tick, aggressor=AGGRESSOR_NONE))
    msg.aggressor = number
    return msg


def frame_to_protos(frame: TickFrame) -> list[pb.Tick]:
    return [tick_to_proto(t) for t in frame.ticks()]
