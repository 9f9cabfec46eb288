"""`tickserve demo`: the whole pipeline, end to end, against a real server process.

1. build the default model repository if it holds no model: LightGBM, XGBoost
   and ONNX models trained on the same simulated ticks, and a soft-voting
   ensemble of the three (adapters that are not installed are skipped);
2. simulate held-out ticks (another seed: data no model has seen);
3. start `tickserve serve` on a free loopback port and wait until it serves;
4. stream ticks through StreamSignals to the default model, printing signals;
5. run Evaluate for every model on the held-out ticks: a side-by-side table
   (with the majority-class baseline and calibration before/after), then the
   full report of the default model;
6. stop the server with SIGTERM (graceful) and check it exited cleanly.

With `--data DIR` (`make demo DATA=DIR`) the same pipeline runs on real data
instead (`run_real_demo`): import DIR's book file (book*.csv[.gz] or
book*.parquet) and trades file (trades*, if any) with `tickserve import`,
train the default models on the imported ticks (walk-forward, the
instrument's tick size and calendar read from the imported file), serve
them, stream the held-out end (the test span: the last 20% by time, which no
model trained on or chose anything from) and Evaluate every model on the
imported file: `evaluate --span test` scores only that test span, with the
ticks before it as warm-up, against the baselines and with trading metrics. Models go to a temporary directory unless
`--data-models` names one. The defaults of --instrument, --tick-size and
--calendar fit the Binance BTCUSD_PERP sample in /work/shared/data.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .cli.launch import TICKSERVE, serve_command
from .models.manifest import MANIFEST_FILE

TRAIN_SEED = 1
HOLDOUT_SEED = 2
# (model name, adapter, extra train arguments)
DEFAULT_MODELS = (
    ("signal-lgbm", "lightgbm", []),
    ("signal-xgb", "xgboost", []),
    ("signal-onnx", "onnx", ["--param", "source=lightgbm"]),
)
ENSEMBLE = "signal-ensemble"


def build_default_models(models: Path, train_samples: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tickserve-train-") as tmp:
        data = Path(tmp) / "train.parquet"
        _run(["simulate", "--ticks", str(train_samples), "--seed", str(TRAIN_SEED), "--out", str(data)])
        _train_default_models(models, data)


def _train_default_models(models: Path, data: Path, on: str = "") -> str:
    """Train DEFAULT_MODELS (those whose adapter is installed) on `data`, and their ensemble
    when there are two or more; the model to serve by default ("" if none was built)."""
    from .plugins.manager import load_plugins

    installed = load_plugins().adapters
    models.mkdir(parents=True, exist_ok=True)
    built = []
    for name, adapter, extra in DEFAULT_MODELS:
        if adapter not in installed:
            print(f"== adapter {adapter!r} is not installed: skipping {name}")
            continue
        print(f"== training {name} ({adapter}){on}")
        _run(["train", "--models", str(models), "--name", name, "--adapter", adapter, "--data-file", str(data), *extra])
        built.append(name)
    if len(built) > 1:
        print(f"== writing the ensemble {ENSEMBLE} of {', '.join(built)}")
        _run(["ensemble", "--models", str(models), "--name", ENSEMBLE, *[f"--member={n}" for n in built]])
        return ENSEMBLE
    return built[0] if built else ""


def run_demo(models: Path, train_samples: int, holdout_samples: int, show: int, prepare_only: bool = False) -> int:
    models = Path(models)
    if not any(models.glob(f"*/*/{MANIFEST_FILE}")):
        print(f"== no model in {models}/: building the default repository from {train_samples} simulated ticks")
        build_default_models(models, train_samples)
    else:
        print(f"== using the models already in {models}/")
    if prepare_only:
        return 0
    default = ENSEMBLE if (models / ENSEMBLE).is_dir() else ""

    with tempfile.TemporaryDirectory(prefix="tickserve-demo-") as tmp:
        holdout = Path(tmp) / "holdout.parquet"
        _run(["simulate", "--ticks", str(holdout_samples), "--seed", str(HOLDOUT_SEED), "--out", str(holdout)])
        shown = show * 100
        return _serve_stream_evaluate(
            models,
            default,
            holdout,
            Path(tmp),
            stream_ticks=shown,
            show=show,
            stream_what=f"{shown} held-out ticks",
            evaluate_what=f"{holdout_samples} held-out ticks (seed {HOLDOUT_SEED})",
        )


def find_file(data: Path, stem: str) -> Path | None:
    """The first file of `data` named stem*.csv.gz, .csv, .parquet or .csv.bz2 (None if none)."""
    for pattern in (f"{stem}*.csv.gz", f"{stem}*.csv", f"{stem}*.parquet", f"{stem}*.csv.bz2"):
        found = sorted(data.glob(pattern))
        if found:
            return found[0]
    return None


def run_real_demo(
    data: Path, *, instrument: str, tick_size: float, calendar: str, show: int, models: Path | None = None
) -> int:
    from .core.ticks import read_parquet, write_parquet
    from .importer import column_names
    from .training.walk_forward import fold_spans

    data = Path(data)
    book = find_file(data, "book")
    if book is None:
        raise FileNotFoundError(f"{data}: no book file (book*.csv, book*.csv.gz or book*.parquet)")
    trades = find_file(data, "trades")
    with tempfile.TemporaryDirectory(prefix="tickserve-real-") as tmp:
        tmp = Path(tmp)
        models = Path(models) if models else tmp / "models"
        if any(models.glob(f"*/*/{MANIFEST_FILE}")):
            raise FileExistsError(f"{models} already holds models: name an empty --data-models directory")
        imported = tmp / "ticks.parquet"
        print(f"== importing {book.name}" + (f" and {trades.name}" if trades else "") + f" from {data}")
        cmd = [
            "import",
            "--book",
            str(book),
            "--out",
            str(imported),
            "--instrument",
            instrument,
            "--tick-size",
            str(tick_size),
            "--calendar",
            calendar,
        ]
        if trades is not None:
            cmd += ["--trades", str(trades)]
        if "timestamp_ns" not in column_names(book) and "local_ts_ns" in column_names(book):
            print("   (timestamps: local_ts_ns, the receive time)")
            cmd += ["--map", "timestamp_ns=local_ts_ns"]
        _run(cmd)

        frame = read_parquet(imported)
        t_test = fold_spans(frame.timestamp_ns)[-1].test_start_ns  # `tickserve train`'s default folds
        holdout_rows = frame.timestamp_ns >= t_test
        holdout = tmp / "holdout.parquet"
        write_parquet(frame.take(holdout_rows), holdout)
        n_hold = int(holdout_rows.sum())
        span_s = (int(frame.timestamp_ns[-1]) - t_test) / 1e9
        print(
            f"== {len(frame)} ticks over {(int(frame.timestamp_ns[-1]) - int(frame.timestamp_ns[0])) / 1e9:.0f} s; "
            f"held-out end (test span, last 20% by time): {n_hold} ticks over {span_s:.0f} s"
        )

        default = _train_default_models(models, imported, " on the imported ticks (walk-forward, 3 folds)")
        what = f"the held-out end of {data.name} ({n_hold} ticks)"
        return _serve_stream_evaluate(
            models,
            default,
            holdout,
            Path(tmp),
            stream_ticks=n_hold,
            show=show,
            stream_what=what,
            evaluate_what=what,
            evaluate_file=imported,
        )


def _serve_stream_evaluate(
    models: Path,
    default: str,
    holdout: Path,
    tmp: Path,
    *,
    stream_ticks: int,
    show: int,
    stream_what: str,
    evaluate_what: str,
    evaluate_file: Path | None = None,
) -> int:
    """Start `tickserve serve`, stream `stream_ticks` of `holdout` printing `show` signals,
    evaluate every model on all of it (or on `evaluate_file`, whose test span `evaluate` picks),
    then stop the server with SIGTERM (its exit code decides)."""
    ready = tmp / "port"
    print("== starting the server")
    server = subprocess.Popen(serve_command(models, ready, *(["--default-model", default] if default else [])))
    try:
        port = _wait_for_port(server, ready)
        address = f"127.0.0.1:{port}"
        _run(["models", "--server", address])
        every = max(1, stream_ticks // max(1, show))
        print(
            f"\n== streaming {stream_what} one by one through StreamSignals (default model; printing every "
            f"{every}th signal)"
        )
        _run(
            ["stream", "--server", address, "--file", str(holdout), "--limit", str(stream_ticks), "--every", str(every)]
        )
        print(f"\n== evaluating every model on {evaluate_what} over Evaluate: model vs baselines, trading metrics")
        _run(["evaluate", "--server", address, "--file", str(evaluate_file or holdout), "--all-models"])
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    print(f"\n== server stopped (exit code {code})")
    return 0 if code == 0 else 1


def _run(args: list[str]) -> None:
    subprocess.run([*TICKSERVE, *args], check=True)


def _wait_for_port(server: subprocess.Popen, ready: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode} before serving")
        if ready.exists() and ready.read_text().strip():
            return int(ready.read_text())
        time.sleep(0.05)
    raise TimeoutError(f"the server did not start serving within {timeout:.0f} s")
