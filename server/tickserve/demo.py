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
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .manifest import MANIFEST_FILE

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
    from .plugin_manager import load_plugins

    installed = load_plugins().adapters
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tickserve-train-") as tmp:
        data = Path(tmp) / "train.parquet"
        _run(["simulate", "--ticks", str(train_samples), "--seed", str(TRAIN_SEED), "--out", str(data)])
        built = []
        for name, adapter, extra in DEFAULT_MODELS:
            if adapter not in installed:
                print(f"== adapter {adapter!r} is not installed: skipping {name}")
                continue
            print(f"== training {name} ({adapter})")
            _run(["train", "--models", str(models), "--name", name, "--adapter", adapter, "--data-file", str(data), *extra])
            built.append(name)
    if len(built) > 1:
        print(f"== writing the ensemble {ENSEMBLE} of {', '.join(built)}")
        _run(["ensemble", "--models", str(models), "--name", ENSEMBLE, *[f"--member={n}" for n in built]])


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
        ready = Path(tmp) / "port"
        print("== starting the server")
        serve = [sys.executable, "-m", "tickserve.cli", "serve", "--models", str(models), "--port", "0",
                 "--ready-file", str(ready)]
        server = subprocess.Popen(serve + (["--default-model", default] if default else []))
        try:
            port = _wait_for_port(server, ready)
            address = f"127.0.0.1:{port}"
            _run(["models", "--server", address])
            every = 100
            print(f"\n== streaming {show * every} held-out ticks one by one through StreamSignals"
                  f" (default model; printing every {every}th signal)")
            _run(["stream", "--server", address, "--file", str(holdout), "--limit", str(show * every),
                  "--every", str(every)])
            print(f"\n== evaluating every model on {holdout_samples} held-out ticks (seed {HOLDOUT_SEED}) over Evaluate")
            _run(["evaluate", "--server", address, "--file", str(holdout), "--all-models"])
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=30)
        print(f"\n== server stopped (exit code {code})")
        return 0 if code == 0 else 1


def _run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "tickserve.cli", *args], check=True)


def _wait_for_port(server: subprocess.Popen, ready: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode} before serving")
        if ready.exists() and ready.read_text().strip():
            return int(ready.read_text())
        time.sleep(0.05)
    raise TimeoutError(f"the server did not start serving within {timeout:.0f} s")
