"""Helpers for benchmarks/run.py: processes, RSS, fast message building, stream drivers.

Every loop here is bounded (a tick list, a deadline, or a queue timeout), every
gRPC call has a deadline, and every process started here is stopped by `stop`.
Streams send pre-serialized bytes and receive bytes (no serializer on either
side), exactly like the echo floor, so the client's own cost is the same for the
floor and for tickserve; answers are parsed and checked after the timing.
"""

from __future__ import annotations

import math
import os
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from tickserve_proto.v1 import tickserve_pb2 as pb

STREAM_SIGNALS = "/tickserve.v1.SignalService/StreamSignals"
EVALUATE = "/tickserve.v1.SignalService/Evaluate"
ECHO = "/bench.Echo/Stream"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GATE_TIMEOUT_S = 60.0  # a request generator waiting longer than this gives up (the call failed)


# --- processes --------------------------------------------------------------------------


def start(cmd: list[str], port_file: Path, log_file: Path, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Start a server that writes its port to `port_file`; (process, "127.0.0.1:port")."""
    log = open(log_file, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            tail = log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd[:4])} did not start:\n{tail}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{int(port_file.read_text())}"


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 15 s: this process only, never by name."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def channel(address: str, own_connection: bool = False) -> grpc.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if own_connection:  # otherwise channels to one target share a TCP connection
        options.append(("grpc.use_local_subchannel_pool", 1))
    ch = grpc.insecure_channel(address, options=options)
    grpc.channel_ready_future(ch).result(timeout=30)
    return ch


# --- messages ---------------------------------------------------------------------------


def protos(frame, start: int = 0, stop: int | None = None) -> list[pb.Tick]:
    """pb.Tick for frame rows [start, stop): the same messages as converters.frame_to_protos,
    about 3x faster (columns to Python lists once, levels trimmed at the first NaN)."""
    stop = len(frame) if stop is None else min(stop, len(frame))
    sl = slice(start, stop)
    inst = frame.instrument[sl].tolist()
    ts = frame.timestamp_ns[sl].tolist()
    lp = frame.last_price[sl].tolist()
    ls = frame.last_size[sl].tolist()
    seq = frame.sequence[sl].tolist()
    side = frame.aggressor[sl].tolist()
    bp, bs, ap, az = (a[sl].tolist() for a in (frame.bid_price, frame.bid_size, frame.ask_price, frame.ask_size))

    def depth(prices: np.ndarray) -> list[int]:
        nan = np.isnan(prices)
        return np.where(nan.any(axis=1), nan.argmax(axis=1), prices.shape[1]).tolist()

    nb, na = depth(frame.bid_price[sl]), depth(frame.ask_price[sl])
    out = []
    Tick = pb.Tick
    for i in range(stop - start):
        b, a = nb[i], na[i]
        t = Tick(
            instrument=inst[i],
            timestamp_ns=ts[i],
            last_price=lp[i],
            last_size=ls[i],
            bid_price=bp[i][:b],
            bid_size=bs[i][:b],
            ask_price=ap[i][:a],
            ask_size=az[i][:a],
        )
        if seq[i] >= 0:
            t.sequence = seq[i]
        if side[i]:
            t.aggressor = pb.SIDE_BUY if side[i] > 0 else pb.SIDE_SELL
        out.append(t)
    return out


def signal_requests(ticks: Sequence[pb.Tick], per_message: int) -> list[bytes]:
    """Serialized StreamSignalsRequest: one `tick` each, or `batch`es of `per_message`."""
    if per_message == 1:
        return [pb.StreamSignalsRequest(tick=t).SerializeToString() for t in ticks]
    return [
        pb.StreamSignalsRequest(batch=pb.TickBatch(ticks=ticks[i : i + per_message])).SerializeToString()
        for i in range(0, len(ticks), per_message)
    ]


def column_requests(ticks: Sequence[pb.Tick], per_message: int) -> list[bytes]:
    """Serialized StreamSignalsRequest carrying `columns` (TickColumns) of `per_message` ticks."""
    from tickserve_client import columns_from_ticks

    return [
        pb.StreamSignalsRequest(columns=columns_from_ticks(ticks[i : i + per_message])).SerializeToString()
        for i in range(0, len(ticks), per_message)
    ]


def evaluate_requests(frame, per_message: int, chunk: int = 50_000, columns: bool = False) -> list[bytes]:
    """Serialized EvaluateRequest batches over the whole frame (TickBatch, or TickColumns with
    `columns`), built chunk by chunk (only the bytes are kept, not a million message objects)."""
    from tickserve_client import frame_columns

    if columns:
        return [pb.EvaluateRequest(columns=m).SerializeToString() for m in frame_columns(frame, per_message)]
    out = []
    for start in range(0, len(frame), chunk):
        ticks = protos(frame, start, start + chunk)
        out.extend(
            pb.EvaluateRequest(batch=pb.TickBatch(ticks=ticks[i : i + per_message])).SerializeToString()
            for i in range(0, len(ticks), per_message)
        )
    return out


def stream_config(model: str) -> bytes:
    return pb.StreamSignalsRequest(config=pb.StreamConfig(model=model)).SerializeToString()


def check_signals(responses: Sequence[bytes], ticks: int, model: str) -> None:
    """Every answer a signal from `model`, one per tick sent."""
    n = 0
    for raw in responses:
        for r in pb.StreamSignalsResponse.FromString(raw).results:
            n += 1
            if r.WhichOneof("result") != "signal":
                raise RuntimeError(f"tick answered with an error: {r.error}")
            if r.signal.model != model:
                raise RuntimeError(f"signal from model {r.signal.model!r}, expected {model!r}")
    if n != ticks:
        raise RuntimeError(f"{n} results for {ticks} ticks")


def check_columns(responses: Sequence[bytes], ticks: int, model: str) -> None:
    """`check_signals` for SignalColumns answers: every row a signal from `model`."""
    n = 0
    for raw in responses:
        cols = pb.StreamSignalsResponse.FromString(raw).columns
        if cols.model != model:
            raise RuntimeError(f"signals from model {cols.model!r}, expected {model!r}")
        if any(cols.code):
            raise RuntimeError(f"ticks answered with errors: {cols.errors[:3]}")
        n += len(cols.code)
    if n != ticks:
        raise RuntimeError(f"{n} results for {ticks} ticks")


# --- stream drivers ---------------------------------------------------------------------


@dataclass
class Trace:
    sent: list[float] = field(default_factory=list)  # perf_counter when request i was handed to gRPC
    recv: list[float] = field(default_factory=list)  # perf_counter when answer i arrived
    responses: list[bytes] = field(default_factory=list)

    def latencies_us(self, skip: int = 0) -> np.ndarray:
        n = min(len(self.sent), len(self.recv))
        return (np.array(self.recv[skip:n]) - np.array(self.sent[skip:n])) * 1e6


def ping_pong(
    call, requests: Sequence[bytes], prefix: Sequence[bytes] = (), stop_at: float = math.inf, timeout: float = 300.0
) -> Trace:
    """One message in flight on one stream: send, wait for its answer, send the next.
    `prefix` messages (a StreamConfig) get no answer and are not timed. Stops after the
    last request or at the first answer after `stop_at` (perf_counter)."""
    gate: queue.Queue = queue.Queue()
    trace = Trace()

    def gen():
        yield from prefix
        for r in requests:
            try:
                gate.get(timeout=GATE_TIMEOUT_S)
            except queue.Empty:
                return
            if time.perf_counter() >= stop_at:
                return
            trace.sent.append(time.perf_counter())
            yield r

    gate.put(1)
    for resp in call(gen(), timeout=timeout):
        trace.recv.append(time.perf_counter())
        trace.responses.append(resp)
        gate.put(1)
    return trace


def pipelined(
    call, requests: Sequence[bytes], prefix: Sequence[bytes] = (), timeout: float = 600.0
) -> tuple[float, list[bytes]]:
    """Send every request without waiting; (seconds from the call to the last answer, answers)."""
    t = time.perf_counter()
    responses = list(call(iter([*prefix, *requests]), timeout=timeout))
    return time.perf_counter() - t, responses


@dataclass
class Concurrent:
    streams: int
    window_s: float
    ticks_in_window: int
    rate: float  # aggregate answers/s inside the window
    latencies_us: np.ndarray  # answers inside the window
    traces: list[Trace]


def concurrent_ping_pong(
    address: str, streams: int, requests: Sequence[bytes], prefix: Sequence[bytes], duration_s: float, warmup: int = 20
) -> Concurrent:
    """`streams` one-at-a-time streams driven by grpc.aio coroutines in one client process.

    A thread per stream (the sync client) made the client, not the server, the bottleneck:
    with 64 streams it used a whole core while the server idled at 0.7 of one. Each stream
    has its own channel (own TCP connection); the rate counts answers inside the window
    where every stream had finished its `warmup` and none had stopped yet."""
    import asyncio

    traces = [Trace() for _ in range(streams)]

    async def one(i: int, start: asyncio.Event, stop_at: list[float]) -> None:
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        async with grpc.aio.insecure_channel(address, options=options) as ch:
            await asyncio.wait_for(ch.channel_ready(), 30)
            call = ch.stream_stream(STREAM_SIGNALS)()
            for p in prefix:
                await call.write(p)
            await start.wait()
            tr = traces[i]
            for r in requests:
                if time.perf_counter() >= stop_at[0]:
                    break
                tr.sent.append(time.perf_counter())
                await call.write(r)
                resp = await asyncio.wait_for(call.read(), 60)
                tr.recv.append(time.perf_counter())
                tr.responses.append(resp)
            await call.done_writing()

    async def run_all() -> float:
        start, stop_at = asyncio.Event(), [math.inf]
        tasks = [asyncio.create_task(one(i, start, stop_at)) for i in range(streams)]
        await asyncio.sleep(0.5)  # let every channel connect
        stop_at[0] = time.perf_counter() + duration_s
        start.set()
        await asyncio.wait_for(asyncio.gather(*tasks), duration_s + 120)
        return stop_at[0]

    stop = asyncio.run(run_all())
    if any(len(tr.recv) <= warmup for tr in traces):
        raise RuntimeError(f"{streams} streams: a stream got no more than {warmup} answers in {duration_s} s")
    begin = max(tr.recv[warmup] for tr in traces)
    end = min(min(stop, tr.recv[-1]) if len(tr.recv) >= len(requests) else stop for tr in traces)
    if end <= begin:
        begin, end = min(tr.sent[0] for tr in traces), max(tr.recv[-1] for tr in traces)
    lat, count = [], 0
    for tr in traces:
        recv = np.array(tr.recv)
        inside = (recv >= begin) & (recv <= end)
        count += int(inside.sum())
        lat_us = tr.latencies_us()
        lat.append(lat_us[inside[: len(lat_us)]])
    return Concurrent(streams, end - begin, count, count / (end - begin), np.concatenate(lat), traces)


def hold_open(call, requests: Sequence[bytes], prefix: Sequence[bytes], at_end, timeout: float = 300.0) -> list[bytes]:
    """Send `requests` one at a time (each after the previous answer); after the last
    answer call `at_end()` while the stream is still open, then half-close it."""
    gate: queue.Queue = queue.Queue()
    closing = threading.Event()

    def gen():
        yield from prefix
        for r in requests:
            try:
                gate.get(timeout=GATE_TIMEOUT_S)
            except queue.Empty:
                return
            yield r
        closing.wait(timeout=GATE_TIMEOUT_S)

    gate.put(1)
    responses = []
    try:
        for resp in call(gen(), timeout=timeout):
            responses.append(resp)
            if len(responses) == len(requests):
                at_end()
                closing.set()
            else:
                gate.put(1)
    finally:
        closing.set()
    return responses
