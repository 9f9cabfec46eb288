"""Feature Analysis: importance from the evaluation report, feature values over time (return_features)
and their distributions per predicted class."""

from __future__ import annotations

import grpc
import pandas as pd
import streamlit as st

from . import datalayer as dl
from . import figures
from . import report_fields as rf
from .tab_live import RESULT_KEY as LIVE_KEY
from .tab_performance import IMPORTANCE_KEY
from .widgets import Context, load_frame_or_error, model_picker, show_rpc_error, tick_source_input

DATA_KEY = "feature_data"
IMPORTANCE_TICKS = 1_000  # a short Evaluate: importance is a property of the model, not of the data


def fetch_importance(ctx: Context, model: str, version: str) -> pd.DataFrame | None:
    """The model's feature importance, from the report of a short Evaluate on simulated ticks."""
    frame = dl.load_frame(dl.TickSource("simulator", n=IMPORTANCE_TICKS, seed=0))
    try:
        run = dl.run_evaluate(ctx.client, frame, model=model, version=version, source="importance")
    except grpc.RpcError as e:
        show_rpc_error("Evaluate (for the feature importance)", e)
        return None
    if run.report is None:
        return None
    df = rf.importance(run.report)
    store = st.session_state.setdefault(IMPORTANCE_KEY, {})
    store[(run.model, run.version)] = df
    store[(model, version)] = df
    return df


def feature_values(result: dl.LiveResult) -> pd.DataFrame | None:
    """Signals joined with the features that came back with them."""
    if result is None or result.features is None or not len(result.features):
        return None
    base = result.signals[["tick", "instrument", "time", "action", "strength", "confidence", "edge"]]
    features = result.features.loc[:, ~result.features.columns.isin(base.columns)]
    return pd.concat([base, features], axis=1)


def _importance_section(ctx: Context, picked: tuple[str, str]) -> pd.DataFrame | None:
    st.markdown("#### Feature importance")
    model, version = picked
    store = st.session_state.get(IMPORTANCE_KEY, {})
    importance = store.get((model, version))
    if st.button(
        "Fetch importance",
        key="feat_fetch_importance",
        help=f"runs Evaluate on {IMPORTANCE_TICKS:,} simulated ticks and reads the report's importance",
    ):
        importance = fetch_importance(ctx, model, version)
    if importance is None:
        st.info("No importance yet for this model: run an evaluation on Model Performance, or fetch it here.")
        return None
    if not len(importance):
        st.info(f"{model} reports no feature importance (its adapter does not provide it).")
        return importance
    top = st.slider(
        "Show the top", min_value=5, max_value=max(5, len(importance)), value=min(20, len(importance)), key="feat_top"
    )
    st.plotly_chart(figures.importance_figure(importance, top), key="feat_importance")
    return importance


def render(ctx: Context) -> None:
    st.subheader("Feature analysis")
    picked = model_picker(ctx, "feat")
    if picked is None:
        return
    importance = _importance_section(ctx, picked)

    st.markdown("#### Feature values")
    st.caption(
        "Values the server computed for the model (StreamSignals with return_features): from the last live "
        "stream that returned them, or collect a fresh stream for the model chosen above."
    )
    with st.expander("Collect feature values", expanded=st.session_state.get(DATA_KEY) is None):
        source = tick_source_input("feat", default_n=1_500, default_seed=4)
        if st.button("Stream with features", key="feat_collect", disabled=ctx.client is None):
            frame = load_frame_or_error(source)
            if frame is not None:
                with st.spinner(f"Streaming {len(frame):,} ticks …"):
                    try:
                        result = dl.run_stream(
                            ctx.client,
                            frame,
                            model=picked[0],
                            version=picked[1],
                            return_features=True,
                            batch_size=100,
                            source=source.describe(),
                        )
                    except grpc.RpcError as e:
                        show_rpc_error("StreamSignals", e)
                        result = None
                if result is not None:
                    st.session_state[DATA_KEY] = result
    result: dl.LiveResult | None = st.session_state.get(DATA_KEY) or st.session_state.get(LIVE_KEY)
    values = feature_values(result)
    if values is None:
        st.info("No feature values yet: stream with features here or on Live Inference.")
        return
    names = [c for c in result.features.columns if c in values.columns]
    st.caption(
        f"{len(values):,} signals from {result.model} v{result.version} ({result.source}), {len(names)} features each."
    )
    instruments = sorted(set(values["instrument"]))
    left, right = st.columns([1, 3])
    instrument = left.selectbox("Instrument", instruments, key="feat_instrument")
    ranked = [f for f in (importance["feature"].tolist() if importance is not None else []) if f in names]
    default = (ranked or names)[:3]
    # keyed on whether the importance is known, so the defaults switch to the top features once it is
    chosen = right.multiselect("Features", names, default=default, key=f"feat_chosen_{bool(ranked)}")
    if chosen:
        subset = values[values["instrument"] == instrument]
        st.plotly_chart(figures.feature_time_figure(subset, chosen, instrument), key="feat_time")

    st.markdown("#### Distribution per predicted class")
    left, right = st.columns([1, 3])
    feature = left.selectbox(
        "Feature", ranked + [n for n in names if n not in ranked], key=f"feat_dist_feature_{bool(ranked)}"
    )
    scope = left.radio("Ticks", ["all instruments", "chosen instrument"], key="feat_dist_scope")
    data = values if scope == "all instruments" else values[values["instrument"] == instrument]
    right.plotly_chart(figures.feature_distribution_figure(data, feature), key="feat_dist")
    stats = data.groupby("action")[feature].agg(["count", "mean", "std", "min", "max"]).reset_index()
    st.dataframe(stats, hide_index=True, key="feat_dist_table")
