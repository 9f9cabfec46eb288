"""Settings -> a running bridge: the model's session, the transport plugin, /metrics, signals.

In process, not a client of a running server: the bridge owns its stream's state, so after a
crash it can rebuild that state exactly (replaying ticks through its own session, no model
calls) before it answers anything, and the answers are the StreamSignals functions' own bits
without a second network hop per message. A server's stream state could only be rebuilt by
sending the replayed ticks through a new stream, and paying a prediction for each.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

from ..core.session import SessionLimits, SignalSession
from ..models.repository import LoadedModel
from ..settings import BridgeSettings
from .engine import BridgeEngine
from .metrics import BridgeMetrics, start_metrics
from .runner import Bridge, RunStats


def check_settings(s: BridgeSettings) -> None:
    """ValueError naming the setting, before anything connects."""
    for key in ("max_in_flight", "max_ticks_per_message"):
        if getattr(s, key) < 1:
            raise ValueError(f"[bridge] {key}: must be >= 1, got {getattr(s, key)}")
    for key in ("ack_wait_s", "dedup_window_s"):
        if getattr(s, key) <= 0:
            raise ValueError(f"[bridge] {key}: must be > 0, got {getattr(s, key)}")
    if s.replay_messages < 0:
        raise ValueError(f"[bridge] replay_messages: must be >= 0 (0: all retained), got {s.replay_messages}")
    if s.metrics_port < -1 or s.metrics_port > 65535:
        raise ValueError(f"[bridge] metrics_port: -1 (off), 0 (a free port) or a port number, got {s.metrics_port}")
    if s.output_subject == s.dead_letter_subject:
        raise ValueError("[bridge] output_subject and dead_letter_subject must differ")


def build_bridge(model: LoadedModel, transport_cls: type, s: BridgeSettings) -> Bridge:
    # one stream for the bridge's life: the input's instruments are the broker's to bound, not a per-stream limit
    limits = SessionLimits(max_instruments=10_000_000)
    session = SignalSession(model, return_features=s.features, limits=limits)
    engine = BridgeEngine(
        session, subject=s.output_subject, dead_subject=s.dead_letter_subject, output=s.output, fmt=s.output_format
    )
    return Bridge(transport_cls(s), engine, s, BridgeMetrics())


async def run_bridge(
    model: LoadedModel,
    transport_cls: type,
    s: BridgeSettings,
    *,
    ready_file: Path | None = None,
    announce: Callable[[str], None] = print,
) -> RunStats:
    """Run until SIGINT/SIGTERM (the batch at hand is finished: published and acknowledged)."""
    bridge = build_bridge(model, transport_cls, s)
    metrics_runner = None
    try:
        await bridge.start()
        announce(
            f"bridge: {s.transport} {s.url}, {s.input_stream}/{s.input_subject} -> {s.output_subject} "
            f"(model {model.name}/{model.version}); resumed at input {bridge.stats.resumed_at} "
            f"after replaying {bridge.stats.replayed} messages"
        )
        port = None
        if s.metrics_port >= 0:
            metrics_runner, port = await start_metrics(bridge.metrics, "127.0.0.1", s.metrics_port)
            announce(f"bridge: /metrics on http://127.0.0.1:{port}/metrics")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bridge.stop)
        if ready_file is not None:
            ready_file.write_text(json.dumps({"metrics_port": port, "resumed_at": bridge.stats.resumed_at}) + "\n")
        stats = await bridge.run()
        announce(
            f"bridge: stopped after {stats.messages} messages ({stats.ticks} ticks, {stats.dead_letters} dead "
            f"letters, {stats.duplicates} outputs the broker already held)"
        )
        return stats
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await bridge.close()
