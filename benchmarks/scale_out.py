"""Issue 16's scale-out figures, each ratio against a reference measured in the same run.

    .venv/bin/python benchmarks/scale_out.py [--models models] [--model signal-lgbm]

1. TickColumns over two streams (each its own connection, pipelined, 1,000 ticks a message):
   `serve --processes 2` against `--processes 1` (target >= 1.7x).
2. 64 concurrent one-tick streams (each its own connection, ping-pong): --processes 2 against 1
   (target >= 1.3x), with the CPU the load generator (this process) and the server used.
3. One-tick ping-pong p50 through `tickserve cluster`'s nginx (one replica behind it) against the
   same replica directly (target <= 1.2x).
The load generator shares the machine's two cores with the servers, as the issue says to report.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lib import channel, column_requests, ping_pong, protos, signal_requests, stream_config  # noqa: E402

from tickserve.simulate import simulate  # noqa: E402

STREAM = "/tickserve.v1.SignalService/StreamSignals"


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a supervisor's serve processes)."""
    total = _cpu(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += _tree_cpu(int(child))
    return total


class Server:
    def __init__(self, models: str, processes: int) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        ready = Path(self.tmp.name) / "ready"
        command = [sys.executable, "-m", "tickserve.cli", "serve", "--models", models, "--port", "0"]
        command += ["--processes", str(processes), "--no-signal-log", "--ready-file", str(ready)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (ready.exists() and ready.read_text().strip()):
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited with {self.proc.returncode}")
            time.sleep(0.1)
        self.address = f"127.0.0.1:{int(ready.read_text())}"
        time.sleep(1.0)  # every child serving

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.tmp.cleanup()


def columns_rate(server: Server, model: str, ticks, streams: int = 2) -> float:
    requests = column_requests(ticks, 1000)
    calls = [channel(server.address, own_connection=True).stream_stream(STREAM) for _ in range(streams)]
    done: list[int] = []

    def run(call) -> None:
        answers = list(call(iter([stream_config(model), *requests]), timeout=600))
        done.append(len(answers))

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return streams * len(ticks) / (time.perf_counter() - start)


def one_tick_rate(
    server: Server, model: str, ticks, streams: int = 64, seconds: float = 6.0
) -> tuple[float, float, float]:
    requests = signal_requests(ticks, 1)
    stop_at = time.perf_counter() + seconds
    counts: list[int] = []
    calls = [channel(server.address, own_connection=True).stream_stream(STREAM) for _ in range(streams)]
    own0, srv0, t0 = time.process_time(), _tree_cpu(server.proc.pid), time.perf_counter()
    threads = [
        threading.Thread(
            target=lambda c=c: counts.append(len(ping_pong(c, requests, [stream_config(model)], stop_at).recv))
        )
        for c in calls
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return sum(counts) / wall, (time.process_time() - own0) / wall, (_tree_cpu(server.proc.pid) - srv0) / wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="models")
    p.add_argument("--model", default="signal-lgbm")
    a = p.parse_args()
    ticks = protos(simulate(100_000, seed=21))
    print(
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}; cores {os.cpu_count()}; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    rates, one = {}, {}
    for n in (1, 2):
        server = Server(a.models, n)
        try:
            rates[n] = columns_rate(server, a.model, ticks)
            one[n] = one_tick_rate(server, a.model, ticks[:5000])
        finally:
            server.close()
    print(
        f"1. TickColumns, 2 streams: --processes 1 {rates[1]:,.0f} ticks/s, --processes 2 {rates[2]:,.0f} "
        f"ticks/s: {rates[2] / rates[1]:.2f}x (target >= 1.7x)"
    )
    (r1, c1, s1), (r2, c2, s2) = one[1], one[2]
    print(
        f"2. 64 one-tick streams: --processes 1 {r1:,.0f} ticks/s (client {c1:.2f} cores, server {s1:.2f}), "
        f"--processes 2 {r2:,.0f} ticks/s (client {c2:.2f} cores, server {s2:.2f}): {r2 / r1:.2f}x (target >= 1.3x)"
    )
    balancer(a.models, a.model, ticks[:3000])


def balancer(models: str, model: str, ticks) -> None:
    """One replica behind nginx (tickserve cluster), ping-pong through nginx and directly, interleaved."""
    from tickserve.cluster.runner import Cluster, ClusterConfig

    with tempfile.TemporaryDirectory() as run_dir:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = ClusterConfig(replicas=1, port=port, models=Path(models), run_dir=Path(run_dir))
        with Cluster(config, announce=lambda line: None) as cluster:
            direct = channel(cluster.replicas[0].address).stream_stream(STREAM)
            proxied = channel(cluster.address).stream_stream(STREAM)
            requests = signal_requests(ticks, 1)
            d, b = [], []
            for _ in range(5):
                d.append(ping_pong(direct, requests[:600], [stream_config(model)]).latencies_us(50))
                b.append(ping_pong(proxied, requests[:600], [stream_config(model)]).latencies_us(50))
            d50, b50 = float(np.median(np.concatenate(d))), float(np.median(np.concatenate(b)))
    print(f"3. one-tick p50 through nginx {b50:.0f} us, direct {d50:.0f} us: {b50 / d50:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
