"""Model Performance: Evaluate on a chosen data set, with a progress bar fed by the progress messages."""

from __future__ import annotations

import grpc
import pandas as pd
import streamlit as st

from . import datalayer as dl
from . import figures
from . import report_fields as rf
from .widgets import Context, load_frame_or_error, model_picker, show_rpc_error, tick_source_input

RESULT_KEY = "evaluation"
IMPORTANCE_KEY = "importance"  # {(model, version): DataFrame}, shared with the Feature Analysis tab


def remember_importance(run: dl.EvaluationRun, requested_version: str) -> None:
    if run.report is None:
        return
    df = rf.importance(run.report)
    store = st.session_state.setdefault(IMPORTANCE_KEY, {})
    store[(run.model, run.version)] = df
    if not requested_version:
        store[(run.model, "")] = df


def evaluate(
    ctx: Context, model: str, version: str, source: dl.TickSource, cost_ticks: float = 0.0
) -> dl.EvaluationRun | None:
    frame = load_frame_or_error(source)
    if frame is None:
        return None
    total = len(frame)
    bar = st.progress(0.0, text=f"Sending {total:,} ticks to Evaluate …")

    def on_progress(row: dict) -> None:
        bar.progress(
            row["fraction"],
            text=f"{row['ticks']:,} / {total:,} ticks · {row['labeled']:,} labeled · "
            f"running accuracy {row['accuracy']:.3f}",
        )

    try:
        run = dl.run_evaluate(
            ctx.client,
            frame,
            model=model,
            version=version,
            source=source.describe(),
            cost_ticks=cost_ticks,
            on_progress=on_progress,
        )
    except (grpc.RpcError, ValueError) as e:
        bar.empty()
        show_rpc_error("Evaluate", e)
        return None
    bar.progress(1.0, text=f"Done: {total:,} ticks in {run.seconds:.2f} s")
    if run.report is None:
        st.error("Evaluate ended without a report.")
        return None
    remember_importance(run, version)
    return run


def _extra_view(extra: rf.Extra, key: str) -> None:
    if extra.kind == "scalar":
        st.metric(extra.path, rf.fmt(extra.value))
    elif extra.kind == "series":
        st.line_chart(extra.value, height=200)
    elif extra.kind == "table":
        st.dataframe(extra.value, hide_index=True, key=key)
    elif extra.kind == "map":
        st.dataframe(pd.Series(extra.value, name="value").rename_axis("key").reset_index(), hide_index=True, key=key)
    else:
        st.write(f"**{extra.path}**: {extra.value}")


HEADLINE = (
    ("hit_rate", "Hit rate"),
    ("trades", "Trades"),
    ("total_pnl_ticks", "Total P&L (ticks)"),
    ("mean_pnl_ticks", "Mean P&L per trade (ticks)"),
    ("signals_per_1000_ticks", "Signals per 1,000 ticks"),
    ("cost_ticks", "Cost per round trip (ticks)"),
)


def _trading_view(trading: rf.Trading) -> None:
    shown = [(name, label, trading.value(name)) for name, label in HEADLINE if trading.value(name) is not None]
    if not shown:
        shown = [(m, m, v) for m, v in zip(trading.metrics["metric"], trading.metrics["value"])][:6]
    if shown:
        cols = st.columns(len(shown))
        for col, (name, label, value) in zip(cols, shown):
            if name == "hit_rate":
                text = f"{value:.1%}"
            elif name == "trades" or float(value).is_integer():
                text = f"{int(value):,}"
            else:
                text = rf.fmt(float(value), 2)
            col.metric(label, text)
    if trading.pnl is not None:
        left, right = st.columns([1, 4])
        y = left.radio(
            "P&L in",
            trading.pnl_columns,
            key="perf_pnl_unit",
            format_func=lambda c: c.replace("cumulative_pnl_", "").replace("_", " "),
        )
        axes = ["x", "time"] if "time" in trading.pnl else ["x"]
        x = left.radio("Against", axes, key="perf_pnl_x", format_func={"x": "tick index", "time": "time"}.get)
        right.plotly_chart(figures.pnl_figure(trading.pnl, y, x), key="perf_pnl")
    if trading.buckets is not None and len(trading.buckets):
        left, right = st.columns(2)
        left.dataframe(trading.buckets, hide_index=True, key="perf_buckets")
        if "hit_rate" in trading.buckets:
            right.plotly_chart(figures.buckets_figure(trading.buckets), key="perf_buckets_chart")
    if len(trading.metrics):
        with st.expander("All trading figures"):
            st.dataframe(trading.metrics, hide_index=True, key="perf_trading_table")
    for i, extra in enumerate(trading.other):
        st.markdown(f"**{extra.path}**")
        _extra_view(extra, f"perf_trading_{i}")


def render_report(run: dl.EvaluationRun) -> None:
    report = run.report
    s = rf.summary(report)
    st.success(
        f"{s.get('model', run.model)} v{s.get('model_version', run.version)} on {run.source}: "
        f"{s.get('ticks', 0):,} ticks, {s.get('labeled', 0):,} labeled, {run.seconds:.2f} s"
    )
    a, b, c, d = st.columns(4)
    baseline = s.get("majority_baseline_accuracy")
    delta = None
    if baseline is not None and "accuracy" in s:
        delta = f"{100 * (s['accuracy'] - baseline):+.2f} pts vs majority"
    a.metric("Accuracy", rf.fmt(s.get("accuracy", float("nan"))), delta=delta)
    b.metric("Macro F1", rf.fmt(s.get("macro_f1", float("nan"))))
    c.metric("Log loss", rf.fmt(s.get("log_loss", float("nan"))))
    d.metric(
        f"Majority baseline ({s.get('majority_class', '?')})",
        rf.fmt(baseline if baseline is not None else float("nan")),
    )

    all_extras = rf.extras(report)
    left, right = st.columns(2)
    with left:
        normalized = st.toggle("Normalize rows", key="perf_normalize")
        matrix = rf.confusion(report, normalize=normalized)
        if matrix is None:
            st.info("The report has no confusion matrix.")
        else:
            st.plotly_chart(figures.confusion_figure(matrix, normalized), key="perf_confusion")
    with right:
        per_class = rf.per_class(report)
        if len(per_class):
            st.plotly_chart(figures.per_class_figure(per_class), key="perf_per_class")
            st.dataframe(per_class, hide_index=True, key="perf_per_class_table")

    st.markdown("#### Calibration")
    cal = rf.calibration(report, all_extras)
    left, right = st.columns(2)
    with left:
        if cal.reliability is not None and len(cal.reliability):
            st.plotly_chart(figures.reliability_figure(cal.reliability), key="perf_reliability")
        elif len(cal.scores):
            st.plotly_chart(figures.calibration_scores_figure(cal.scores), key="perf_calibration")
        else:
            st.info("The report has no calibration figures.")
    with right:
        if len(cal.scores):
            st.dataframe(cal.scores, hide_index=True, key="perf_calibration_table")
        if cal.temperature is not None:
            st.caption(f"Temperature applied after the adapter: {cal.temperature:.4f} (1 = no calibration)")
        if cal.reliability is None:
            st.caption(
                "No reliability bins in this report: Brier score and expected calibration error (top-label, "
                "10 bins) before and after temperature scaling."
            )

    st.markdown("#### Baselines")
    base = rf.baselines(report, all_extras)
    left, right = st.columns(2)
    left.dataframe(base, hide_index=True, key="perf_baselines")
    if "accuracy" in base and base["accuracy"].notna().sum() > 1:
        right.plotly_chart(figures.baselines_figure(base), key="perf_baselines_chart")

    st.markdown("#### Trading metrics")
    trading = rf.trading(report, all_extras)
    if not trading.present:
        st.caption("This server's report carries no trading metrics (hit rate, P&L).")
    else:
        _trading_view(trading)

    st.markdown("#### Signals by action, strength and risk")
    cols = st.columns(3)
    for col, (name, series) in zip(cols, rf.counts(report).items()):
        col.plotly_chart(figures.counts_figure(series, f"by {name}"), key=f"perf_counts_{name}")
    if len(run.progress) > 1:
        st.plotly_chart(figures.progress_figure(run.progress), key="perf_progress")
    others = rf.other_fields(report, all_extras)
    if others:
        with st.expander(f"Other report fields ({len(others)})"):
            for i, extra in enumerate(others):
                _extra_view(extra, f"perf_other_{i}")


def render(ctx: Context) -> None:
    st.subheader("Model performance")
    st.caption(
        "Evaluate labels the ticks themselves (mid move over the model's horizon) and answers with progress "
        "messages, then one report."
    )
    picked = model_picker(ctx, "perf")
    source = tick_source_input("perf", default_n=10_000, default_seed=3)
    cost = 0.0
    if ctx.client is not None and dl.supports_cost_ticks(ctx.client):
        cost = st.number_input(
            "Trading cost per round trip (ticks, on top of the spread)",
            min_value=0.0,
            value=0.0,
            step=0.5,
            key="perf_cost",
        )
    if st.button("Run evaluation", type="primary", key="perf_run", disabled=picked is None or ctx.client is None):
        run = evaluate(ctx, picked[0], picked[1], source, float(cost))
        if run is not None:
            st.session_state[RESULT_KEY] = run
    run: dl.EvaluationRun | None = st.session_state.get(RESULT_KEY)
    if run is None or run.report is None:
        st.info("Pick a model and a data set, then run an evaluation.")
        return
    render_report(run)
