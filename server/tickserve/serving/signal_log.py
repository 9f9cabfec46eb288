"""The signal log: every served signal written to an embedded SQLite database, off the hot path.

The serving path hands each answered message's rows to `SignalLog.record`,
which never blocks: rows go into a bounded queue, and one writer thread
drains it into SQLite in WAL mode (readers, e.g. `tickserve signals`, never
block the writer). When the queue is full the rows are dropped, counted
(`dropped_rows`) and logged once per second at most: the stream is worth
more than its log. `close()` writes everything already queued before it
returns, so a graceful shutdown loses nothing that was recorded.

Schema (one row per served signal; times are ns since the Unix epoch):

    signals(
      id            INTEGER PRIMARY KEY,  -- insertion order
      served_at_ns  INTEGER NOT NULL,     -- wall clock when the answer was built
      rpc           TEXT    NOT NULL,     -- StreamSignals | Predict | REST
      instrument    TEXT    NOT NULL,     -- tick identity: instrument, timestamp_ns, sequence
      timestamp_ns  INTEGER NOT NULL,
      sequence      INTEGER,              -- NULL when the tick carried none
      model         TEXT    NOT NULL,
      model_version TEXT    NOT NULL,
      p_sell REAL, p_hold REAL, p_buy REAL,  -- calibrated probabilities
      edge_score    REAL,                 -- p_buy - p_sell
      confidence    REAL,
      action        TEXT,                 -- BUY | HOLD | SELL
      strength      TEXT,                 -- WEAK | MEDIUM | STRONG
      urgency       TEXT,                 -- PASSIVE | AGGRESSIVE
      risk          TEXT,                 -- LOW | MEDIUM | HIGH
      warmed_up     INTEGER,              -- 0/1
      latency_us    REAL                  -- server time from message received to answer built
    )
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

log = logging.getLogger(__name__)


class SignalRow(NamedTuple):
    """One served signal, as the log stores it (a tuple in column order: executemany takes it as is)."""

    served_at_ns: int
    rpc: str
    instrument: str
    timestamp_ns: int
    sequence: int | None
    model: str
    model_version: str
    p_sell: float
    p_hold: float
    p_buy: float
    edge_score: float
    confidence: float
    action: str
    strength: str
    urgency: str
    risk: str
    warmed_up: int
    latency_us: float


COLUMNS = SignalRow._fields


class RowSource(Protocol):
    """What `SignalLog.record` takes: a list of SignalRow, or rows built when iterated."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple]: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    id            INTEGER PRIMARY KEY,
    served_at_ns  INTEGER NOT NULL,
    rpc           TEXT    NOT NULL,
    instrument    TEXT    NOT NULL,
    timestamp_ns  INTEGER NOT NULL,
    sequence      INTEGER,
    model         TEXT    NOT NULL,
    model_version TEXT    NOT NULL,
    p_sell REAL, p_hold REAL, p_buy REAL,
    edge_score    REAL,
    confidence    REAL,
    action        TEXT,
    strength      TEXT,
    urgency       TEXT,
    risk          TEXT,
    warmed_up     INTEGER,
    latency_us    REAL
);
CREATE INDEX IF NOT EXISTS signals_by_instrument_time ON signals (instrument, timestamp_ns);
CREATE INDEX IF NOT EXISTS signals_by_model ON signals (model, model_version, served_at_ns);
"""

_INSERT = f"INSERT INTO signals ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_STOP = object()
# At most this many rows wait for the writer (about 0.5 KB each in memory): a burst of
# 100 messages of 1,000 ticks fits, a writer stuck on a slow disk cannot grow memory further.
DEFAULT_MAX_QUEUED_ROWS = 100_000
# When rows arrive at an empty queue the writer waits this long for more, so a stream of
# one-tick messages costs one transaction per interval, not one per tick (a thread wake-up,
# a GIL hand-off and a commit that each competed with the event loop). A backlog is written
# without waiting. Rows reach the database this much later plus the write; flush() and
# close() cut the wait short.
GROUP_COMMIT_S = 0.05
# durable mode: how long `record` waits for room in a full queue before it drops rows
DURABLE_WAIT_S = 30.0


@dataclass
class SignalLogStats:
    written_rows: int = 0
    dropped_rows: int = 0
    queued_rows: int = 0
    transactions: int = 0  # commits so far: rows are written in groups (GROUP_COMMIT_S)


class SignalLog:
    """Bounded, non-blocking writer of signal rows into SQLite (WAL)."""

    def __init__(self, path: Path, *, max_queued_rows: int = DEFAULT_MAX_QUEUED_ROWS, durable: bool = False) -> None:
        """`durable`: the server sends an answer only once its rows are committed (`committed`),
        so every answered signal survives the process being killed (not a power loss: WAL
        with synchronous=NORMAL); when the queue is full, `record` waits up to DURABLE_WAIT_S
        for room instead of dropping."""
        if max_queued_rows < 1:
            raise ValueError(f"signal_log max_queued_rows: must be >= 1, got {max_queued_rows}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_queued_rows = max_queued_rows
        self.durable = durable
        self._room = threading.Condition()  # durable mode: notified when the writer has taken rows
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._written = 0
        self._transactions = 0
        self._dropped = 0
        self._last_warning = 0.0
        self._closed = False
        self._wake = threading.Event()  # set by flush() and close(): write now, do not gather
        # Create the schema now, in the caller's thread, so a bad path fails at start-up.
        with _connect(self.path) as conn:
            conn.executescript(SCHEMA)
        self._thread = threading.Thread(target=self._run, name="tickserve-signal-log", daemon=True)
        self._thread.start()

    def record(self, rows: RowSource) -> bool:
        """Queue rows for writing; False if they were dropped. `rows` is any sized iterable of rows
        (tuples in column order): a lazy one is iterated by the writer thread, off the serving path."""
        if not rows:
            return True
        deadline = time.monotonic() + DURABLE_WAIT_S
        while True:
            with self._lock:  # the check and the put together: nothing lands behind close()'s stop marker
                if self._closed:
                    why = "the log is closed"
                elif self._queued_rows + len(rows) > self.max_queued_rows:
                    why = f"{self._queued_rows} rows already wait for the writer (limit {self.max_queued_rows})"
                else:
                    self._queued_rows += len(rows)
                    self._queue.put(rows)
                    return True
            if not self.durable or self._closed or time.monotonic() >= deadline:
                break
            with self._room:  # durable: wait for the writer to make room rather than drop
                self._room.wait(0.05)
        self._drop(len(rows), why)
        return False

    def committed(self) -> Future:
        """A future that becomes True once every row recorded before this call is committed (False
        if a write failed or the log is closed): durable mode awaits it before answering."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                future.set_result(False)
                return future
            self._queue.put(future)
        self._wake.set()
        return future

    def _drop(self, n: int, why: str) -> None:
        with self._lock:
            self._dropped += n
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            log.warning("signal log: dropped %d row(s) because %s (%d dropped so far)", n, why, self._dropped)

    @property
    def stats(self) -> SignalLogStats:
        return SignalLogStats(self._written, self._dropped, self._queued_rows, self._transactions)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written."""
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError(f"signal log: not flushed within {timeout} s")

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "signal log: %d row(s) still not written to %s after %.0f s; they are lost at exit",
                self._queued_rows,
                self.path,
                timeout,
            )

    def _run(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                item = self._queue.get()
                if item is not _STOP and not isinstance(item, (threading.Event, Future)) and self._queue.empty():
                    self._wake.wait(GROUP_COMMIT_S)  # let a burst gather; flush/close cut it short
                    self._wake.clear()
                batch: list[tuple] = []
                waiters: list[threading.Event] = []
                commits: list[Future] = []
                stop = False
                while True:  # drain what is already queued into one transaction
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        waiters.append(item)
                    elif isinstance(item, Future):
                        commits.append(item)
                    else:
                        batch.extend(item)
                    if stop or len(batch) >= 50_000:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                ok = True
                if batch:
                    ok = self._write(conn, batch)
                    with self._lock:
                        self._queued_rows -= len(batch)
                    if self.durable:
                        with self._room:
                            self._room.notify_all()
                for w in waiters:
                    w.set()
                for c in commits:
                    c.set_result(ok)
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[tuple]) -> bool:
        try:
            with conn:
                conn.executemany(_INSERT, batch)
            self._written += len(batch)
            self._transactions += 1
            return True
        except sqlite3.Error:  # a full disk must not stop the server: count, log, go on
            with self._lock:
                self._dropped += len(batch)
            log.exception("signal log: could not write %d row(s) to %s", len(batch), self.path)
            return False


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL survives a crash of the process (not of the machine) and is much faster than FULL.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def query_signals(
    path: Path,
    *,
    instrument: str | None = None,
    model: str | None = None,
    version: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int = 100,
    newest: bool = False,
) -> list[dict]:
    """Logged signals matching every given filter, oldest tick first ([start_ns, end_ns) on
    timestamp_ns): the first `limit` of them, or with `newest` the last `limit` (as `tail`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"signal log {path} does not exist")
    where, args = [], []
    for column, value in (("instrument", instrument), ("model", model), ("model_version", version)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if start_ns is not None:
        where.append("timestamp_ns >= ?")
        args.append(start_ns)
    if end_ns is not None:
        where.append("timestamp_ns < ?")
        args.append(end_ns)
    sql = f"SELECT id, {', '.join(COLUMNS)} FROM signals"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY timestamp_ns DESC, id DESC LIMIT ?" if newest else " ORDER BY timestamp_ns, id LIMIT ?"
    args.append(int(limit))
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()
    return rows[::-1] if newest else rows
