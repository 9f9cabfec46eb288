"""Memory a real server holds per instrument of feature state (the unit of max_instruments_total).

Starts `tickserve serve` on the repository in models/ (no signal log), opens STREAMS streams at
once, each sending INSTRUMENTS instruments x 50 ticks as TickColumns, and reads the server's RSS
while every stream is still open (all answered, none closed), against its RSS before.

    .venv/bin/python benchmarks/instrument_memory.py [INSTRUMENTS] [STREAMS]   # 10000 4

The first stream's figure includes buffers the allocator keeps after its messages, so the
marginal figure (more streams minus one stream) is the state itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_client import TickserveClient
from tickserve_client.client import columns_from_ticks

TICKS_PER_INSTRUMENT = 50  # the feature stage's longest window: the state is full


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def held_mb(port: int, pid: int, instruments: int, streams: int) -> float:
    """RSS with `streams` streams open, each holding `instruments` instruments."""
    base = frame_to_protos(simulate(TICKS_PER_INSTRUMENT, seed=3))
    release, sent = threading.Event(), threading.Semaphore(0)

    def messages(prefix: str):
        for start in range(0, instruments, 200):
            ticks = []
            for tick in base:
                for j in range(start, min(start + 200, instruments)):
                    t = type(tick)()
                    t.CopyFrom(tick)
                    t.instrument = f"{prefix}{j:06d}"
                    ticks.append(t)
            yield columns_from_ticks(ticks)
        sent.release()
        release.wait()  # keep the stream open until RSS is read

    def run(prefix: str) -> None:
        with TickserveClient(f"127.0.0.1:{port}", timeout=600) as client:
            for _ in client.stream_columns(messages(prefix), model="signal-lgbm"):
                pass

    threads = [threading.Thread(target=run, args=(f"S{i}-{streams}-",)) for i in range(streams)]
    for t in threads:
        t.start()
    for _ in threads:
        sent.acquire()
    time.sleep(3)  # the last answers are built
    held = _rss_mb(pid)
    release.set()
    for t in threads:
        t.join()
    return held


def main() -> None:
    instruments = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    streams = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    port = _free_port()
    command = [sys.executable, "-m", "tickserve.cli", "serve", "--models", "models/", "--port", str(port)]
    proc = subprocess.Popen([*command, "--no-signal-log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with TickserveClient(f"127.0.0.1:{port}", timeout=60) as client:
            for _ in range(300):
                try:
                    client.list_models()
                    break
                except Exception:
                    time.sleep(0.1)
        before = _rss_mb(proc.pid)
        one = held_mb(port, proc.pid, instruments, 1)
        many = held_mb(port, proc.pid, instruments, streams)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"RSS idle {before:.0f} MB; 1 stream x {instruments} instruments: {one:.0f} MB held")
    print(f"{streams} streams x {instruments}: {many:.0f} MB held")
    marginal = (many - one) * 1024 / (instruments * (streams - 1)) if streams > 1 else float("nan")
    print(f"per instrument: {(one - before) * 1024 / instruments:.1f} KB (first stream), {marginal:.1f} KB marginal")


if __name__ == "__main__":
    main()
