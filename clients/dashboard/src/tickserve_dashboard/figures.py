"""Plotly figures from the data layer's DataFrames. Pure functions: data in, figure out."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

ACTION_COLORS = {"BUY": "#2ca02c", "HOLD": "#7f7f7f", "SELL": "#d62728"}
_LAYOUT = {
    "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0, "title": None},
}


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(title=title, height=height, **_LAYOUT)
    return fig


# Signal markers sit on the mid line they annotate, so they are kept small, semi-transparent and
# drawn beneath the lines (traces are drawn in order): the mid and microprice stay readable even
# where a marker falls on every tick.
STRENGTH_SIZES = {"WEAK": 5, "MEDIUM": 7, "STRONG": 10}
MARKER_OPACITY = 0.45


def price_figure(signals: pd.DataFrame, instrument: str, *, window: int = 0) -> go.Figure:
    """Mid and microprice of one instrument over BUY/SELL markers sized by strength."""
    df = signals[signals["instrument"] == instrument]
    if window:
        df = df.tail(window)
    fig = go.Figure()
    for action, symbol in (("BUY", "triangle-up"), ("SELL", "triangle-down")):
        marks = df[df["action"] == action]
        fig.add_trace(
            go.Scatter(
                x=marks["time"],
                y=marks["mid"],
                mode="markers",
                name=action,
                legendrank=1002,  # listed after the price lines, though drawn before them
                opacity=MARKER_OPACITY,
                marker={
                    "symbol": symbol,
                    "color": ACTION_COLORS[action],
                    "size": [STRENGTH_SIZES.get(s, 6) for s in marks["strength"]],
                    "line": {"width": 0},
                },
                customdata=marks[["strength", "confidence", "edge", "risk"]].to_numpy() if len(marks) else None,
                hovertemplate=f"{action} %{{customdata[0]}}<br>mid %{{y}}<br>confidence %{{customdata[1]:.3f}}"
                "<br>edge %{customdata[2]:+.3f}<br>risk %{customdata[3]}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=df["time"],
            y=df["mid"],
            mode="lines",
            name="mid",
            legendrank=1000,
            line={"color": "#1f77b4", "width": 1.5},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=df["time"],
            y=df["microprice"],
            mode="lines",
            name="microprice",
            legendrank=1001,
            line={"color": "#ff7f0e", "width": 1, "dash": "dot"},
        )
    )
    fig.update_yaxes(title="price")
    return _layout(fig, f"{instrument}: mid, microprice and signals (marker size = strength)", 420)


def served_signals_figure(log: pd.DataFrame) -> go.Figure:
    """Signals from the server's signal log: edge (p_buy - p_sell) per tick time, one colour per action."""
    fig = go.Figure()
    for action in ("BUY", "HOLD", "SELL"):
        rows = log[log["action"] == action]
        fig.add_trace(
            go.Scatter(
                x=rows["time"],
                y=rows["edge_score"],
                mode="markers",
                name=action,
                opacity=0.7,
                marker={"color": ACTION_COLORS[action], "size": 5},
                customdata=rows[["instrument", "model", "model_version", "rpc", "confidence"]].to_numpy()
                if len(rows)
                else None,
                hovertemplate=f"{action} %{{customdata[0]}}<br>edge %{{y:+.3f}}<br>confidence %{{customdata[4]:.3f}}"
                "<br>%{customdata[1]} v%{customdata[2]} via %{customdata[3]}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line_dash="dot", line_color="#999")
    fig.update_yaxes(title="edge (p_buy - p_sell)")
    return _layout(fig, "Served signals (signal log): edge per tick", 340)


def counts_figure(counts: pd.Series, title: str) -> go.Figure:
    df = counts.rename_axis("name").reset_index(name="count")
    colors = [ACTION_COLORS.get(n, None) for n in df["name"]]
    fig = go.Figure(
        go.Bar(x=df["name"], y=df["count"], marker_color=[c or "#636efa" for c in colors], text=df["count"])
    )
    return _layout(fig, title, 260)


def confusion_figure(matrix: pd.DataFrame, normalized: bool = False) -> go.Figure:
    fig = px.imshow(
        matrix,
        text_auto=".2f" if normalized else True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "true", "color": "share of row" if normalized else "ticks"},
        aspect="auto",
    )
    return _layout(fig, "Confusion matrix (rows: true class, columns: predicted)", 380)


def per_class_figure(per_class: pd.DataFrame) -> go.Figure:
    cols = [c for c in ("precision", "recall", "f1") if c in per_class]
    df = per_class.melt(id_vars="label", value_vars=cols, var_name="metric", value_name="value")
    fig = px.bar(df, x="label", y="value", color="metric", barmode="group", range_y=[0, 1])
    fig.update_xaxes(title="")
    return _layout(fig, "Per-class precision, recall and F1", 320)


def progress_figure(progress: pd.DataFrame) -> go.Figure:
    fig = px.line(progress, x="ticks", y="accuracy", markers=True)
    return _layout(fig, "Running accuracy during the evaluation", 260)


def calibration_scores_figure(scores: pd.DataFrame) -> go.Figure:
    df = scores.melt(id_vars="metric", var_name="probabilities", value_name="value").dropna()
    fig = px.bar(df, x="metric", y="value", color="probabilities", barmode="group", text_auto=".4f")
    fig.update_xaxes(title="")
    return _layout(fig, "Calibration: before / after", 320)


def reliability_figure(bins: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "#999"}))
    size = None
    if "count" in bins and bins["count"].max() > 0:
        size = (6 + 18 * bins["count"] / bins["count"].max()).tolist()
    fig.add_trace(
        go.Scatter(
            x=bins["confidence"], y=bins["accuracy"], mode="lines+markers", name="model", marker={"size": size or 8}
        )
    )
    fig.update_xaxes(title="confidence (mean predicted probability)", range=[0, 1])
    fig.update_yaxes(title="observed accuracy", range=[0, 1])
    return _layout(fig, "Reliability diagram", 380)


def pnl_figure(pnl: pd.DataFrame, y: str = "cumulative_pnl", x: str = "x") -> go.Figure:
    fig = px.line(pnl, x=x, y=y, markers=len(pnl) < 60)
    fig.add_hline(y=0, line_dash="dot", line_color="#999")
    fig.update_xaxes(title="tick index" if x == "x" else x)
    fig.update_yaxes(title=y)
    return _layout(fig, f"Cumulative P&L ({y})", 340)


def buckets_figure(buckets: pd.DataFrame, value: str = "hit_rate") -> go.Figure:
    fig = px.bar(
        buckets, x="name", y=value, facet_col="group", color="group", text_auto=".2f" if value == "hit_rate" else ".1f"
    )
    fig.update_xaxes(matches=None, title="")
    fig.for_each_annotation(lambda a: a.update(text="by " + a.text.split("=", 1)[-1]))
    fig.update_layout(showlegend=False)
    if value == "hit_rate":
        fig.add_hline(y=0.5, line_dash="dot", line_color="#999")
    return _layout(fig, f"{value.replace('_', ' ')} by action, risk and strength", 320)


def baselines_figure(baselines: pd.DataFrame) -> go.Figure:
    fig = px.bar(baselines.dropna(subset=["accuracy"]), x="name", y="accuracy", text_auto=".3f")
    fig.update_xaxes(title="")
    return _layout(fig, "Accuracy: model vs baselines", 300)


def importance_figure(importance: pd.DataFrame, top: int = 20) -> go.Figure:
    df = importance.head(top).iloc[::-1]
    fig = px.bar(df, x="importance", y="feature", orientation="h")
    title = f"Feature importance (top {min(top, len(importance))} of {len(importance)})"
    return _layout(fig, title, max(300, 22 * len(df) + 80))


def feature_time_figure(values: pd.DataFrame, features: list[str], instrument: str) -> go.Figure:
    """One panel per feature (each its own scale), over time."""
    long = values.melt(id_vars="time", value_vars=features, var_name="feature", value_name="value")
    fig = px.line(long, x="time", y="value", facet_row="feature", height=max(260, 170 * len(features)))
    fig.update_yaxes(matches=None, title="")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    fig.update_layout(title=f"{instrument}: feature values over time", margin=_LAYOUT["margin"])
    return fig


def feature_distribution_figure(values: pd.DataFrame, feature: str) -> go.Figure:
    fig = px.histogram(
        values,
        x=feature,
        color="action",
        barmode="overlay",
        histnorm="probability density",
        opacity=0.6,
        color_discrete_map=ACTION_COLORS,
        category_orders={"action": ["BUY", "HOLD", "SELL"]},
        nbins=50,
    )
    return _layout(fig, f"Distribution of {feature} by predicted class", 340)
