"""tickserve benchmarks: `make bench` (= `.venv/bin/python benchmarks/run.py [--quick] [--no-mlserver]`).

The machine is noisy (2 shared cores), so every figure is printed beside a
reference measured in the same run, and the ratio is what to read:

  1. floor: a bare grpc.aio bidirectional echo in its own process
     (benchmarks/echo_server.py, tickserve's server options, a response of a
     signal's size);
  2. StreamSignals, one stream, one tick per message, ping-pong: p50/p99 round
     trip per adapter (lightgbm, xgboost, onnx, ensemble), all served by one
     real `tickserve serve` process; rounds interleave the floor and the four
     models so drift hits them alike;
  3. pipelined StreamSignals throughput (LightGBM): 1 tick per message,
     TickBatch messages of 100 and 1,000 ticks, and TickColumns messages of
     1,000 ticks (the columnar path, 3e);
  4. 1, 8 and 64 concurrent one-at-a-time streams (LightGBM), each on its own
     channel and connection, driven from its own thread, for a fixed time:
     aggregate ticks/s and p99;
  5. Evaluate over 1M simulated ticks (--quick: 100k), in TickBatch (5a) and in
     TickColumns (5b) messages of 1,000, serialized before the clock starts;
  6. the feature stage alone: streaming us/tick and batch rows/s;
  7. each adapter alone, in this process: single-row p50/p99 of
     adapter.predict_proba (raw) and LoadedModel.predict (with calibration),
     rows/s in batches of 1,000 rows and in one large call; signal-lgbm as
     served (compiled by lleaves) and as LightGBM itself ("lightgbm native");
  8. MLServer 1.7.1 serving the same LightGBM model (its own venv; `--no-mlserver` skips it);
  9. memory: the server process's VmRSS idle with no model, with every default
     model loaded, and with one open stream holding 1,000 instruments of state;
 10. the durable signal log (`--signal-log-durable`: an answer waits for its rows' commit):
     one-tick ping-pong and 1,000 ticks/message against the default log, interleaved;
then the TARGETS table, each computed from this run's figures.

The models are the default repository's (`tickserve demo`): signal-lgbm,
signal-xgb and signal-onnx trained with the default parameters on the same 60,000
simulated ticks (seed 1), and signal-ensemble (soft voting, equal weights), in a
temporary repository. Results go to stdout and to benchmarks/RESULTS.md.
Everything is loopback, every loop is bounded, every process is stopped in a
finally block.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lib import (  # noqa: E402
    ECHO,
    EVALUATE,
    STREAM_SIGNALS,
    channel,
    check_columns,
    check_signals,
    column_requests,
    concurrent_ping_pong,
    cpu_seconds,
    evaluate_requests,
    hold_open,
    ping_pong,
    pipelined,
    protos,
    rss_bytes,
    signal_requests,
    start,
    stop,
    stream_config,
)

from tickserve.cli.launch import serve_command  # noqa: E402
from tickserve.features import FeatureConfig, StreamingFeatures, batch_features  # noqa: E402
from tickserve.models.ensemble import ensemble_manifest  # noqa: E402
from tickserve.models.manifest import ModelManifest  # noqa: E402
from tickserve.models.repository import LoadedModel, ModelRepository  # noqa: E402
from tickserve.plugins.manager import load_plugins  # noqa: E402
from tickserve.serving.converters import frame_to_protos  # noqa: E402
from tickserve.simulate import simulate  # noqa: E402
from tickserve.training import train_model  # noqa: E402
from tickserve_proto.v1 import tickserve_pb2 as pb  # noqa: E402

HERE = Path(__file__).resolve().parent

# (adapter, model name, train parameters): the default repository of `tickserve demo`
MODELS = (
    ("lightgbm", "signal-lgbm", {}),
    ("xgboost", "signal-xgb", {}),
    ("onnx", "signal-onnx", {"source": "lightgbm"}),
)
ENSEMBLE = ("ensemble", "signal-ensemble")
ALL = [(a, n) for a, n, _ in MODELS] + [ENSEMBLE]
LGBM = "signal-lgbm"
LGBM_NATIVE = "signal-lgbm (lightgbm native)"  # the same model without the compiled artifact
TRAIN_TICKS, TRAIN_SEED = 60_000, 1
MB = 1_000_000  # targets are in MB = 10^6 bytes (stricter than MiB)


@dataclass(frozen=True)
class Counts:
    rounds: int  # 1+2: interleaved ping-pong rounds
    round_ticks: int  # ticks per stream per round
    warmup: int  # answers dropped at the start of each ping-pong stream
    pipe1: int  # 3: ticks sent one per message
    pipe100: int
    pipe1000: int
    conc_seconds: float  # 4: how long each concurrency level runs
    conc_cap: int  # at most this many ticks per stream
    evaluate: int  # 5
    feat_stream: int  # 6
    feat_batch: int
    single: int  # 7: single-row calls per adapter
    batch_rows: int  # 7: rows in the batch measurements
    instruments: int = 1_000  # 9
    per_instrument: int = 60


FULL = Counts(
    rounds=5,
    round_ticks=1_000,
    warmup=50,
    pipe1=10_000,
    pipe100=50_000,
    pipe1000=100_000,
    conc_seconds=6.0,
    conc_cap=20_000,
    evaluate=1_000_000,
    feat_stream=20_000,
    feat_batch=200_000,
    single=2_000,
    batch_rows=20_000,
)
QUICK = Counts(
    rounds=2,
    round_ticks=300,
    warmup=50,
    pipe1=1_000,
    pipe100=5_000,
    pipe1000=10_000,
    conc_seconds=1.5,
    conc_cap=5_000,
    evaluate=100_000,
    feat_stream=3_000,
    feat_batch=50_000,
    single=500,
    batch_rows=5_000,
)

ROWS: list[tuple[str, str, str]] = []  # (scenario, figure, ratio)
TARGETS: list[tuple[str, str, str, str]] = []  # (target, figures, ratio vs limit, MET/MISSED/n/a)


def record(scenario: str, figure: str, ratio: str = "") -> None:
    ROWS.append((scenario, figure, ratio))
    print(f"{scenario:58s} {figure:40s} {ratio}", flush=True)


FEATURE_RATES: dict[str, float] = {}
NOTES: list[str] = []


def target(name: str, figures: str, ratio: float | None, limit: float, at_most: bool) -> None:
    if ratio is None:
        TARGETS.append((name, figures, "n/a", "n/a (skipped)"))
        return
    met = ratio <= limit if at_most else ratio >= limit
    margin = (ratio / limit - 1) * 100
    side = "over" if margin > 0 else "under"
    TARGETS.append(
        (
            name,
            figures,
            f"{ratio:.2f}x (limit {'<=' if at_most else '>='} {limit:g}x: {abs(margin):.0f}% {side} the limit)",
            "MET" if met else "MISSED",
        )
    )


def pct(a: np.ndarray) -> str:
    return f"p50 {np.percentile(a, 50):6.0f} us  p99 {np.percentile(a, 99):6.0f} us"


def p50(a: np.ndarray) -> float:
    return float(np.percentile(a, 50))


def serve_cmd(models: Path, port_file: Path) -> list[str]:
    return serve_command(models, port_file)


def server_only_cmd(models: Path, port_file: Path) -> list[str]:
    """The same server, with pandas unimportable (as in a deployment without the dashboard)."""
    return serve_command(
        models, port_file, launcher=(sys.executable, str(Path(__file__).with_name("serve_server_only.py")))
    )


# --- the models ------------------------------------------------------------------------


def build_models(models: Path) -> None:
    """The default repository: three adapters on the same ticks, and their ensemble."""
    adapters = load_plugins().adapters
    frame = simulate(TRAIN_TICKS, seed=TRAIN_SEED)
    manifests = []
    for adapter, name, params in MODELS:
        if adapter not in adapters:
            raise RuntimeError(f"adapter {adapter!r} is not installed (run `make install`)")
        t = time.perf_counter()
        _, manifest = train_model(
            frame, adapter=adapters[adapter], models_dir=models, name=name, version="1", params=dict(params)
        )
        manifests.append(manifest)
        print(
            f"  {name:16s} ({adapter}) trained in {time.perf_counter() - t:4.1f} s, "
            f"{int(manifest.metrics.get('best_iteration', 0))} rounds",
            flush=True,
        )
    target_dir = models / ENSEMBLE[1] / "1"
    target_dir.mkdir(parents=True)
    ensemble_manifest(ENSEMBLE[1], "1", [(m, 1.0) for m in manifests]).save(target_dir)
    # the compiled path, as `tickserve compile` builds it (the full level): served by the
    # server process and measured in 7, beside LightGBM itself
    t = time.perf_counter()
    built = adapters["lightgbm"].compile(models / LGBM / "1", manifests[0])
    COMPILE_NOTE.append(f"{LGBM}: {built} in {time.perf_counter() - t:.1f} s")
    print(f"  {COMPILE_NOTE[-1]}", flush=True)


COMPILE_NOTE: list[str] = []


# --- 6. feature stage, 7. adapters: in this process --------------------------------------


def feature_stage(frame, counts: Counts) -> None:
    config = FeatureConfig()
    own = list(frame.take(slice(0, counts.feat_stream)).ticks())
    stage = StreamingFeatures(config)
    t = time.perf_counter()
    for tick in own:
        stage.update(tick)
    per_tick = (time.perf_counter() - t) / len(own) * 1e6
    FEATURE_RATES["streaming"] = 1e6 / per_tick
    record("6a. feature stage alone, streaming", f"{per_tick:7.1f} us/tick", f"{1e6 / per_tick:.0f} ticks/s")
    big = simulate(counts.feat_batch, seed=3)
    t = time.perf_counter()
    batch_features(big, config)
    rows = len(big) / (time.perf_counter() - t)
    FEATURE_RATES["batch"] = rows
    record("6b. feature stage alone, batch", f"{rows:9.0f} rows/s", f"{rows / (1e6 / per_tick):.1f}x streaming")


@dataclass
class AdapterFigures:
    raw_p50: float
    raw_p99: float
    predict_p50: float
    batch1000: float  # rows/s, batches of 1,000 rows
    batch_big: float  # rows/s, one call


def adapter_alone(label: str, model: LoadedModel, x: np.ndarray, counts: Counts) -> AdapterFigures:
    a = model.adapter
    for i in range(100):  # warm-up (onnxruntime, xgboost's thread pools)
        a.predict_proba(x[i : i + 1])
        model.predict(x[i : i + 1])
    raw, cal = [], []
    for i in range(counts.single):
        row = x[i % len(x)][None, :]
        t = time.perf_counter()
        a.predict_proba(row)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.predict(row)
        cal.append(time.perf_counter() - t)
    raw_us, cal_us = np.array(raw) * 1e6, np.array(cal) * 1e6
    rows = x[: counts.batch_rows]
    a.predict_proba(rows[:1000])
    passes = []
    for _ in range(3):  # the median of three passes: this rate is the reference of two targets
        t = time.perf_counter()
        for i in range(0, len(rows), 1000):
            a.predict_proba(rows[i : i + 1000])
        passes.append(len(rows) / (time.perf_counter() - t))
    b1000 = float(np.median(passes))
    t = time.perf_counter()
    a.predict_proba(rows)
    big = len(rows) / (time.perf_counter() - t)
    record(f"7a. {label} adapter alone, single row, predict_proba", pct(raw_us), "raw (reference)")
    record(
        f"7b. {label} LoadedModel.predict, single row (+calibration)",
        pct(cal_us),
        f"{p50(cal_us) / p50(raw_us):.2f}x raw p50",
    )
    record(
        f"7c. {label} adapter alone, batches of 1,000 rows (median of 3 passes)",
        f"{b1000:9.0f} rows/s",
        f"{b1000 / (1e6 / p50(raw_us)):.1f}x single-row rate",
    )
    record(
        f"7d. {label} adapter alone, one call of {len(rows):,} rows",
        f"{big:9.0f} rows/s",
        f"{big / b1000:.2f}x batches of 1,000",
    )
    return AdapterFigures(p50(raw_us), float(np.percentile(raw_us, 99)), p50(cal_us), b1000, big)


# --- 8. MLServer serving the same LightGBM model ------------------------------------------


def mlserver_scenario(args: argparse.Namespace, model_file: Path, n_features: int, counts: Counts) -> dict | None:
    """Scenario 8: MLServer 1.7.1 + mlserver-lightgbm (own venv, benchmarks/.venv-mlserver, made on
    first use: ~50 s) serving `model_file`, measured with tritonclient ModelInfer; None = skipped."""
    if args.no_mlserver:
        return None
    sys.path.insert(0, str(HERE))
    import mlserver_bench

    try:
        result = mlserver_bench.measure(
            model_file,
            n_features,
            single=counts.single,
            batch_rows=1000,
            batches=max(1, counts.batch_rows // 1000) * 10,
        )
    except Exception as exc:  # the comparison must not sink the rest of the run
        print(f"8. MLServer: skipped, it failed: {type(exc).__name__}: {exc}", flush=True)
        return None
    if "batch_rows_per_s" in result:
        record(
            "8b. MLServer 1.7.1 (PARALLEL_WORKERS=0), 1,000-row ModelInfer", f"{result['batch_rows_per_s']:9.0f} rows/s"
        )
    return result


# --- 1-5: one `tickserve serve` process and the echo floor --------------------------------


@dataclass
class Figures:
    """What the targets are computed from."""

    adapters: dict[str, AdapterFigures] = field(default_factory=dict)  # by model name
    floor50: float = 0.0
    ts50: dict[str, float] = field(default_factory=dict)  # StreamSignals ping-pong p50 by model name
    pipelined: dict[int, float] = field(default_factory=dict)  # ticks/s by ticks per message
    columns1000: float = 0.0  # ticks/s, 1,000 ticks per TickColumns message
    evaluate: float = 0.0  # ticks/s, TickBatch of 1,000
    evaluate_columns: float = 0.0  # ticks/s, TickColumns of 1,000
    n_evaluate: int = 0
    streams: dict[int, float] = field(default_factory=dict)  # aggregate ticks/s by concurrent streams
    rss_idle: int = 0
    rss_models: int = 0
    rss_state: int = 0
    rss_after_1_5: int = 0
    mlserver: dict | None = None

    @property
    def lgbm_batch(self) -> float:
        return self.adapters[LGBM].batch1000


def server_scenarios(
    tmp: Path,
    models_dir: Path,
    ticks: list,
    ev_requests: list[bytes],
    ev_columns: list[bytes],
    n_eval: int,
    response_bytes: int,
    counts: Counts,
    fig: Figures,
    procs: list,
) -> None:
    one = signal_requests(ticks[: counts.round_ticks], 1)
    pipe1 = signal_requests(ticks[: counts.pipe1], 1)
    batched = {
        100: signal_requests(ticks[: counts.pipe100], 100),
        1000: signal_requests(ticks[: counts.pipe1000], 1000),
    }
    columns1000 = column_requests(ticks[: counts.pipe1000], 1000)
    conc = signal_requests(ticks[: counts.conc_cap], 1)

    echo, echo_addr = start(
        [sys.executable, str(HERE / "echo_server.py"), str(tmp / "echo.port"), str(response_bytes)],
        tmp / "echo.port",
        tmp / "echo.log",
    )
    procs.append(echo)
    serve, serve_addr = start(serve_cmd(models_dir, tmp / "serve.port"), tmp / "serve.port", tmp / "serve.log")
    procs.append(serve)
    echo_ch, ts_ch = channel(echo_addr), channel(serve_addr)
    try:
        echo_call = echo_ch.stream_stream(ECHO)
        ts_call = ts_ch.stream_stream(STREAM_SIGNALS)
        lgbm_cfg = [stream_config(LGBM)]

        # 1 + 2: interleaved rounds (the floor, then each model, each on a fresh stream)
        print(
            f"\n-- one stream, one tick at a time: {counts.rounds} rounds x {counts.round_ticks} ticks "
            f"(first {counts.warmup} of each stream dropped)",
            flush=True,
        )
        lat: dict[str, list[np.ndarray]] = {k: [] for k in ["floor", *(n for _, n in ALL)]}
        for _ in range(counts.rounds):
            lat["floor"].append(ping_pong(echo_call, one).latencies_us(counts.warmup))
            for _, name in ALL:
                tr = ping_pong(ts_call, one, [stream_config(name)])
                check_signals(tr.responses, len(one), name)
                lat[name].append(tr.latencies_us(counts.warmup))
        floor = np.concatenate(lat["floor"])
        fig.floor50 = p50(floor)
        record("1. floor: bare grpc echo, 1 msg ping-pong", pct(floor), "1.00x (reference)")
        for label, name in ALL:
            ours = np.concatenate(lat[name])
            fig.ts50[name] = p50(ours)
            bound = fig.floor50 + fig.adapters[name].raw_p50
            record(
                f"2. StreamSignals {label} ({name}), 1 tick ping-pong",
                pct(ours),
                f"{fig.ts50[name] / fig.floor50:.2f}x floor p50; {fig.ts50[name] / bound:.2f}x (floor + adapter p50)",
            )

        # 3: pipelined
        print("\n-- pipelined StreamSignals (signal-lgbm)", flush=True)
        secs, _ = pipelined(echo_call, pipe1)
        floor_tp = len(pipe1) / secs
        record("3a. floor: bare grpc echo, pipelined 1 msg", f"{floor_tp:9.0f} msg/s", "1.00x (reference)")
        secs, resp = pipelined(ts_call, pipe1, lgbm_cfg)
        check_signals(resp, len(pipe1), LGBM)
        tp1 = fig.pipelined[1] = len(pipe1) / secs
        record(
            "3b. StreamSignals pipelined, 1 tick/message", f"{tp1:9.0f} ticks/s", f"{tp1 / floor_tp:.2f}x floor msg/s"
        )
        for (per, reqs), letter in zip(batched.items(), "cd"):
            n = {100: counts.pipe100, 1000: counts.pipe1000}[per]
            secs, resp = pipelined(ts_call, reqs, lgbm_cfg)
            check_signals(resp, n, LGBM)
            rate = fig.pipelined[per] = n / secs
            record(
                f"3{letter}. StreamSignals pipelined, {per:,} ticks/message",
                f"{rate:9.0f} ticks/s",
                f"{rate / fig.lgbm_batch:.2f}x lightgbm raw batch rows/s; {rate / tp1:.1f}x 1 tick/message",
            )
        secs, resp = pipelined(ts_call, columns1000, lgbm_cfg)
        check_columns(resp, counts.pipe1000, LGBM)
        rate = fig.columns1000 = counts.pipe1000 / secs
        record(
            "3e. StreamSignals pipelined, 1,000 ticks per TickColumns message",
            f"{rate:9.0f} ticks/s",
            f"{rate / fig.lgbm_batch:.2f}x lightgbm raw batch rows/s; {rate / fig.pipelined[1000]:.1f}x 3d (TickBatch)",
        )

        # 4: concurrent one-at-a-time streams
        print(f"\n-- concurrent one-tick-at-a-time streams (signal-lgbm), {counts.conc_seconds:g} s each", flush=True)
        for k, letter in zip((1, 8, 64), "abc"):
            cpu0, own0, wall0 = cpu_seconds(serve.pid), cpu_seconds(os.getpid()), time.perf_counter()
            c = concurrent_ping_pong(serve_addr, k, conc, lgbm_cfg, counts.conc_seconds)
            wall = time.perf_counter() - wall0
            busy = (
                f"server {(cpu_seconds(serve.pid) - cpu0) / wall:.2f} cores, "
                f"client {(cpu_seconds(os.getpid()) - own0) / wall:.2f} cores"
            )
            for tr in c.traces:
                check_signals(tr.responses, len(tr.sent), LGBM)
            fig.streams[k] = c.rate
            record(
                f"4{letter}. {k} concurrent stream{'s' if k > 1 else ''}, 1 tick ping-pong each",
                f"{c.rate:7.0f} ticks/s  p99 {np.percentile(c.latencies_us, 99):6.0f} us",
                ("1.00x (reference)" if k == 1 else f"{c.rate / fig.streams[1]:.2f}x 1 stream")
                + f" (p50 {p50(c.latencies_us):.0f} us, {c.ticks_in_window} ticks in {c.window_s:.1f} s; {busy})",
            )

        # 5: Evaluate
        ev_cfg = pb.EvaluateRequest(config=pb.EvaluateConfig(model=LGBM, progress_every=100_000)).SerializeToString()
        for letter, encoding, requests in (("a", "TickBatch", ev_requests), ("b", "TickColumns", ev_columns)):
            print(f"\n-- Evaluate over {n_eval:,} ticks (signal-lgbm, {encoding} of 1,000)", flush=True)
            secs, resp = pipelined(ts_ch.stream_stream(EVALUATE), requests, [ev_cfg], timeout=900)
            report = pb.EvaluateResponse.FromString(resp[-1])
            if report.WhichOneof("payload") != "report" or report.report.ticks != n_eval:
                raise RuntimeError(f"Evaluate: no report for {n_eval} ticks: {str(report)[:300]}")
            rate = n_eval / secs
            if letter == "a":
                fig.evaluate, reference = rate, report.report
            else:
                fig.evaluate_columns = rate
                if report.report != reference:
                    raise RuntimeError("Evaluate: TickColumns and TickBatch gave different reports")
            record(
                f"5{letter}. Evaluate, {n_eval:,} ticks in {encoding} of 1,000",
                f"{rate:9.0f} ticks/s",
                f"{rate / fig.lgbm_batch:.2f}x lightgbm raw batch rows/s ({secs:.1f} s, accuracy "
                f"{report.report.accuracy:.3f})",
            )
        fig.n_evaluate = n_eval
        durable_log_scenario(tmp, models_dir, ts_call, one, batched[1000], counts, procs)
        fig.rss_after_1_5 = rss_bytes(serve.pid)
    finally:
        echo_ch.close()
        ts_ch.close()
        stop(echo)
        stop(serve)


# --- 9. memory ----------------------------------------------------------------------------


def durable_log_scenario(tmp: Path, models_dir: Path, ts_call, one, batch1000, counts: Counts, procs: list) -> None:
    """10: what --signal-log-durable costs, against the default server (same run, interleaved)."""
    print("\n-- durable signal log (--signal-log-durable) vs the default log (signal-lgbm)", flush=True)
    cmd = [
        *serve_cmd(models_dir, tmp / "durable.port"),
        "--signal-log",
        str(tmp / "durable.db"),
        "--signal-log-durable",
    ]
    durable, address = start(cmd, tmp / "durable.port", tmp / "durable.log")
    procs.append(durable)
    du_ch = channel(address)
    try:
        du_call = du_ch.stream_stream(STREAM_SIGNALS)
        cfg = [stream_config(LGBM)]
        base, dur = [], []
        for _ in range(counts.rounds):
            base.append(ping_pong(ts_call, one, cfg).latencies_us(counts.warmup))
            tr = ping_pong(du_call, one, cfg)
            check_signals(tr.responses, len(one), LGBM)
            dur.append(tr.latencies_us(counts.warmup))
        b, d = np.concatenate(base), np.concatenate(dur)
        record(
            "10a. durable signal log, 1 tick ping-pong",
            pct(d),
            f"{p50(d) / p50(b):.2f}x the default log's p50 ({p50(b):.0f} us, same run)",
        )
        secs_default, _ = pipelined(ts_call, batch1000, cfg)
        secs, resp = pipelined(du_call, batch1000, cfg)
        check_signals(resp, counts.pipe1000, LGBM)
        n = counts.pipe1000
        record(
            "10b. durable signal log, pipelined 1,000 ticks/message",
            f"{n / secs:9.0f} ticks/s",
            f"{secs_default / secs:.2f}x the default log ({n / secs_default:.0f} ticks/s, same run)",
        )
    finally:
        du_ch.close()
        stop(durable)


def memory_scenario(tmp: Path, models_dir: Path, ticks: list, counts: Counts, fig: Figures, procs: list) -> None:
    """Twice: as a server-only install runs (no pandas: 9a-9c, the target) and in this .venv (9a'-9c'),
    where the dashboard's pandas is installed and lightgbm/xgboost import it at start-up."""
    # message j: tick j of every instrument (copies of one simulated instrument's ticks, renamed)
    base = [t for t in ticks if t.instrument == ticks[0].instrument][: counts.per_instrument]
    batches = []
    for j in range(counts.per_instrument):
        msg = pb.TickBatch()
        for i in range(counts.instruments):
            t = msg.ticks.add()
            t.CopyFrom(base[j])
            t.instrument = f"BENCH{i:04d}"
        batches.append(pb.StreamSignalsRequest(batch=msg).SerializeToString())
    variants = (
        ("", "server-only install, no pandas (benchmarks/serve_server_only.py)", server_only_cmd),
        ("'", "this .venv, with the dashboard's pandas", serve_cmd),
    )
    for mark, what, command in variants:
        print(f"\n-- memory: tickserve server VmRSS, {what}", flush=True)
        idle_rss, models_rss, state_rss = _memory_run(
            tmp / f"mem{len(mark)}", command, models_dir, batches, counts, procs
        )
        if not mark:
            fig.rss_idle, fig.rss_models, fig.rss_state = idle_rss, models_rss, state_rss
        record(f"9a{mark}. server RSS, idle, no model ({what})", f"{idle_rss / MB:7.1f} MB", "1.00x (reference)")
        record(
            f"9b{mark}. server RSS, every default model loaded",
            f"{models_rss / MB:7.1f} MB",
            f"{models_rss / idle_rss:.2f}x idle (+{(models_rss - idle_rss) / MB:.1f} MB)",
        )
        record(
            f"9c{mark}. server RSS, + one open stream, {counts.instruments:,} instruments x {counts.per_instrument}",
            f"{state_rss / MB:7.1f} MB",
            f"{state_rss / models_rss:.2f}x models loaded (+{(state_rss - models_rss) / MB:.1f} MB, signal-ensemble)",
        )
    record(
        "9d. server RSS after scenarios 1-5 (info)",
        f"{fig.rss_after_1_5 / MB:7.1f} MB",
        "the process that served 1-5 (this .venv)",
    )


def _memory_run(
    tmp: Path, command, models_dir: Path, batches: list, counts: Counts, procs: list
) -> tuple[int, int, int]:
    tmp.mkdir()
    empty = tmp / "empty-models"
    empty.mkdir()
    idle, _ = start(command(empty, tmp / "idle.port"), tmp / "idle.port", tmp / "idle.log")
    procs.append(idle)
    try:
        time.sleep(1.0)
        idle_rss = rss_bytes(idle.pid)
    finally:
        stop(idle)
    full, full_addr = start(command(models_dir, tmp / "full.port"), tmp / "full.port", tmp / "full.log")
    procs.append(full)
    try:
        time.sleep(1.0)
        models_rss = rss_bytes(full.pid)
        full_ch = channel(full_addr)
        held: list[int] = []
        try:
            resp = hold_open(
                full_ch.stream_stream(STREAM_SIGNALS),
                batches,
                [stream_config(ENSEMBLE[1])],
                lambda: held.append(rss_bytes(full.pid)),
            )
        finally:
            full_ch.close()
        check_signals(resp, counts.instruments * counts.per_instrument, ENSEMBLE[1])
    finally:
        stop(full)
    return idle_rss, models_rss, held[0]


# --- targets ------------------------------------------------------------------------------


def compute_targets(fig: Figures) -> None:
    for label, name in ALL:
        raw = fig.adapters[name].raw_p50
        bound = fig.floor50 + raw
        target(
            f"one stream, one tick at a time, {label}: p50 <= 1.3 x (floor p50 + adapter single-row p50)",
            f"{fig.ts50[name]:.0f} us vs 1.3 x ({fig.floor50:.0f} + {raw:.0f}) = {1.3 * bound:.0f} us",
            fig.ts50[name] / bound,
            1.3,
            at_most=True,
        )
    name = "same LightGBM model: tickserve p50 <= 0.4 x MLServer single-row p50"
    if fig.mlserver is None:
        target(name, "MLServer skipped", None, 0.4, at_most=True)
    else:
        ml50 = float(fig.mlserver["single_p50_us"])
        target(
            name,
            f"{fig.ts50[LGBM]:.0f} us vs 0.4 x {ml50:.0f} = {0.4 * ml50:.0f} us",
            fig.ts50[LGBM] / ml50,
            0.4,
            at_most=True,
        )
    b = fig.lgbm_batch
    target(
        "1,000 ticks per message: >= 0.8 x lightgbm raw batch rows/s",
        f"{fig.pipelined[1000]:.0f} vs 0.8 x {b:.0f} = {0.8 * b:.0f} ticks/s",
        fig.pipelined[1000] / b,
        0.8,
        at_most=False,
    )
    target(
        "1,000 ticks per TickColumns message: >= 0.8 x lightgbm raw batch rows/s",
        f"{fig.columns1000:.0f} vs 0.8 x {b:.0f} = {0.8 * b:.0f} ticks/s",
        fig.columns1000 / b,
        0.8,
        at_most=False,
    )
    target(
        "Evaluate: >= 0.8 x lightgbm raw batch rows/s",
        f"{fig.evaluate:.0f} vs 0.8 x {b:.0f} = {0.8 * b:.0f} ticks/s",
        fig.evaluate / b,
        0.8,
        at_most=False,
    )
    # issue 13's targets: the columnar encodings at half the adapter's raw batch rate
    for label, rate in (("StreamSignals, 1,000 ticks per TickColumns message", fig.columns1000),
                        ("Evaluate, 1,000 ticks per TickColumns message", fig.evaluate_columns)):  # fmt: skip
        target(
            f"{label}: >= 0.5 x lightgbm raw batch rows/s",
            f"{rate:.0f} vs 0.5 x {b:.0f} = {0.5 * b:.0f} ticks/s",
            rate / b,
            0.5,
            at_most=False,
        )
    target(
        "64 concurrent one-at-a-time streams: aggregate >= 3 x single-stream rate",
        f"{fig.streams[64]:.0f} vs 3 x {fig.streams[1]:.0f} = {3 * fig.streams[1]:.0f} ticks/s",
        fig.streams[64] / fig.streams[1],
        3.0,
        at_most=False,
    )
    target(
        "RSS, every default model loaded + 1,000 instruments of state: <= 250 MB (server-only install, 9c)",
        f"{fig.rss_state / MB:.1f} MB vs 250 MB",
        fig.rss_state / (250 * MB),
        1.0,
        at_most=True,
    )
    both = 1 / (1 / FEATURE_RATES["batch"] + 1 / b)
    NOTES.append(
        f"For scale: the streaming feature stage alone (6a) runs at {FEATURE_RATES['streaming']:.0f} ticks/s, "
        f"{FEATURE_RATES['streaming'] / b:.2f}x the lightgbm raw batch rate, and the batch feature stage (6b) at "
        f"{FEATURE_RATES['batch'] / b:.2f}x; features then model, each at its in-process batch rate, would give "
        f"{both:.0f} ticks/s ({both / b:.2f}x) before any gRPC or conversion cost."
    )


# --- the run ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run (< 2 minutes)")
    parser.add_argument("--no-mlserver", action="store_true", help="skip the MLServer comparison (scenario 8)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    began = time.monotonic()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tickserve-bench-"))
    procs: list = []  # every process started, stopped again in the finally block
    fig = Figures()
    try:
        models_dir = tmp / "models"
        print(f"training the default models ({TRAIN_TICKS:,} simulated ticks, default parameters)...", flush=True)
        build_models(models_dir)

        # inputs, all built before any clock starts
        frame = simulate(max(counts.pipe1000, counts.conc_cap, counts.feat_stream, counts.batch_rows), seed=7)
        ticks = protos(frame)
        if ticks[:300] != frame_to_protos(frame.take(slice(0, 300))):
            raise RuntimeError("bench_lib.protos no longer matches converters.frame_to_protos")

        # 6, 7: in this process
        print("\n-- in-process: feature stage and adapters", flush=True)
        feature_stage(frame, counts)
        repo = ModelRepository(models_dir, load_plugins().adapters)
        repo.load_all()
        x_all = batch_features(frame.take(slice(0, counts.batch_rows)), FeatureConfig())
        for label, name in ALL:
            model = repo.get(name)
            if name == LGBM:  # LightGBM itself first: the compiled path's reference
                native = copy.copy(model.adapter)
                native.compiled = None
                fig.adapters[LGBM_NATIVE] = adapter_alone(
                    "lightgbm native", dataclasses.replace(model, adapter=native), x_all[:, model.feature_index], counts
                )
                print(f"   ({LGBM} is served by: {model.adapter.predictor})", flush=True)
            fig.adapters[name] = adapter_alone(label, model, x_all[:, model.feature_index], counts)
        del repo, model

        print(f"\n-- building {counts.evaluate:,} simulated ticks for Evaluate (serialized up front)...", flush=True)
        t = time.perf_counter()
        ev_frame = simulate(counts.evaluate, seed=11)
        n_eval = len(ev_frame)
        ev_requests = evaluate_requests(ev_frame, 1000)
        ev_columns = evaluate_requests(ev_frame, 1000, columns=True)
        del ev_frame
        print(
            f"   {len(ev_requests)} messages, {sum(map(len, ev_requests)) / MB:.0f} MB as TickBatch, "
            f"{sum(map(len, ev_columns)) / MB:.0f} MB as TickColumns, "
            f"built in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        sample = pb.StreamSignalsResponse(
            results=[
                pb.TickResult(
                    signal=pb.Signal(
                        action=pb.ACTION_BUY,
                        p_buy=0.51234,
                        p_hold=0.1234,
                        p_sell=0.36426,
                        confidence=0.51234,
                        edge_score=0.14808,
                        strength=pb.STRENGTH_WEAK,
                        urgency=pb.URGENCY_PASSIVE,
                        risk=pb.RISK_HIGH,
                        model=LGBM,
                        model_version="1",
                        instrument="SIMA",
                        timestamp_ns=1_704_205_800_123_456_789,
                        sequence=12345,
                        warmed_up=True,
                    )
                )
            ]
        )  # a typical answer: the floor's payload size
        sizes = (len(signal_requests(ticks[:1], 1)[0]), sample.ByteSize())
        print(f"   message sizes: request {sizes[0]} B, response {sizes[1]} B", flush=True)

        # 1-5
        server_scenarios(tmp, models_dir, ticks, ev_requests, ev_columns, n_eval, sizes[1], counts, fig, procs)
        del ev_requests, ev_columns

        # 8. MLServer
        print("", flush=True)
        lgbm_dir = models_dir / LGBM / "1"
        manifest = ModelManifest.load(lgbm_dir)
        fig.mlserver = mlserver_scenario(args, lgbm_dir / manifest.model_file, len(manifest.feature_names), counts)
        if fig.mlserver is None:
            record("8. MLServer, same LightGBM model, single row", "skipped: --no-mlserver or not available", "n/a")
        else:
            ml50 = float(fig.mlserver["single_p50_us"])
            record(
                "8. MLServer, same LightGBM model, single row",
                f"p50 {ml50:6.0f} us  p99 {float(fig.mlserver['single_p99_us']):6.0f} us",
                f"{ml50 / fig.floor50:.2f}x floor p50; tickserve lightgbm p50 = {fig.ts50[LGBM] / ml50:.2f}x this",
            )

        # 9
        memory_scenario(tmp, models_dir, ticks, counts, fig, procs)

        compute_targets(fig)
        print("\nTARGETS")
        for name, figures, ratio, result in TARGETS:
            print(f"  {result:7s} {name}\n          {figures};  {ratio}")
        for n in NOTES:
            print(f"\n{n}")
        elapsed = time.monotonic() - began
        print(f"\nrun time {elapsed:.0f} s")
        command = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
        write_results(args.out, command, counts, sizes, elapsed, load_before, n_eval)
        print(f"wrote {args.out}")
        return 0
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


# --- RESULTS.md ---------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_results(
    path: Path,
    command: str,
    counts: Counts,
    sizes: tuple[int, int],
    elapsed: float,
    load_before: tuple[float, float, float],
    n_eval: int,
) -> None:
    versions = ", ".join(
        f"{d} {_version(d)}"
        for d in (
            "tickserve",
            "grpcio",
            "protobuf",
            "numpy",
            "lightgbm",
            "xgboost-cpu",
            "onnxruntime",
            "lleaves",
            "llvmlite",
        )
    )
    load_after = os.getloadavg()
    order = {s: i for i, s in enumerate(ROWS)}
    rows = sorted(ROWS, key=lambda r: (int("".join(c for c in r[0].split(".")[0] if c.isdigit())), order[r]))
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "# Benchmark results",
        "",
        f"- command: `{command}` (`make bench` runs it without flags; `--quick` is a smoke run)",
        f"- when: {datetime.now(UTC).isoformat(timespec='seconds')}, run time {elapsed:.0f} s",
        f"- machine: {_cpu()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
        f"{mem_gib:.1f} GiB, {platform.platform()}, Python {platform.python_version()}",
        f"- load average (1/5/15 min): {' '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{' '.join(f'{v:.2f}' for v in load_after)} after",
        f"- versions: {versions}",
        f"- messages: request {sizes[0]} B (one 10-level tick), response {sizes[1]} B (one signal)",
        f"- models: signal-lgbm, signal-xgb, signal-onnx (LightGBM exported to ONNX) trained with the default "
        f"parameters on {TRAIN_TICKS:,} simulated ticks (seed {TRAIN_SEED}), and signal-ensemble (soft voting, "
        "equal weights), all served by one `tickserve serve` process",
        f"- counts: ping-pong {counts.rounds} rounds x {counts.round_ticks} ticks per stream (first "
        f"{counts.warmup} dropped); pipelined {counts.pipe1:,} / {counts.pipe100:,} / {counts.pipe1000:,} ticks; "
        f"concurrency {counts.conc_seconds:g} s per level; Evaluate {n_eval:,} ticks; adapters "
        f"{counts.single:,} single-row calls, {counts.batch_rows:,} batch rows; memory "
        f"{counts.instruments:,} instruments x {counts.per_instrument} ticks",
        "",
        "Ratios compare with a reference measured in the same run; absolute figures move with machine load.",
        "",
        "How it is measured:",
        "",
        "- tickserve runs as users run it, `tickserve serve` with its defaults: the signal log is on (every "
        "signal written to SQLite off the hot path; about 12% of throughput on 1,000-tick messages), metrics off.",
        "- Floor: `benchmarks/echo_server.py`, a bare grpc.aio bidirectional echo with tickserve's server "
        "options in its own process, answering every message with a payload the size of one signal. Both "
        "the floor and tickserve get pre-serialized requests and return raw bytes to the client (the answers "
        "are parsed and checked after the clock stops), so the client does the same work for both.",
        "- Ping-pong (1, 2): one message in flight on one stream. Each round opens a fresh stream for the floor "
        "and for each of the four models, so machine drift hits them alike.",
        "- Pipelined (3) and Evaluate (5): every message sent without waiting; time from the call to the last "
        "answer (for Evaluate, the report). The lightgbm raw batch rate they are compared with is "
        "`predict_proba` on batches of 1,000 rows (7c, the median of three passes), the size of one message.",
        "- Concurrency (4): N threads, each with its own channel and TCP connection, one tick in flight each, "
        "all started together and stopped at a common deadline; the rate counts answers in the window where "
        "every stream had finished 20 warm-up ticks and none had stopped. The client shares the 2 cores "
        "with the server; the CPU each used (cores busy over the level's wall time, from /proc) is shown.",
        "- Adapters (7) and the feature stage (6) run in the benchmark process on rows of the same simulated "
        "ticks; `predict_proba` is the adapter's raw call, `LoadedModel.predict` adds the calibration. "
        "signal-lgbm is compiled as `tickserve compile` does it (lleaves, full level; "
        + ("; ".join(COMPILE_NOTE) or "not compiled")
        + ") and served that way, bit-exact with LightGBM; "
        "`lightgbm native` is the same model with the compiled artifact set aside, for comparison. The "
        "targets use the adapter as served.",
        "- Memory (9): measured twice: 9a-9c as a server-only install runs (`benchmarks/serve_server_only.py` makes "
        "pandas unimportable: lightgbm and xgboost import it at start-up whenever it is installed, and only the "
        "dashboard, sharing this .venv, brings it), 9a'-9c' in this .venv as it is. The target uses 9c. "
        "VmRSS from /proc/<pid>/status of the `tickserve serve` process: one started on an empty "
        "repository, one with the four default models (measured 1 s after it serves), the latter again while "
        "one StreamSignals stream to signal-ensemble is open after sending 60 TickBatch messages (tick j of "
        "each of the 1,000 instruments in message j). MB = 10^6 bytes.",
        "- MLServer (8): `benchmarks/mlserver_bench.py` installs MLServer 1.7.1, mlserver-lightgbm and "
        "tritonclient[grpc] into their own environment (benchmarks/.venv-mlserver, with uvloop<0.22, the "
        "start-up fix), serves the signal-lgbm model file with MLSERVER_PARALLEL_WORKERS=0 (its fastest "
        "single-row mode) and measures ModelInfer through tritonclient's gRPC client: single rows (the first "
        "200 calls dropped) and 1,000-row batches. Features are not computed there: MLServer gets finished "
        "feature rows, tickserve gets raw ticks. `--no-mlserver` skips it.",
        "",
        "| scenario | figure | ratio |",
        "| --- | --- | --- |",
        *[f"| {s} | {' '.join(f.split())} | {r} |" for s, f, r in rows],
        "",
        "## Targets",
        "",
        "Each computed from this run's figures above; the margin is how far the ratio is from the limit.",
        "",
        "| target | this run | ratio | result |",
        "| --- | --- | --- | --- |",
        *[f"| {t} | {f} | {r} | {res} |" for t, f, r, res in TARGETS],
        "",
        *[f"{n}\n" for n in NOTES],
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
