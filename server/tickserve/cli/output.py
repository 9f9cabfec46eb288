"""Human-readable lines for signals and reports (the CLI and the demo share them)."""

from __future__ import annotations

from datetime import UTC, datetime

from tickserve_proto.v1 import tickserve_pb2 as pb


def _name(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)


def signal_header() -> str:
    return (
        f"{'TIME (UTC)':15s} {'INSTR':6s} {'SEQ':>6s} {'ACTION':6s} {'P_BUY':>6s} {'P_HOLD':>6s} "
        f"{'P_SELL':>6s} {'EDGE':>6s} {'STRENGTH':8s} {'URGENCY':10s} RISK"
    )


def format_signal(s: pb.Signal) -> str:
    when = datetime.fromtimestamp(s.timestamp_ns / 1e9, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
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
        f"{'BRIER raw->cal':>15s} {'ECE raw->cal':>15s} {'STRONG':>7s} {'WIN':>6s} {'P&L TICKS':>10s} {'P&L BPS':>8s}"
    ]
    for r in reports:
        strong = r.trading.one_position_strong if r.HasField("trading") else None
        trading = (
            f" {strong.trades:7d} {strong.win_rate:6.3f} {strong.total_pnl_ticks:+10.1f} {strong.total_pnl_bps:+8.2f}"
            if strong is not None
            else f" {'-':>7s} {'-':>6s} {'-':>10s} {'-':>8s}"
        )
        lines.append(
            f"{r.model:18s} {r.model_version:7s} {r.accuracy:8.4f} {r.majority_baseline_accuracy:8.4f} "
            f"{r.macro_f1:8.4f} {r.log_loss:8.4f} {r.brier_score_uncalibrated:7.4f}->{r.brier_score:.4f} "
            f"{r.expected_calibration_error_uncalibrated:7.4f}->{r.expected_calibration_error:.4f}" + trading
        )
    if reports and reports[0].baselines:
        first = reports[0]
        for b in first.baselines:
            lines.append(
                f"{'baseline ' + b.name:18s} {'':7s} {b.accuracy:8.4f} {'':8s} {b.macro_f1:8.4f}   ({b.description})"
            )
        lines.append(
            f"(same {first.labeled} labeled ticks for every row; STRONG: one position per instrument on the "
            f"STRONG BUY/SELL signals, held to the label tick: trades, win rate and total P&L after the "
            f"spread, {first.trading.cost_ticks:g} ticks and {first.trading.fee_bps:g} bps per round trip)"
        )
    return "\n".join(lines)


def format_report(r: pb.EvaluationReport) -> str:
    lines = [
        f"evaluation of {r.model}/{r.model_version}: {r.ticks} ticks, {r.labeled} labeled",
        f"  accuracy {r.accuracy:.4f}   macro-F1 {r.macro_f1:.4f}   log loss {r.log_loss:.4f}",
        f"  majority-class baseline ({r.majority_class}) accuracy {r.majority_baseline_accuracy:.4f} (the model's "
        "actions trade accuracy for macro-F1 where most ticks are HOLD: judge it on macro-F1 against the baselines "
        "below)",
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
    lines.extend(format_baselines(r))
    lines.extend(format_trading(r))
    return "\n".join(lines)


def _horizon(r: pb.EvaluationReport) -> str:
    lc = r.label_config
    if lc.horizon_ns:
        from tickserve.evaluation.labels import format_duration_ns

        horizon = f"horizon {format_duration_ns(lc.horizon_ns)}"
    else:
        horizon = f"horizon {lc.horizon_ticks} ticks"
    if lc.mode == "taker":
        return f"taker labels, {horizon}, cost {lc.cost_ticks:g} ticks beyond the spread"
    return f"mid labels, {horizon}, threshold {lc.threshold_ticks:g} ticks"


def format_baselines(r: pb.EvaluationReport) -> list[str]:
    if not r.baselines:
        return []
    lines = [
        f"  model vs baselines on the same {r.labeled} labeled ticks ({_horizon(r)}):",
        f"    {'':34s} {'accuracy':>8s} {'macro-F1':>8s}",
        f"    {'model ' + r.model:34s} {r.accuracy:8.4f} {r.macro_f1:8.4f}",
    ]
    for b in r.baselines:
        name = f"majority (always {r.majority_class})" if b.name == "majority" else b.name
        lines.append(f"    {name:34s} {b.accuracy:8.4f} {b.macro_f1:8.4f}")
    best = max(r.baselines, key=lambda b: b.macro_f1)
    verdict = "beats" if r.macro_f1 > best.macro_f1 else "does NOT beat"
    lines.append(
        f"    -> macro-F1: the model {verdict} the best baseline ({best.name}) by {r.macro_f1 - best.macro_f1:+.4f}"
    )
    return lines


def format_trading(r: pb.EvaluationReport) -> list[str]:
    if not r.HasField("trading"):
        return []
    t = r.trading
    lines = [
        f"  trading (docs/trading-metrics.md): {t.signals} BUY/SELL signals ({t.signals_per_1000_ticks:.1f} per 1,000 "
        f"ticks), {t.trades} round trips to the label tick; cost {t.cost_ticks:g} ticks + {t.fee_bps:g} bps per "
        "round trip, after crossing the spread",
        f"    {'signals':24s} {'trades':>7s} {'hit':>6s} {'win':>6s} {'move':>8s} {'P&L/trade':>9s} {'P&L ticks':>11s} "
        f"{'P&L bps':>9s}",
    ]

    def row(name: str, b) -> str:
        return (
            f"    {name:24s} {b.trades:7d} {b.hit_rate:6.3f} {b.win_rate:6.3f} {b.mean_move_ticks:+8.2f} "
            f"{b.mean_pnl_ticks:+9.2f} {b.total_pnl_ticks:+11.1f} {b.total_pnl_bps:+9.2f}"
        )

    lines.append("  one position per instrument, held to the label tick (what one account earns):")
    lines.append(row("model, every BUY/SELL", t.one_position_all))
    lines.append(row("model, STRONG", t.one_position_strong))
    for name in ("last_move", "imbalance"):
        if name in t.one_position_baselines:
            lines.append(row(f"baseline {name}", t.one_position_baselines[name]))
    lines.append("  every signal its own round trip (overlapping: the average edge of a signal):")
    lines.append(row("model, all", t.all))
    for group, keys, label in (
        ("by_strength", ("STRONG", "MEDIUM", "WEAK"), ""),
        ("by_risk", ("LOW", "MEDIUM", "HIGH"), "risk "),
        ("by_action", ("BUY", "SELL"), ""),
    ):
        for key in keys:
            if key in getattr(t, group):
                lines.append(row(label + key, getattr(t, group)[key]))
    for name in ("last_move", "imbalance"):
        if name in t.baselines:
            lines.append(row(f"baseline {name}", t.baselines[name]))
    if t.cumulative_pnl:
        last = t.cumulative_pnl[-1]
        lines.append(
            f"    (hit: the mid moved the signal's way; win: the round trip made money; move and P&L in "
            f"ticks; cumulative P&L series: {len(t.cumulative_pnl)} points, final "
            f"{last.cumulative_pnl_ticks:+.1f} ticks)"
        )
    return lines


def format_training(report) -> list[str]:
    """`tickserve train`'s summary of a `training.report.TrainingReport`: per fold, the model beside each
    baseline (macro-F1) and the one-position P&L, then every choice and loss in words."""
    lines = [
        f"  labels: {report.label}",
        f"  walk-forward, {len(report.folds)} folds (expanding window, purged; the last fold's model is the one "
        "written, its test span the held-out test span):",
        f"    {'fold':4s} {'train':>7s} {'test':>6s} {'model':>7s} {'majority':>8s} {'last_mv':>8s} "
        f"{'imbal.':>7s} {'margin':>7s}  {'STRONG trades / P&L ticks / bps / win':>37s}  {'w':>4s}",
    ]
    for k, f in enumerate(report.folds, start=1):
        s = f.test
        b = s.baselines
        st = s.trading["strong"]
        lines.append(
            f"    {k:<4d} {f.train_rows:7d} {s.rows:6d} {s.macro_f1:7.4f} {b['majority']['macro_f1']:8.4f} "
            f"{b['last_move']['macro_f1']:8.4f} {b['imbalance']['macro_f1']:7.4f} {s.margin:+7.4f}  "
            f"{st['trades']:9d} / {st['total_pnl_ticks']:+10.1f} / {st['total_pnl_bps']:+8.2f} / "
            f"{st['win_rate']:5.3f}  {f.action_weight:4g}"
        )
    mean = sum(f.test.margin for f in report.folds) / len(report.folds)
    lines.append(f"    mean macro-F1 margin over the best baseline: {mean:+.4f}")
    lines.extend(f"  - {n}" for n in report.sentences())
    return lines
