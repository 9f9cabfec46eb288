"""The server's signal log, read-only: the signals the server actually served.

The dashboard is a client and may not import the server (tickserve.serving), so this reads the
SQLite file itself with the standard library, opened read-only (`mode=ro`: it can never write to
or lock out the server's writer; the log is in WAL mode, so reading never blocks it).

Schema dependency: the `signals` table that tickserve/serving/signal_log.py creates, of which
these columns are read: id, served_at_ns, rpc, instrument, timestamp_ns, sequence, model,
model_version, p_sell, p_hold, p_buy, edge_score, confidence, action, strength, urgency, risk,
warmed_up, latency_us. The filters and the order are those of `query_signals` there (oldest
tick first; `newest` = the last `limit` rows); tests/test_dashboard_apptest.py checks that both
return the same rows, so a change to the schema fails there rather than here at run time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

LOG_COLUMNS = [
    "id",
    "served_at_ns",
    "rpc",
    "instrument",
    "timestamp_ns",
    "sequence",
    "model",
    "model_version",
    "p_sell",
    "p_hold",
    "p_buy",
    "edge_score",
    "confidence",
    "action",
    "strength",
    "urgency",
    "risk",
    "warmed_up",
    "latency_us",
]


def read_signal_log(
    path: str | Path,
    *,
    instrument: str = "",
    model: str = "",
    limit: int = 1_000,
    newest: bool = True,
) -> pd.DataFrame:
    """Logged signals matching the given filters ("" = any), oldest tick first: the last `limit`
    of them (`newest`) or the first. Adds `time` (the tick's) and `served_at` as UTC timestamps."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no signal log at {path}")
    where, args = [], []
    for column, value in (("instrument", instrument), ("model", model)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM signals"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY timestamp_ns DESC, id DESC LIMIT ?" if newest else " ORDER BY timestamp_ns, id LIMIT ?"
    args.append(int(limit))
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(sql, args).fetchall()
    finally:
        conn.close()
    df = pd.DataFrame(rows[::-1] if newest else rows, columns=LOG_COLUMNS)
    # sequence: NULL (no sequence) stays missing rather than turning the column into floats
    df["sequence"] = df["sequence"].astype("Int64")
    df["warmed_up"] = df["warmed_up"].astype(bool)
    df.insert(0, "time", pd.to_datetime(df["timestamp_ns"], unit="ns", utc=True))
    df.insert(1, "served_at", pd.to_datetime(df["served_at_ns"], unit="ns", utc=True))
    return df
