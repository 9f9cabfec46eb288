"""What each answered message leaves behind: Prometheus counts and signal-log rows.

Called once per message (never per tick for metrics), from the event loop or
a worker thread: prometheus_client's metrics and SignalLog.record are both
thread-safe. With neither configured it costs one attribute check.

The counts are taken when the answer is built; its signal-log rows are handed back
(`LogRows`) for the servicer to `log` once the answer is sent, so the log records what
clients were sent, not what was built for a stream that was cancelled before its send
(with a durable log they are committed before the send instead; see SignalServicer).
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import repeat

import numpy as np

from ..core.columnar import ColumnResults, TickBlock
from ..core.session import Scored
from ..core.signals import ACTIONS, RISKS, STRENGTHS, URGENCIES
from .signal_log import SignalLog, SignalRow
from .telemetry import Telemetry

# An answered message's signal-log rows, in order (row sources the log's writer expands), or
# () when there is no signal log or nothing to log.
LogRows = list | tuple


class Recorder:
    def __init__(self, telemetry: Telemetry | None = None, signal_log: SignalLog | None = None) -> None:
        self.telemetry = telemetry
        self.signal_log = signal_log
        self.enabled = telemetry is not None or signal_log is not None
        self._children: dict[tuple, tuple] = {}  # labelled metric children, looked up once per key

    def _metrics_for(self, rpc: str, model) -> tuple:
        key = (rpc, model.name, model.version)
        found = self._children.get(key)
        if found is None:
            t = self.telemetry
            labels = (rpc, model.name, model.version, model.manifest.adapter)
            found = (
                t.requests.labels(*labels),
                t.ticks.labels(*labels),
                t.latency.labels(model.name, model.version),
            )
            self._children[key] = found
        return found

    def message(self, rpc: str, model, ticks: list, results: list, started_ns: int) -> LogRows:
        """Count one answered message: `results[i]` is the Scored or Rejection of `ticks[i]`."""
        return self.parts(rpc, model, [(ticks, results)], started_ns)

    def columns(self, rpc: str, model, block: TickBlock, results: ColumnResults, started_ns: int) -> LogRows:
        """`message` for a TickColumns message: the same metrics and signal-log rows, from the arrays."""
        return self.parts(rpc, model, [(block, results)], started_ns)

    def parts(self, rpc: str, model, parts: list[tuple], started_ns: int) -> LogRows:
        """Count one answered message made of parts, in order: (TickBlock, ColumnResults) or
        (ticks, their per-tick results); its signal-log rows are returned, for `log`."""
        if not self.enabled:
            return ()
        latency_ns = time.perf_counter_ns() - started_ns
        rows: list | None = [] if self.signal_log is not None else None  # row sources, in order
        errors: Counter = Counter()
        signals = 0
        for source, results in parts:
            if isinstance(results, ColumnResults):
                signals += len(results.admitted)
                errors.update(r.status.name for r in results.rejections.values())
                if rows is not None and len(results.admitted):
                    rows.append(_ColumnRows(rpc, model, source, results, latency_ns))
            else:
                for result in results:
                    if isinstance(result, Scored):
                        signals += 1
                    else:
                        errors[result.status.name] += 1
                if rows is not None:
                    rows.append(_tick_rows(rpc, model, source, results, latency_ns))
        self._count(rpc, model, signals, errors, latency_ns)
        return rows or ()

    def log(self, rows: LogRows) -> None:
        """Hand an answered message's rows to the signal log (never blocks; drops are counted by
        the log itself)."""
        for source in rows:
            self.signal_log.record(source)

    def _count(self, rpc: str, model, signals: int, errors: Counter | None, latency_ns: int) -> None:
        t = self.telemetry
        if t is None:
            return
        requests, tick_count, latency = self._metrics_for(rpc, model)
        requests.inc()
        if signals:
            tick_count.inc(signals)
        latency.observe(latency_ns / 1e9)
        for code, n in (errors or {}).items():
            t.tick_errors.labels(rpc, code).inc(n)

    def evaluated(self, model, ticks: int) -> None:
        """An Evaluate call answered with its report: one request, its scored ticks (not its
        messages, nor the message-latency histogram, which a whole evaluation would swamp)."""
        if self.telemetry is not None:
            requests, tick_count, _ = self._metrics_for("Evaluate", model)
            requests.inc()
            tick_count.inc(ticks)

    def stream_opened(self, rpc: str) -> None:
        if self.telemetry is not None:
            self.telemetry.open_streams.labels(rpc).inc()

    def stream_closed(self, rpc: str) -> None:
        if self.telemetry is not None:
            self.telemetry.open_streams.labels(rpc).dec()

    def call_failed(self, rpc: str, code: str) -> None:
        if self.telemetry is not None:
            self.telemetry.call_errors.labels(rpc, code).inc()

    def micro_batch(self, rows: int, waited_s: float) -> None:
        if self.telemetry is not None:
            self.telemetry.batch_rows.observe(rows)
            self.telemetry.batch_wait.observe(waited_s)


def _tick_rows(rpc: str, model, ticks: list, results: list, latency_ns: int) -> list[SignalRow]:
    served_at = time.time_ns()
    latency_us = latency_ns / 1000.0
    name, version = model.name, model.version
    rows = []
    for result, tick in zip(results, ticks):
        if not isinstance(result, Scored):
            continue
        s = result.signal
        rows.append(
            SignalRow(
                served_at,
                rpc,
                tick.instrument,
                tick.timestamp_ns,
                tick.sequence,
                name,
                version,
                s.p_sell,
                s.p_hold,
                s.p_buy,
                s.edge_score,
                s.confidence,
                s.action,
                s.strength,
                s.urgency,
                s.risk,
                int(result.warmed_up),
                latency_us,
            )
        )
    return rows


class _ColumnRows:
    """A block's signal-log rows, built when iterated: by the log's writer thread, not on the
    serving path (`SignalLog.record` takes any sized iterable of rows)."""

    def __init__(self, rpc: str, model, block: TickBlock, results: ColumnResults, latency_ns: int) -> None:
        self.rpc, self.name, self.version = rpc, model.name, model.version
        self.block, self.results = block, results
        self.served_at = time.time_ns()
        self.latency_us = latency_ns / 1000.0

    def __len__(self) -> int:
        return len(self.results.admitted)

    def __iter__(self):
        block, results = self.block, self.results
        rows = results.admitted
        n = len(rows)
        s = results.signal
        names = block.names
        return zip(
            repeat(self.served_at, n),
            repeat(self.rpc, n),
            [names[c] for c in block.index[rows].tolist()],
            block.timestamp_ns[rows].tolist(),
            block.sequence[rows].tolist() if block.sequence is not None else repeat(None, n),
            repeat(self.name, n),
            repeat(self.version, n),
            results.probs[:, 0].tolist(),
            results.probs[:, 1].tolist(),
            results.probs[:, 2].tolist(),
            s.edge_score.tolist(),
            s.confidence.tolist(),
            [ACTIONS[a] for a in s.action.tolist()],
            [STRENGTHS[a] for a in s.strength.tolist()],
            [URGENCIES[a] for a in s.urgency.tolist()],
            [RISKS[a] for a in s.risk.tolist()],
            results.warmed.astype(np.int64).tolist(),
            repeat(self.latency_us, n),
        )
