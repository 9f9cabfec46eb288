"""`make bridge-bench`: sustained ticks/s through `tickserve bridge` (NATS JetStream, TickColumns of
1,000 ticks in) against the gRPC TickColumns path (StreamSignals, the same messages), in one run,
the same model, each server and the bridge in its own process on this machine.

The bridge is measured from its first fetch to the last input acknowledged (every output stored),
with the input already in the stream: its sustained rate when it is behind. Two output modes:
`ticks` (one TickResult per tick, each awaited to its PubAck) and `columns` (one SignalColumns per
TickColumns). Prints a table; nothing is written.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.bridge_support import consumer_done, free_port, publish_inputs, start_nats  # noqa: E402
from tickserve.plugins.manager import load_plugins  # noqa: E402
from tickserve.simulate import simulate  # noqa: E402
from tickserve.training import train_model  # noqa: E402
from tickserve_client import TickserveClient, frame_columns  # noqa: E402

TICKS = 100_000
PER_MESSAGE = 1_000
MODEL = "bench-lgbm"


def grpc_rate(models: Path, frame) -> float:
    port = free_port()
    ready = models.parent / "serve.ready"
    cmd = [sys.executable, "-m", "tickserve.cli", "serve", "--models", str(models), "--port", str(port)]
    proc = subprocess.Popen(cmd + ["--no-signal-log", "--ready-file", str(ready)], stderr=subprocess.DEVNULL)
    try:
        while not ready.exists():
            time.sleep(0.05)
        messages = list(frame_columns(frame, PER_MESSAGE))
        with TickserveClient(f"127.0.0.1:{port}") as client:
            t = time.perf_counter()
            n = sum(len(c.code) for c in client.stream_columns(messages))
            secs = time.perf_counter() - t
        assert n == len(frame)
        return n / secs
    finally:
        proc.terminate()
        proc.wait(20)


def bridge_rate(models: Path, frame, url: str, output: str) -> float:
    tag = f"bench{output}"
    stream, subject, durable = f"T{tag}", f"{tag}.ticks", f"b-{tag}"
    messages = [(m.SerializeToString(), {}) for m in frame_columns(frame, PER_MESSAGE)]
    asyncio.run(publish_inputs(url, stream, subject, messages))
    ready = models.parent / f"{tag}.ready"
    cmd = [sys.executable, "-m", "tickserve.cli", "bridge", "--models", str(models), "--url", url]
    cmd += ["--input-stream", stream, "--input-subject", subject, "--durable", durable, "--output", output]
    cmd += ["--output-stream", f"S{tag}", "--output-subject", f"{tag}.signals", "--dead-letter-subject", f"{tag}.dead"]
    proc = subprocess.Popen(cmd + ["--ready-file", str(ready)], stderr=subprocess.DEVNULL)
    try:
        while not ready.exists():
            time.sleep(0.01)
        t = time.perf_counter()
        while not asyncio.run(consumer_done(url, stream, durable)):
            time.sleep(0.01)
        return len(frame) / (time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        adapter = load_plugins().adapters["lightgbm"]
        train_model(simulate(20_000, seed=1), adapter=adapter, models_dir=models, name=MODEL)
        frame = simulate(TICKS, seed=2)
        server = start_nats(tmp / "jetstream")
        try:
            grpc = grpc_rate(models, frame)
            ticks_out = bridge_rate(models, frame, server.url, "ticks")
            columns_out = bridge_rate(models, frame, server.url, "columns")
        finally:
            server.stop()
    print(f"{TICKS:,} ticks in TickColumns of {PER_MESSAGE:,}, model {MODEL} (LightGBM)")
    print(
        f"| path | ticks/s | vs gRPC TickColumns |\n| --- | --- | --- |\n| gRPC StreamSignals | {grpc:,.0f} | 1.00x |"
    )
    print(f"| bridge, one TickResult per tick | {ticks_out:,.0f} | {ticks_out / grpc:.2f}x |")
    print(f"| bridge, one SignalColumns per message | {columns_out:,.0f} | {columns_out / grpc:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
