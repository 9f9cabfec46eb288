"""The server's limits (every one answered with RESOURCE_EXHAUSTED naming it; docs/errors.md)
and the counters of its streaming calls."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tickserve_proto.contract import MAX_MESSAGE_BYTES

from ..models.predictor import DEFAULT_MAX_ROWS, DEFAULT_WINDOW_S


@dataclass(frozen=True)
class ServerLimits:
    """Every limit is answered with RESOURCE_EXHAUSTED naming it and the value (docs/errors.md)."""

    # ticks in one TickBatch / PredictRequest (beyond: the call ends)
    max_ticks_per_message: int = 10_000
    # distinct instruments in one stream (beyond: a per-tick error for the new instrument's ticks)
    max_instruments_per_stream: int = 10_000
    # StreamSignals + Evaluate calls open at once, server-wide (beyond: the new call ends at once)
    max_concurrent_streams: int = 1_000
    # calls open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: beyond, the
    # client's new calls wait for one to end), so one client cannot hold every server-wide slot
    max_streams_per_connection: int = 100
    # a StreamSignals or Evaluate call that sends nothing for this long is ended DEADLINE_EXCEEDED,
    # freeing its slot and its feature state (0: never); see serving/idle.py
    idle_timeout_s: float = 3600.0
    # largest request message gRPC accepts (beyond: gRPC itself ends the call)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # instruments whose feature state all open streams hold together (~7.5 KB of memory each; beyond: a
    # per-tick RESOURCE_EXHAUSTED for a new instrument's ticks until streams close)
    max_instruments_total: int = 200_000
    # dynamic micro-batching across streams (0 disables it); see models/predictor.py
    batch_window_s: float = DEFAULT_WINDOW_S
    max_batch_rows: int = DEFAULT_MAX_ROWS
    # messages worked on in worker threads at once, server-wide (0: one per CPU core); more wait
    # their turn. Their Python work holds the GIL: past one per core it only crowds out the event
    # loop, which serves every small message (measured: see README, Performance)
    max_parallel_messages: int = 0

    def __post_init__(self) -> None:
        for name in (
            "max_ticks_per_message",
            "max_instruments_per_stream",
            "max_instruments_total",
            "max_concurrent_streams",
            "max_streams_per_connection",
            "max_message_bytes",
            "max_batch_rows",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not self.idle_timeout_s >= 0:
            raise ValueError(f"idle_timeout_s: must be >= 0 (0: off), got {self.idle_timeout_s!r}")
        if isinstance(self.max_parallel_messages, bool) or self.max_parallel_messages < 0:
            raise ValueError(
                f"max_parallel_messages: must be >= 0 (0: one per CPU core), got {self.max_parallel_messages!r}"
            )
        if not self.batch_window_s >= 0:
            raise ValueError(f"batch_window_s: must be >= 0, got {self.batch_window_s!r}")


def parallel_messages(limits: ServerLimits) -> int:
    """How many messages may be worked on in worker threads at once."""
    return limits.max_parallel_messages or max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


@dataclass
class StreamStats:
    """Counters of the streaming calls, kept on the event loop (no locks): read by tests and metrics."""

    open: int = 0  # StreamSignals + Evaluate calls open now
    refused: int = 0  # calls refused by max_concurrent_streams
    messages: int = 0  # StreamSignals messages answered
    ticks: int = 0  # StreamSignals ticks answered (signal or per-tick error)
