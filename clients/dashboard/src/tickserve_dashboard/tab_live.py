"""Live Inference: stream ticks through StreamSignals and watch prices, signals and counts update."""

from __future__ import annotations

import grpc
import pandas as pd
import streamlit as st

from . import datalayer as dl
from . import figures, signal_log_view
from .widgets import Context, load_frame_or_error, model_picker, show_rpc_error, tick_source_input

RESULT_KEY = "live_result"
TABLE_COLUMNS = [
    "tick",
    "instrument",
    "time",
    "action",
    "strength",
    "urgency",
    "risk",
    "confidence",
    "edge",
    "p_buy",
    "p_hold",
    "p_sell",
    "mid",
    "microprice",
    "warmed_up",
]
LIVE_WINDOW = 600  # points of the price chart while streaming (the final chart shows all)


def latest_signals(signals: pd.DataFrame, n: int = 25) -> pd.DataFrame:
    """The newest `n` signals, newest first."""
    return signals.tail(n).iloc[::-1][[c for c in TABLE_COLUMNS if c in signals]].reset_index(drop=True)


def _draw(result: dl.LiveResult, instrument: str, key: str, *, window: int = 0, final: bool = False) -> None:
    signals = result.signals
    a, b, c, d = st.columns(4)
    a.metric("Ticks answered", f"{result.ticks_sent:,}")
    b.metric("Signals", f"{len(signals):,}")
    c.metric("Tick errors", f"{len(result.errors):,}")
    d.metric("Rate", f"{result.rate:,.0f} ticks/s")
    if len(signals) and instrument:
        st.plotly_chart(figures.price_figure(signals, instrument, window=window), key=f"{key}_price")
    counts = dl.signal_counts(signals)
    cols = st.columns(3)
    for col, (name, series) in zip(cols, counts.items()):
        col.plotly_chart(figures.counts_figure(series, f"Signals by {name}"), key=f"{key}_counts_{name}")
    st.markdown("**Latest signals** (newest first)")
    st.dataframe(latest_signals(signals), hide_index=True, height=320, key=f"{key}_table" if final else None)
    if len(result.errors):
        with st.expander(f"{len(result.errors)} ticks rejected"):
            st.dataframe(result.errors, hide_index=True)


def _stream(ctx: Context, model: str, version: str, source: dl.TickSource, options: dict) -> dl.LiveResult | None:
    frame = load_frame_or_error(source)
    if frame is None:
        return None
    instruments = frame.instruments()
    wanted = st.session_state.get("live_instrument")
    instrument = wanted if wanted in instruments else (str(frame.instrument[0]) if len(frame) else "")
    bar = st.progress(0.0, text=f"Streaming {len(frame):,} ticks to {model or 'the default model'} …")
    area = st.empty()
    draws = [0]

    def on_update(collector: dl.LiveCollector) -> None:
        draws[0] += 1
        bar.progress(min(1.0, collector.count / max(1, len(frame))), text=f"{collector.count:,} / {len(frame):,} ticks")
        with area.container():
            _draw(collector.snapshot(), instrument, f"live_draw_{draws[0]}", window=LIVE_WINDOW)

    try:
        result = dl.run_stream(
            ctx.client,
            frame,
            model=model,
            version=version,
            return_features=options["features"],
            batch_size=options["batch"],
            pace=float(options["pace"]),
            source=source.describe(),
            on_update=on_update,
            update_every=options["refresh"],
        )
    except grpc.RpcError as e:
        bar.empty()
        area.empty()
        show_rpc_error("StreamSignals", e)
        return None
    bar.empty()
    area.empty()
    return result


def render(ctx: Context) -> None:
    st.subheader("Live inference")
    st.caption(
        "Ticks go through StreamSignals one message at a time; the server keeps per-instrument feature state "
        "for the stream's life. Microprice comes from the returned features when the model has it, "
        "else from the tick's best level."
    )
    picked = model_picker(ctx, "live")
    source = tick_source_input("live", default_n=1_500)
    c1, c2, c3, c4 = st.columns(4)
    options = {
        "batch": int(c1.number_input("Ticks per message", min_value=1, max_value=10_000, value=1, key="live_batch")),
        "refresh": int(
            c2.number_input(
                "Redraw every N ticks", min_value=10, max_value=100_000, value=250, step=50, key="live_refresh"
            )
        ),
        "pace": c3.number_input(
            "Pace, ticks/s (0 = full speed)", min_value=0, max_value=1_000_000, value=0, key="live_pace"
        ),
        "features": c4.checkbox(
            "Return features",
            value=True,
            key="live_features",
            help="fill Signal.features (used by the Feature Analysis tab)",
        ),
    }
    start = st.button("Start stream", type="primary", key="live_start", disabled=picked is None or ctx.client is None)
    if start and picked is not None:
        result = _stream(ctx, picked[0], picked[1], source, options)
        if result is not None:
            st.session_state[RESULT_KEY] = result
    _show_result(st.session_state.get(RESULT_KEY))
    signal_log_view.render()


def _show_result(result: dl.LiveResult | None) -> None:
    if result is None:
        st.info("Pick a model and a tick source, then start a stream.")
        return
    st.success(
        f"{result.ticks_sent:,} ticks from {result.source} → {result.model} v{result.version} "
        f"in {result.seconds:.2f} s ({result.rate:,.0f} ticks/s)"
    )
    instruments = sorted(set(result.signals["instrument"])) if len(result.signals) else []
    instrument = st.selectbox("Instrument", instruments, key="live_instrument") if instruments else ""
    _draw(result, instrument, "live_final", final=True)
