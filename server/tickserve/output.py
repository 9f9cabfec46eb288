"""Human-readable lines for signals and reports (the CLI and the demo share them)."""

from __future__ import annotations

from datetime import datetime, timezone

from tickserve_proto.v1 import tickserve_pb2 as pb


def _name(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)


def signal_header() -> str:
    return (
        f"{'TIME (UTC)':15s} {'INSTR':6s} {'SEQ':>6s} {'ACTION':6s} {'P_BUY':>6s} {'P_HOLD':>6s} "
        f"{'P_SELL':>6s} {'EDGE':>6s} {'STRENGTH':8s} {'URGENCY':10s} RISK"
    )


def format_signal(s: pb.Signal) -> str:
    when = datetime.fromtimestamp(s.timestamp_ns / 1e9, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    seq = str(s.sequence) if s.HasField("sequence") else "-"
    return (
        f"{when:15s} {s.instrument:6s} {seq:>6s} {_name(pb.Action, s.action, 'ACTION_'):6s} "
        f"{s.p_buy:6.3f} {s.p_hold:6.3f} {s.p_sell:6.3f} {s.edge_score:+6.3f} "
        f"{_name(pb.Strength, s.strength, 'STRENGTH_'):8s} {_name(pb.Urgency, s.urgency, 'URGENCY_'):10s} "
        f"{_name(pb.Risk, s.risk, 'RISK_')}"
    )


def format_error(e: pb.TickError) -> str:
    return f"tick {e.instrument} {e.timestamp_ns} rejected (code {e.code}): {e.message}"


def format_comparison(reports: list[pb.EvaluationReport]) -> str:
    """One line per model, same held-out ticks: the models side by side."""
    lines = [
        f"{'MODEL':18s} {'VERSION':7s} {'ACCURACY':>8s} {'BASELINE':>8s} {'MACRO-F1':>8s} {'LOG LOSS':>8s} "
        f"{'BRIER raw->cal':>15s} {'ECE raw->cal':>15s}"
    ]
    for r in reports:
        lines.append(
            f"{r.model:18s} {r.model_version:7s} {r.accuracy:8.4f} {r.majority_baseline_accuracy:8.4f} "
            f"{r.macro_f1:8.4f} {r.log_loss:8.4f} {r.brier_score_uncalibrated:7.4f}->{r.brier_score:.4f} "
            f"{r.expected_calibration_error_uncalibrated:7.4f}->{r.expected_calibration_error:.4f}"
        )
    return "\n".join(lines)


def format_report(r: pb.EvaluationReport) -> str:
    lines = [
        f"evaluation of {r.model}/{r.model_version}: {r.ticks} ticks, {r.labeled} labeled",
        f"  accuracy {r.accuracy:.4f}   macro-F1 {r.macro_f1:.4f}   log loss {r.log_loss:.4f}",
        f"  majority-class baseline ({r.majority_class}) accuracy {r.majority_baseline_accuracy:.4f}"
        f"   -> model {'beats' if r.accuracy > r.majority_baseline_accuracy else 'does NOT beat'} it"
        f" by {100 * (r.accuracy - r.majority_baseline_accuracy):+.2f} points",
        f"  {'class':6s} {'precision':>9s} {'recall':>7s} {'f1':>7s} {'support':>8s}",
    ]
    for c in r.per_class:
        lines.append(f"  {c.label:6s} {c.precision:9.4f} {c.recall:7.4f} {c.f1:7.4f} {c.support:8d}")
    n = len(r.classes)
    lines.append("  confusion (rows true, columns predicted): " + " ".join(f"{c:>6s}" for c in r.classes))
    for i, cls in enumerate(r.classes):
        row = r.confusion_matrix[i * n : (i + 1) * n]
        lines.append(f"  {'':41s}{cls:>6s} " + " ".join(f"{v:6d}" for v in row))
    for title, counts in (("actions", r.action_counts), ("strength", r.strength_counts), ("risk", r.risk_counts)):
        lines.append(f"  {title:9s}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(
        f"  calibration (temperature {r.calibration_temperature:.3f}): Brier {r.brier_score_uncalibrated:.4f} -> "
        f"{r.brier_score:.4f}, ECE {r.expected_calibration_error_uncalibrated:.4f} -> {r.expected_calibration_error:.4f}"
    )
    top = ", ".join(f"{f.feature} {f.importance:.3g}" for f in list(r.feature_importance)[:5])
    lines.append(f"  top features (importance): {top}")
    return "\n".join(lines)
