"""Soak test: many concurrent streams, random client disconnects, every tick accounted for.

    .venv/bin/python benchmarks/soak.py                        # 1,000,000 ticks over 32 streams
    .venv/bin/python benchmarks/soak.py --ticks 40000 --no-record

Starts `tickserve serve` on a model repository (default `models/`, built by `make models`),
then runs `--streams` concurrent StreamSignals streams (one asyncio loop, one channel) that
together send `--ticks` ticks in TickBatch messages of `--min-batch`..`--max-batch` ticks,
up to `--window` messages in flight per stream. Every tick carries a sequence number unique
across the run. After each message sent, a stream disconnects with probability
`--disconnect-rate` (it cancels the call, either at once, with every answer in flight lost to
it, or after reading half of the answers in flight) and resumes on a new stream from its first
unanswered tick. A resumed stream is a new session: its feature state starts cold
(`warmed_up` is false for the first 49 ticks of each instrument on every stream).

Accounting, per tick (by sequence number):
  sent        ticks sent at least once
  resent      ticks sent more than once (in flight, unanswered, at a disconnect)
  answered    ticks with at least one answer received by the client
  lost        ticks sent but never answered by the end of the run
  duplicated  ticks for which the client received two or more answers (over all its streams).
              Resuming from the first unanswered tick, an already answered tick is never sent
              again, so a duplicate means the server answered a tick twice.
Also checked: every answer carries the sequence number expected next on its stream
(`unexpected` otherwise), no answer is a TickError, every stream that ends cleanly answered
all it was sent, and `warmed_up` is false exactly for the first 49 ticks of each instrument on
each stream. Prints a table and, unless --no-record, appends it with the command to
benchmarks/SOAK.md.

`run_soak` is the reusable core (tests/test_soak.py runs a small version in the suite);
`ServerProcess` starts and stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np

from tickserve.cli.launch import serve_command
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
WARM_AFTER = 50  # Signal.warmed_up turns true at the 50th tick of an instrument on a stream
SEQ_STRIDE = 1 << 32  # stream k's ticks are numbered k * SEQ_STRIDE + i
MODES = ("cancel-after-send", "cancel-after-half")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


# --- the server process ----------------------------------------------------------------------


class ServerProcess:
    """`tickserve serve` on a free loopback port, in its own process. stderr goes to `log`."""

    def __init__(self, models: Path, workdir: Path, *, grace: float = 5.0, extra: tuple[str, ...] = ()) -> None:
        ready = workdir / "soak-port"
        ready.unlink(missing_ok=True)
        self.log = workdir / "soak-server.log"
        self.command = serve_command(models, ready, "--grace", str(grace), *extra)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (ready.exists() and ready.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"tickserve serve did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{int(ready.read_text())}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (resident now) and VmHWM (peak resident) from /proc/<pid>/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (graceful), then the exit code; SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


# --- the soak --------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    ticks: int = 1_000_000
    streams: int = 32
    model: str = "signal-lgbm"
    min_batch: int = 50
    max_batch: int = 200
    window: int = 4  # messages in flight per stream
    disconnect_rate: float = 0.02  # per message sent
    seed: int = 1
    base_ticks: int = 3_000  # simulated ticks per base frame (cycled with shifted timestamps)
    call_timeout: float = 600.0
    max_failures: int = 20  # consecutive failed connections of one stream before giving up


@dataclass
class SoakResult:
    config: SoakConfig
    sent: int = 0
    transmissions: int = 0
    resent: int = 0
    answered: int = 0
    lost: int = 0
    duplicated: int = 0
    never_sent: int = 0
    unexpected: int = 0
    tick_errors: int = 0
    unanswered_at_clean_end: int = 0
    warmup_mismatches: int = 0
    cold_answers: int = 0
    connections: int = 0
    disconnects: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # connections the server ended with an error, by code
    elapsed_s: float = 0.0
    memory: dict[str, dict[str, int]] = field(default_factory=dict)  # "before"/"after" -> VmRSS, VmHWM (KiB)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.never_sent == 0
            and self.unexpected == 0
            and self.tick_errors == 0
            and self.unanswered_at_clean_end == 0
            and self.warmup_mismatches == 0
            and not self.failures
            and self.answered == self.config.ticks
        )

    def rows(self) -> list[tuple[str, str]]:
        c = self.config
        rows = [
            ("ticks (streams x ticks each)", f"{c.ticks:,} ({c.streams} x ~{c.ticks // c.streams:,})"),
            ("sent (distinct ticks)", f"{self.sent:,}"),
            ("transmissions (incl. resends)", f"{self.transmissions:,}"),
            ("resent (in flight at a disconnect)", f"{self.resent:,}"),
            ("answered", f"{self.answered:,}"),
            ("lost", f"{self.lost:,}"),
            ("duplicated", f"{self.duplicated:,}"),
            ("unexpected answers (wrong sequence)", f"{self.unexpected:,}"),
            ("tick errors", f"{self.tick_errors:,}"),
            ("unanswered at a clean stream end", f"{self.unanswered_at_clean_end:,}"),
            ("streams opened (first + resumed)", f"{self.connections:,}"),
            ("client disconnects", ", ".join(f"{k} {v:,}" for k, v in sorted(self.disconnects.items())) or "0"),
            (
                "streams ended by the server with an error",
                ", ".join(f"{k} {v}" for k, v in self.failures.items()) or "0",
            ),
            ("cold answers (warmed_up false)", f"{self.cold_answers:,} (warm-up mismatches: {self.warmup_mismatches})"),
            ("elapsed", f"{self.elapsed_s:.1f} s ({self.transmissions / max(self.elapsed_s, 1e-9):,.0f} ticks/s)"),
        ]
        if self.memory:
            b, a = self.memory.get("before", {}), self.memory.get("after", {})
            rows.append(
                (
                    "server RSS before / after",
                    f"{b.get('VmRSS', 0) / 1024:.1f} MiB / {a.get('VmRSS', 0) / 1024:.1f} MiB "
                    f"({(a.get('VmRSS', 0) - b.get('VmRSS', 0)) / 1024:+.1f} MiB)",
                )
            )
            rows.append(("server peak RSS (VmHWM)", f"{a.get('VmHWM', 0) / 1024:.1f} MiB"))
        return rows

    def table(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(
            f"| {k:<{width}} | {v} |" for k, v in [("figure", "value"), ("-" * width, "---"), *self.rows()]
        )


class _StreamState:
    """One logical stream: its ticks (built on demand from a base frame) and their accounting."""

    def __init__(self, k: int, n: int, base: list[pb.Tick]) -> None:
        self.k = k
        self.n = n
        self.base = base
        self.seq0 = k * SEQ_STRIDE
        self.span = base[-1].timestamp_ns - base[0].timestamp_ns + 1_000_000
        self.sent = np.zeros(n, dtype=np.int32)
        self.answered = np.zeros(n, dtype=np.int32)
        self.next_unanswered = 0
        self.failures_in_a_row = 0

    def message(self, start: int, count: int) -> pb.StreamSignalsRequest:
        msg = pb.StreamSignalsRequest()
        out = msg.batch.ticks
        size = len(self.base)
        i = start
        while i < start + count:  # contiguous runs of the base frame, then shift and number them
            offset, cycle = i % size, i // size
            run = min(start + count - i, size - offset)
            out.extend(self.base[offset : offset + run])
            shift = cycle * self.span
            for j, t in enumerate(out[len(out) - run :]):
                t.sequence = self.seq0 + i + j
                if shift:
                    t.timestamp_ns += shift
            i += run
        return msg

    def advance(self) -> None:
        while self.next_unanswered < self.n and self.answered[self.next_unanswered] > 0:
            self.next_unanswered += 1


async def _connection(stub, st: _StreamState, cfg: SoakConfig, rng: np.random.Generator, res: SoakResult) -> bool:
    """One StreamSignals call from the first unanswered tick on. True if it ended cleanly."""
    pos = st.next_unanswered
    expected: deque[tuple[int, int]] = deque()  # (first tick, count) of each message awaiting its answer
    counts: Counter = Counter()  # ticks per instrument answered on this stream so far (warm-up check)
    plan: list | None = None  # [mode, answers still to read before cancelling]
    call = stub.StreamSignals(timeout=cfg.call_timeout)
    res.connections += 1
    try:
        await call.write(pb.StreamSignalsRequest(config=pb.StreamConfig(model=cfg.model)))
        while True:
            if plan is not None and plan[1] <= 0:
                call.cancel()
                res.disconnects[plan[0]] += 1
                return False
            if plan is None and pos < st.n and len(expected) < cfg.window:
                size = min(int(rng.integers(cfg.min_batch, cfg.max_batch + 1)), st.n - pos)
                await call.write(st.message(pos, size))
                st.sent[pos : pos + size] += 1
                res.transmissions += size
                expected.append((pos, size))
                pos += size
                if rng.random() < cfg.disconnect_rate:
                    mode = MODES[int(rng.integers(len(MODES)))]
                    plan = [mode, 0 if mode == "cancel-after-send" else len(expected) // 2]
                continue
            if not expected:  # everything sent and answered: end the stream cleanly
                await call.done_writing()
                extra = await call.read()
                if extra is not grpc.aio.EOF:
                    res.unexpected += len(extra.results)
                code = await call.code()
                if code != grpc.StatusCode.OK:
                    res.failures[code.name] += 1
                    return False
                return True
            response = await call.read()
            if response is grpc.aio.EOF:  # the server ended the stream with answers outstanding
                code = await call.code()
                if code == grpc.StatusCode.OK:
                    res.unanswered_at_clean_end += sum(n for _, n in expected)
                else:
                    res.failures[code.name] += 1
                return False
            first, size = expected.popleft()
            _account(st, response, first, size, counts, res)
            if plan is not None:
                plan[1] -= 1
    except grpc.aio.AioRpcError as exc:
        res.failures[exc.code().name] += 1
        return False


def _account(
    st: _StreamState, response: pb.StreamSignalsResponse, first: int, size: int, counts: Counter, res: SoakResult
) -> None:
    results = response.results
    if len(results) != size:
        res.unexpected += abs(len(results) - size)
    answered = st.answered
    for j, r in enumerate(results):
        kind = r.WhichOneof("result")
        if kind != "signal":
            res.tick_errors += 1
            local = r.error.sequence - st.seq0
        else:
            s = r.signal
            local = s.sequence - st.seq0
            counts[s.instrument] += 1
            cold = not s.warmed_up
            res.cold_answers += cold
            if cold != (counts[s.instrument] < WARM_AFTER):
                res.warmup_mismatches += 1
        if local != first + j:
            res.unexpected += 1
        if 0 <= local < st.n:
            answered[local] += 1


async def _stream(stub, st: _StreamState, cfg: SoakConfig, rng: np.random.Generator, res: SoakResult) -> None:
    while st.next_unanswered < st.n:
        clean = await _connection(stub, st, cfg, rng, res)
        before = st.next_unanswered
        st.advance()
        if clean or st.next_unanswered > before:
            st.failures_in_a_row = 0
        else:
            st.failures_in_a_row += 1
            if st.failures_in_a_row >= cfg.max_failures:
                raise RuntimeError(
                    f"stream {st.k}: {cfg.max_failures} connections in a row made no progress ({dict(res.failures)})"
                )
            await asyncio.sleep(0.05 * st.failures_in_a_row)


def _bases(cfg: SoakConfig) -> list[list[pb.Tick]]:
    from tickserve.serving.converters import frame_to_protos
    from tickserve.simulate import simulate

    return [frame_to_protos(simulate(cfg.base_ticks, seed=cfg.seed * 1000 + b)) for b in range(min(cfg.streams, 8))]


async def run_soak(address: str, cfg: SoakConfig, server: ServerProcess | None = None) -> SoakResult:
    """Run the soak against a server at `address`; the server's memory is read if `server` is given."""
    res = SoakResult(cfg)
    bases = _bases(cfg)
    per = [cfg.ticks // cfg.streams + (1 if k < cfg.ticks % cfg.streams else 0) for k in range(cfg.streams)]
    states = [_StreamState(k, per[k], bases[k % len(bases)]) for k in range(cfg.streams)]
    rng = np.random.default_rng(cfg.seed)
    rngs = [np.random.default_rng(s) for s in rng.integers(0, 2**63, size=cfg.streams)]
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if server is not None:
        res.memory["before"] = server.memory_kib()
    started = time.monotonic()
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.SignalServiceStub(channel)
        await asyncio.gather(*(_stream(stub, st, cfg, r, res) for st, r in zip(states, rngs)))
    res.elapsed_s = time.monotonic() - started
    if server is not None:
        await asyncio.sleep(1.0)  # let the server close the streams' state
        res.memory["after"] = server.memory_kib()
    sent = np.concatenate([st.sent for st in states])
    answered = np.concatenate([st.answered for st in states])
    res.sent = int((sent > 0).sum())
    res.resent = int((sent > 1).sum())
    res.never_sent = int((sent == 0).sum())
    res.answered = int((answered > 0).sum())
    res.lost = int(((sent > 0) & (answered == 0)).sum())
    res.duplicated = int((answered > 1).sum())
    return res


# --- the command -----------------------------------------------------------------------------


def _has_models(models: Path) -> bool:
    return models.is_dir() and any(models.glob("*/*/manifest.json"))


def _server_command(cmd: list[str]) -> str:
    """The server's command line as a user would type it (no temporary ready file)."""
    args = cmd[3:]
    if "--ready-file" in args:
        i = args.index("--ready-file")
        del args[i : i + 2]
    return shlex.join(["tickserve", *(os.path.relpath(a) if a.startswith(str(ROOT)) else a for a in args)])


def _record(path: Path, command: str, result: SoakResult, exit_code: int, server_cmd: list[str]) -> None:
    cpus = os.cpu_count()
    lines = [
        "",
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {result.config.ticks:,} ticks, "
        f"{result.config.streams} streams, model {result.config.model}",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {platform.machine()}, {cpus} CPUs, Linux {platform.release()}; Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}. Server: `{_server_command(server_cmd)}` "
        f"(exit code after SIGTERM: {exit_code}). Batches of {result.config.min_batch}-{result.config.max_batch} ticks, "
        f"up to {result.config.window} messages in flight per stream, disconnect probability "
        f"{result.config.disconnect_rate} per message, seed {result.config.seed}. "
        f"Result: {'PASS' if result.ok else 'FAIL'}.",
        "",
        result.table(),
        "",
    ]
    with open(path, "a") as f:
        f.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=1_000_000)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default: models/)")
    p.add_argument("--model", default="signal-lgbm")
    p.add_argument("--min-batch", type=int, default=50)
    p.add_argument("--max-batch", type=int, default=200)
    p.add_argument("--window", type=int, default=4, help="messages in flight per stream")
    p.add_argument("--disconnect-rate", type=float, default=0.02, help="probability of a disconnect per message")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--record", type=Path, default=ROOT / "benchmarks" / "SOAK.md", help="append the figures here")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    if not _has_models(args.models):
        print(
            f"soak: no model repository at {args.models}: run `make models` first (it trains signal-lgbm, "
            f"signal-xgb, signal-onnx and signal-ensemble into models/), or pass --models DIR",
            file=sys.stderr,
        )
        return 2
    if not (1 <= args.min_batch <= args.max_batch) or args.ticks < args.streams or args.streams < 1:
        p.error("need 1 <= --min-batch <= --max-batch and --ticks >= --streams >= 1")
    cfg = SoakConfig(
        ticks=args.ticks,
        streams=args.streams,
        model=args.model,
        min_batch=args.min_batch,
        max_batch=args.max_batch,
        window=args.window,
        disconnect_rate=args.disconnect_rate,
        seed=args.seed,
    )
    python = (
        os.path.relpath(sys.executable, Path.cwd()) if sys.executable.startswith(str(Path.cwd())) else sys.executable
    )
    command = shlex.join([python, *sys.argv]) if argv is None else shlex.join([python, "benchmarks/soak.py", *argv])
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        with ServerProcess(args.models, Path(tmp)) as server:
            print(
                f"soak: server pid {server.pid} on {server.address}; {cfg.ticks:,} ticks over {cfg.streams} streams",
                flush=True,
            )
            result = asyncio.run(run_soak(server.address, cfg, server))
            exit_code = server.stop()
        if exit_code != 0:
            print((Path(tmp) / "soak-server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
    print(result.table())
    print(f"server exit code after SIGTERM: {exit_code}")
    print("PASS" if result.ok and exit_code == 0 else "FAIL")
    if not args.no_record:
        _record(args.record, command, result, exit_code, server.command)
        print(f"appended to {args.record}")
    return 0 if result.ok and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
