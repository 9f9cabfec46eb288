"""What each answered message leaves behind: Prometheus counts and signal-log rows.

Called once per message (never per tick for metrics), from the event loop or
a worker thread: prometheus_client's metrics and SignalLog.record are both
thread-safe. With neither configured it costs one attribute check.
"""

from __future__ import annotations

import time
from collections import Counter

from ..columnar import ColumnResults, TickBlock
from ..engine import Scored
from ..signal_log import SignalLog, SignalRow
from ..signals import ACTIONS, RISKS, STRENGTHS, URGENCIES
from .telemetry import Telemetry


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

    def message(self, rpc: str, model, ticks: list, results: list, started_ns: int) -> None:
        """Record one answered message: `results[i]` is the Scored or Rejection of `ticks[i]`."""
        self.parts(rpc, model, [(ticks, results)], started_ns)

    def columns(self, rpc: str, model, block: TickBlock, results: ColumnResults, started_ns: int) -> None:
        """`message` for a TickColumns message: the same metrics and signal-log rows, from the arrays."""
        self.parts(rpc, model, [(block, results)], started_ns)

    def parts(self, rpc: str, model, parts: list[tuple], started_ns: int) -> None:
        """Record one answered message made of parts, in order: (TickBlock, ColumnResults) or
        (ticks, their per-tick results)."""
        if not self.enabled:
            return
        latency_ns = time.perf_counter_ns() - started_ns
        rows: list[SignalRow] | None = [] if self.signal_log is not None else None
        errors: Counter = Counter()
        signals = 0
        for source, results in parts:
            if isinstance(results, ColumnResults):
                signals += len(results.admitted)
                errors.update(r.status.name for r in results.rejections.values())
                if rows is not None:
                    rows += _column_rows(rpc, model, source, results, latency_ns)
            else:
                for result in results:
                    if isinstance(result, Scored):
                        signals += 1
                    else:
                        errors[result.status.name] += 1
                if rows is not None:
                    rows += _tick_rows(rpc, model, source, results, latency_ns)
        self._count(rpc, model, signals, errors, latency_ns)
        if rows:
            self.signal_log.record(rows)  # never blocks; drops are counted by the log itself

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


def _column_rows(rpc: str, model, block: TickBlock, results: ColumnResults, latency_ns: int) -> list[SignalRow]:
    rows = results.admitted
    if not len(rows):
        return []
    served_at = time.time_ns()
    latency_us = latency_ns / 1000.0
    name, version = model.name, model.version
    s = results.signal
    instrument = [block.names[c] for c in block.index[rows].tolist()]
    seqs = block.sequence[rows].tolist() if block.sequence is not None else [None] * len(rows)
    probs = results.probs
    return [
        SignalRow(
            served_at,
            rpc,
            inst,
            ts,
            seq,
            name,
            version,
            ps,
            ph,
            pb,
            edge,
            conf,
            ACTIONS[a],
            STRENGTHS[st],
            URGENCIES[u],
            RISKS[r],
            int(w),
            latency_us,
        )
        for inst, ts, seq, ps, ph, pb, edge, conf, a, st, u, r, w in zip(
            instrument,
            block.timestamp_ns[rows].tolist(),
            seqs,
            probs[:, 0].tolist(),
            probs[:, 1].tolist(),
            probs[:, 2].tolist(),
            s.edge_score.tolist(),
            s.confidence.tolist(),
            s.action.tolist(),
            s.strength.tolist(),
            s.urgency.tolist(),
            s.risk.tolist(),
            results.warmed.tolist(),
        )
    ]
