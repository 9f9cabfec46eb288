"""Prometheus metrics of one server, in its own registry (several servers in one process stay apart).

Counted per message, never per tick, so the cost on the hot path is a few
lock-protected additions per answered message. Scraped at /metrics on the
HTTP port (serving/http_gateway.py).

In a `serve --processes N` child (`multiprocess=True`, $PROMETHEUS_MULTIPROC_DIR set by the
supervisor before prometheus_client was imported) the counters, gauges and histograms live in
the group's metrics directory and a scrape of any child sums every child's (open streams: the
live children's). The collectors read at scrape time (models by state, the signal log) are the
answering child's own: every child serves the same models, and each has its own log writer.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# tick -> signal inside the server: from a message's arrival to its answer being built
LATENCY_BUCKETS = (50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1.6e-3, 3.2e-3, 6.4e-3, 12.8e-3, 25.6e-3, 0.1, 0.5, 2.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUEUE_BUCKETS = (10e-6, 50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1.6e-3, 6.4e-3)


class Telemetry:
    def __init__(self, repository=None, signal_log=None, *, multiprocess: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._scraped = self.registry
        if multiprocess:  # what a scrape reads: the group's files, then this child's own collectors
            self._scraped = CollectorRegistry()
            MultiProcessCollector(self._scraped)
        r = self.registry
        self.requests = Counter(
            "tickserve_requests", "Calls answered, by RPC and model", ["rpc", "model", "version", "adapter"], registry=r
        )
        self.ticks = Counter(
            "tickserve_ticks",
            "Ticks answered with a signal, by RPC and model",
            ["rpc", "model", "version", "adapter"],
            registry=r,
        )
        self.tick_errors = Counter(
            "tickserve_tick_errors", "Ticks answered with a per-tick error, by code", ["rpc", "code"], registry=r
        )
        self.call_errors = Counter(
            "tickserve_call_errors", "Calls ended with a non-OK status, by RPC and code", ["rpc", "code"], registry=r
        )
        self.open_streams = Gauge(
            "tickserve_open_streams", "Streaming calls open now", ["rpc"], registry=r, multiprocess_mode="livesum"
        )
        self.latency = Histogram(
            "tickserve_message_latency_seconds",
            "Server-side time from a message's arrival to its answer, by model",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "tickserve_microbatch_rows",
            "Rows per adapter call made by the micro-batcher",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_wait = Histogram(
            "tickserve_microbatch_queue_seconds",
            "Time a request waited in the micro-batcher",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        if repository is not None:
            self._scraped.register(_ModelStates(repository))
        if signal_log is not None:
            self._scraped.register(_SignalLogStats(signal_log))

    def scrape(self) -> bytes:
        return generate_latest(self._scraped)


class _SignalLogStats:
    """The signal log's own counts, read at scrape time: rows written, and rows dropped for any
    reason (queue full, log closed, a failed write such as a full disk)."""

    def __init__(self, signal_log) -> None:
        self.signal_log = signal_log

    def describe(self):
        return list(self.collect())

    def collect(self):
        stats = self.signal_log.stats
        yield CounterMetricFamily("tickserve_signal_log_written_rows", "Signal rows written", value=stats.written_rows)
        yield CounterMetricFamily(
            "tickserve_signal_log_dropped_rows",
            "Signal rows dropped (queue full, closed, failed write)",
            value=stats.dropped_rows,
        )
        yield GaugeMetricFamily(
            "tickserve_signal_log_queued_rows", "Rows waiting for the writer", value=stats.queued_rows
        )


class _ModelStates:
    """Models by state, read from the repository at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, repository) -> None:
        self.repository = repository

    def describe(self):
        return [GaugeMetricFamily("tickserve_models", "Model versions by state", labels=["state"])]

    def collect(self):
        family = GaugeMetricFamily("tickserve_models", "Model versions by state", labels=["state"])
        counts = {"LOADING": 0, "READY": 0, "FAILED": 0, "UNLOADED": 0}
        for entry in self.repository.entries():
            counts[entry.state.value] = counts.get(entry.state.value, 0) + 1
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family
