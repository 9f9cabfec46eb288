"""The signal log module: bounded non-blocking writes, WAL, nothing queued lost at close, queries."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tickserve.serving.signal_log import COLUMNS, GROUP_COMMIT_S, SignalLog, query_signals


def _row(i: int, instrument: str = "SIMA", model: str = "m", version: str = "1") -> tuple:
    values = {
        "served_at_ns": time.time_ns(),
        "rpc": "StreamSignals",
        "instrument": instrument,
        "timestamp_ns": 1_700_000_000_000_000_000 + i,
        "sequence": i,
        "model": model,
        "model_version": version,
        "p_sell": 0.2,
        "p_hold": 0.5,
        "p_buy": 0.3,
        "edge_score": 0.1,
        "confidence": 0.5,
        "action": "HOLD",
        "strength": "WEAK",
        "urgency": "PASSIVE",
        "risk": "LOW",
        "warmed_up": 1,
        "latency_us": 123.0,
    }
    return tuple(values[c] for c in COLUMNS)


def test_rows_written_in_wal_mode_and_queryable(tmp_path):
    path = tmp_path / "signals.db"
    log = SignalLog(path)
    for i in range(100):
        assert log.record([_row(i, "SIMA" if i % 2 else "SIMB")])
    log.close()
    assert log.stats.written_rows == 100 and log.stats.dropped_rows == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 100
    rows = query_signals(path, instrument="SIMA", limit=1000)
    assert [r["sequence"] for r in rows] == list(range(1, 100, 2))
    start = 1_700_000_000_000_000_000
    window = query_signals(path, start_ns=start + 10, end_ns=start + 20)
    assert [r["sequence"] for r in window] == list(range(10, 20))
    assert query_signals(path, model="other") == []


def test_full_queue_drops_counts_and_never_blocks(tmp_path):
    log = SignalLog(tmp_path / "s.db", max_queued_rows=10)
    big = [_row(i) for i in range(11)]
    t0 = time.perf_counter()
    assert log.record(big) is False  # more than the whole queue: dropped at once
    assert time.perf_counter() - t0 < 0.05
    assert log.record([_row(i) for i in range(5)])
    log.close()
    assert log.stats.dropped_rows == 11
    assert log.stats.written_rows == 5


def test_reopening_appends_after_a_restart(tmp_path):
    path = tmp_path / "s.db"
    first = SignalLog(path)
    first.record([_row(i) for i in range(3)])
    first.close()
    second = SignalLog(path)
    second.record([_row(i) for i in range(3, 5)])
    second.flush()
    assert [r["sequence"] for r in query_signals(path)] == [0, 1, 2, 3, 4]
    second.close()


def test_record_after_close_is_counted_as_dropped(tmp_path):
    log = SignalLog(tmp_path / "s.db")
    log.close()
    assert log.record([_row(0)]) is False
    assert log.stats.dropped_rows == 1


def test_query_of_a_missing_log_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.db"):
        query_signals(tmp_path / "nope.db")


def test_a_trickle_of_one_row_messages_is_written_in_a_few_transactions_and_flush_writes_at_once(tmp_path):
    """One transaction per message would wake the writer (and take the GIL from the serving
    loop) for every tick of a one-tick stream; the writer gathers rows for GROUP_COMMIT_S."""
    log = SignalLog(tmp_path / "s.db")
    started = time.monotonic()
    for i in range(100):  # ~1 ms apart: 100 transactions without grouping
        assert log.record([_row(i)])
        time.sleep(0.001)
    log.flush()  # writes what is queued now, without waiting out the group interval
    elapsed = time.monotonic() - started
    stats = log.stats
    assert stats.written_rows == 100 and stats.queued_rows == 0
    # at most one per interval (+ the flush's), however slow this machine's sleeps are
    bound = int(elapsed / GROUP_COMMIT_S) + 2
    assert stats.transactions <= min(bound, 50), f"{stats.transactions} transactions in {elapsed:.3f} s (bound {bound})"
    assert [r["sequence"] for r in query_signals(tmp_path / "s.db")] == list(range(100))
    log.close()
