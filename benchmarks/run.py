"""tickserve benchmarks: `make bench` (or `.venv/bin/python benchmarks/run.py [--quick]`).

Every figure is measured in this run beside a reference measured in the same
run (the machines are noisy), and the ratio is what to read:
  1. floor: a bare grpc.aio bidirectional echo (benchmarks/echo_server.py),
     same server options, response of the same size as a signal;
  2. tickserve StreamSignals, one tick per message, ping-pong: p50/p99 round trip;
  3. pipelined stream throughput: 1 tick per message and 100 ticks per message;
  4. feature stage alone: streaming us/tick and batch rows/s;
  5. the LightGBM adapter alone: single-row p50/p99, batch rows/s.
Results go to stdout and to benchmarks/RESULTS.md with the command, machine and versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import grpc
import numpy as np

from tickserve.features import FeatureConfig, StreamingFeatures, batch_features
from tickserve.plugin_manager import load_plugins
from tickserve.repository import ModelRepository
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve.training import train_model
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent
ROWS: list[tuple[str, str, str]] = []  # (scenario, figure, ratio)


def record(scenario: str, figure: str, ratio: str = "") -> None:
    ROWS.append((scenario, figure, ratio))
    print(f"{scenario:55s} {figure:32s} {ratio}", flush=True)


def start(cmd: list[str], port_file: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{cmd[:3]} did not start")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{int(port_file.read_text())}"


def ping_pong(call, requests: list, warmup: int = 200) -> np.ndarray:
    """Round trip of one message at a time on one stream, in microseconds."""
    gate: queue.Queue = queue.Queue()
    sent: list[float] = []

    def gen():
        for r in requests:
            gate.get()
            sent.append(time.perf_counter())
            yield r

    gate.put(1)
    out = []
    for i, _ in enumerate(call(gen())):
        out.append(time.perf_counter() - sent[i])
        if i + 1 < len(requests):
            gate.put(1)
    return np.array(out[warmup:]) * 1e6


def pipelined(call, requests: list, ticks_per_message: int) -> float:
    """Ticks per second when the client sends without waiting."""
    t = time.perf_counter()
    n = sum(1 for _ in call(iter(requests)))
    assert n == len(requests)
    return n * ticks_per_message / (time.perf_counter() - t)


def pct(a: np.ndarray) -> str:
    return f"p50 {np.percentile(a, 50):6.0f} us  p99 {np.percentile(a, 99):6.0f} us"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer ticks (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    n_ping = 1_000 if args.quick else 5_000
    n_pipe = 2_000 if args.quick else 10_000

    tmp = Path(tempfile.mkdtemp(prefix="tickserve-bench-"))
    plugins = load_plugins()
    print("training the benchmark model (seed parameters, 60,000 simulated ticks)...", flush=True)
    train_model(simulate(60_000, seed=1), adapter=plugins.adapters["lightgbm"], models_dir=tmp / "models", name="bench")
    repo = ModelRepository(tmp / "models", plugins.adapters)
    repo.load_all()
    model = repo.get("bench")
    frame = simulate(max(n_ping, n_pipe) + 1_000, seed=7)
    ticks = frame_to_protos(frame)

    # a typical answer, for the floor's payload size
    sample = pb.StreamSignalsResponse(results=[pb.TickResult(signal=pb.Signal(
        action=pb.ACTION_BUY, p_buy=0.51234, p_hold=0.1234, p_sell=0.36426, confidence=0.51234, edge_score=0.14808,
        strength=pb.STRENGTH_WEAK, urgency=pb.URGENCY_PASSIVE, risk=pb.RISK_HIGH, model="bench", model_version="1",
        instrument="SIMA", timestamp_ns=1_704_205_800_123_456_789, sequence=12345, warmed_up=True))])
    request_bytes = pb.StreamSignalsRequest(tick=ticks[0]).ByteSize()
    print(f"message sizes: request {request_bytes} B, response {sample.ByteSize()} B")

    echo, echo_addr = start([sys.executable, str(HERE / "echo_server.py"), str(tmp / "echo.port"),
                             str(sample.ByteSize())], tmp / "echo.port")
    serve, serve_addr = start([sys.executable, "-m", "tickserve.cli", "serve", "--models", str(tmp / "models"),
                               "--port", "0", "--ready-file", str(tmp / "serve.port")], tmp / "serve.port")
    try:
        echo_channel = grpc.insecure_channel(echo_addr)
        echo_call = echo_channel.stream_stream("/bench.Echo/Stream")
        ts_stub = pb_grpc.SignalServiceStub(grpc.insecure_channel(serve_addr))

        def ts_call(it):
            def with_config():
                yield pb.StreamSignalsRequest(config=pb.StreamConfig(model="bench"))
                yield from it
            return ts_stub.StreamSignals(with_config())

        one = [pb.StreamSignalsRequest(tick=t).SerializeToString() for t in ticks[:n_ping]]
        floor = ping_pong(echo_call, one)
        record("1. floor: bare grpc echo, 1 msg ping-pong", pct(floor), "1.00x (reference)")
        ours = ping_pong(ts_call, [pb.StreamSignalsRequest(tick=t) for t in ticks[:n_ping]])
        record("2. StreamSignals lightgbm, 1 tick ping-pong", pct(ours),
               f"{np.percentile(ours, 50) / np.percentile(floor, 50):.2f}x floor p50")

        floor_tp = pipelined(echo_call, [pb.StreamSignalsRequest(tick=t).SerializeToString() for t in ticks[:n_pipe]], 1)
        record("3a. floor: bare grpc echo, pipelined 1 msg", f"{floor_tp:9.0f} msg/s", "1.00x (reference)")
        tp1 = pipelined(ts_call, [pb.StreamSignalsRequest(tick=t) for t in ticks[:n_pipe]], 1)
        record("3b. StreamSignals pipelined, 1 tick/message", f"{tp1:9.0f} ticks/s", f"{tp1 / floor_tp:.2f}x floor")
        batches = [pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=ticks[i:i + 100])) for i in range(0, n_pipe, 100)]
        tp100 = pipelined(ts_call, batches, 100)
        record("3c. StreamSignals pipelined, 100 ticks/message", f"{tp100:9.0f} ticks/s", f"{tp100 / floor_tp:.2f}x floor")
    finally:
        echo.terminate()
        serve.terminate()
        echo.wait()
        serve.wait()

    config = FeatureConfig()
    own = list(frame.ticks())
    stage = StreamingFeatures(config)
    t = time.perf_counter()
    for tick in own:
        stage.update(tick)
    per_tick = (time.perf_counter() - t) / len(own) * 1e6
    record("4a. feature stage, streaming", f"{per_tick:7.1f} us/tick",
           f"{per_tick / np.percentile(floor, 50):.2f}x of floor p50")
    big = simulate(200_000, seed=3)
    t = time.perf_counter()
    batch_features(big, config)
    rows = len(big) / (time.perf_counter() - t)
    record("4b. feature stage, batch", f"{rows:9.0f} rows/s", f"{rows / (1e6 / per_tick):.1f}x streaming")

    x = batch_features(frame, config)[:, model.feature_index]
    single = []
    for i in range(2_000):
        t = time.perf_counter()
        model.adapter.predict_proba(x[i % len(x)][None, :])
        single.append(time.perf_counter() - t)
    single = np.array(single[200:]) * 1e6
    record("5a. lightgbm adapter, single row", pct(single), f"{np.percentile(single, 50) / np.percentile(floor, 50):.2f}x of floor p50")
    t = time.perf_counter()
    model.adapter.predict_proba(x)
    batch_rate = len(x) / (time.perf_counter() - t)
    record("5b. lightgbm adapter, batch", f"{batch_rate:9.0f} rows/s", f"{batch_rate / (1e6 / np.percentile(single, 50)):.1f}x single-row")

    write_results(args.out, " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]), request_bytes, sample.ByteSize())
    print(f"\nwrote {args.out}")
    return 0


def write_results(path: Path, command: str, request_bytes: int, response_bytes: int) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"- command: `{command}` (via `make bench`)",
        f"- when: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
        f"- versions: grpcio {version('grpcio')}, protobuf {version('protobuf')}, lightgbm {version('lightgbm')}, numpy {version('numpy')}",
        f"- messages: request {request_bytes} B (one 10-level tick), response {response_bytes} B (one signal)",
        "",
        "Ratios compare with a reference measured in the same run; absolute figures move with machine load.",
        "",
        "| scenario | figure | ratio |",
        "| --- | --- | --- |",
        *[f"| {s} | {f.strip()} | {r} |" for s, f, r in ROWS],
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
