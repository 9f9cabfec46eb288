"""64 concurrent one-tick streams against `serve --processes N`, for N in --processes (default 1 2).

    python benchmarks/processes.py --models models --seconds 10

Each stream has its own connection (so SO_REUSEPORT spreads them over the children) and sends
one tick at a time, waiting for its answer. Prints answered ticks/s per N; figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc


async def one_stream(port: int, model: str, ticks: list, i: int, until: float) -> int:
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = pb_grpc.SignalServiceStub(channel).StreamSignals()
        await call.write(pb.StreamSignalsRequest(config=pb.StreamConfig(model=model)))
        n = 0
        while time.monotonic() < until:
            tick = pb.Tick()
            tick.CopyFrom(ticks[n % len(ticks)])
            tick.instrument, tick.sequence = f"S{i}", n + 1
            await call.write(pb.StreamSignalsRequest(tick=tick))
            await call.read()
            n += 1
        await call.done_writing()
        return n


async def run_streams(port: int, model: str, streams: int, seconds: float) -> float:
    ticks = frame_to_protos(simulate(2_000, seed=3))
    start = time.monotonic()
    counts = await asyncio.gather(*(one_stream(port, model, ticks, i, start + seconds) for i in range(streams)))
    return sum(counts) / (time.monotonic() - start)


def measure(models: str, model: str, processes: int, streams: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        server = subprocess.Popen(
            [sys.executable, "-m", "tickserve.cli", "serve", "--models", models, "--port", "0"]
            + ["--processes", str(processes), "--no-signal-log", "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL,
        )
        try:
            while not (ready.exists() and ready.read_text().strip()):
                if server.poll() is not None:
                    raise SystemExit(f"serve exited with {server.returncode}")
                time.sleep(0.1)
            return asyncio.run(run_streams(int(ready.read_text()), model, streams, seconds))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="models")
    p.add_argument("--model", default="signal-lgbm")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    base = None
    for n in a.processes:
        rate = measure(a.models, a.model, n, a.streams, a.seconds)
        base = base or rate
        print(f"--processes {n}: {a.streams} one-tick streams, {rate:,.0f} ticks/s ({rate / base:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
