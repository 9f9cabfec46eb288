"""What each answered message leaves behind: Prometheus counts and signal-log rows.

Called once per message (never per tick for metrics), from the event loop or
a worker thread: prometheus_client's metrics and SignalLog.record are both
thread-safe. With neither configured it costs one attribute check.
"""

from __future__ import annotations

import time
from collections import Counter

from ..engine import Scored
from ..signal_log import SignalLog, SignalRow
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
        if not self.enabled:
            return
        latency_ns = time.perf_counter_ns() - started_ns
        rows = [] if self.signal_log is not None else None
        errors: Counter | None = None
        signals = 0
        if rows is not None:
            served_at = time.time_ns()
            latency_us = latency_ns / 1000.0
            name, version = model.name, model.version
        for result, tick in zip(results, ticks):
            if isinstance(result, Scored):
                signals += 1
                if rows is not None:
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
            else:
                errors = errors or Counter()
                errors[result.status.name] += 1
        self._count(rpc, model, signals, errors, latency_ns)
        if rows:
            self.signal_log.record(rows)  # never blocks; drops are counted by the log itself

    def columns(self, rpc: str, model, block, results, started_ns: int) -> None:
        """`message` for a TickColumns message (columnar.TickBlock, columnar.ColumnResults):
        the same metrics and the same signal-log rows, built from the arrays."""
        if not self.enabled:
            return
        latency_ns = time.perf_counter_ns() - started_ns
        signals = len(results.admitted)
        self._count(rpc, model, signals, Counter(r.status.name for r in results.rejections.values()), latency_ns)
        if self.signal_log is not None and signals:
            from ..signals import ACTIONS, RISKS, STRENGTHS, URGENCIES

            served_at = time.time_ns()
            latency_us = latency_ns / 1000.0
            name, version = model.name, model.version
            rows = results.admitted
            s = results.signal
            instrument = [block.names[c] for c in block.index[rows].tolist()]
            seqs = block.sequence[rows].tolist() if block.sequence is not None else [None] * signals
            probs = results.probs
            self.signal_log.record(
                [
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
            )

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
