"""The Live tab's signal-log section: the signals the server actually served, read from its log.

A stream on this tab shows what the server answered this dashboard; the signal log has every
signal the server served to any client (StreamSignals, Predict, REST), with the model version
that answered. Read-only: see signal_log.py.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from . import datalayer as dl
from . import figures
from .signal_log import read_signal_log

RESULT_KEY = "log_result"
DEFAULT_PATH = ".tickserve/signals.db"  # the server's default [signal_log] path, relative to where it runs
TABLE_COLUMNS = [
    "time",
    "instrument",
    "sequence",
    "action",
    "strength",
    "urgency",
    "risk",
    "confidence",
    "edge_score",
    "p_buy",
    "p_hold",
    "p_sell",
    "model",
    "model_version",
    "rpc",
    "served_at",
    "latency_us",
    "warmed_up",
]


@dataclass
class LogRead:
    signals: pd.DataFrame
    path: str
    filters: str


def _read(path: str, instrument: str, model: str, limit: int) -> LogRead | None:
    try:
        signals = read_signal_log(path, instrument=instrument, model=model, limit=limit)
    except (OSError, sqlite3.Error) as e:  # sqlite3.Error: not a signal log, or a schema this reader does not know
        st.error(f"Could not read the signal log {path}: {type(e).__name__}: {e}")
        return None
    filters = ", ".join(f"{k} {v}" for k, v in (("instrument", instrument), ("model", model)) if v) or "no filter"
    return LogRead(signals, path, filters)


def render() -> None:
    st.divider()
    st.markdown("**Signals the server served** (its signal log, read-only)")
    st.caption(
        "Every signal the server answered to any client, as it logged it (`tickserve serve --signal-log`, "
        f"default {DEFAULT_PATH} where the server runs). The file is opened read-only."
    )
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    path = c1.text_input("Signal log (SQLite file)", value=DEFAULT_PATH, key="log_path").strip()
    instrument = c2.text_input("Instrument", key="log_instrument", placeholder="all").strip()
    model = c3.text_input("Model", key="log_model", placeholder="all").strip()
    limit = int(c4.number_input("Newest N", min_value=1, max_value=1_000_000, value=1_000, step=500, key="log_limit"))
    if st.button("Read signal log", key="log_read", disabled=not path):
        read = _read(path, instrument, model, limit)
        if read is not None:
            st.session_state[RESULT_KEY] = read
    read: LogRead | None = st.session_state.get(RESULT_KEY)
    if read is None:
        return
    signals = read.signals
    st.success(f"{len(signals):,} newest logged signals from {read.path} ({read.filters})")
    if not len(signals):
        return
    cols = st.columns(3)
    for col, action in zip(cols, dl.ACTIONS):
        col.metric(f"Served {action}", f"{int((signals['action'] == action).sum()):,}")
    st.plotly_chart(figures.served_signals_figure(signals), key="log_served")
    newest_first = signals.iloc[::-1][TABLE_COLUMNS].reset_index(drop=True)
    st.dataframe(newest_first, hide_index=True, height=320, key="log_table")
