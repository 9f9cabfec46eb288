"""`tickserve demo`: the whole pipeline, end to end, against a real server process.

1. train the default model into the repository if it holds none;
2. simulate held-out ticks (another seed: data the model never saw);
3. start `tickserve serve` on a free loopback port and wait until it serves;
4. stream ticks through StreamSignals, printing signals live;
5. run Evaluate on the held-out ticks and print the report beside the
   majority-class baseline;
6. stop the server with SIGTERM (graceful) and check it exited cleanly.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .cli import DEFAULT_MODEL_NAME
from .manifest import MANIFEST_FILE

TRAIN_SEED = 1
HOLDOUT_SEED = 2


def run_demo(models: Path, train_samples: int, holdout_samples: int, show: int) -> int:
    models = Path(models)
    if not any(models.glob(f"*/*/{MANIFEST_FILE}")):
        print(f"== no model in {models}/: training {DEFAULT_MODEL_NAME} on {train_samples} simulated ticks")
        _run(["train", "--models", str(models), "--name", DEFAULT_MODEL_NAME,
              "--samples", str(train_samples), "--seed", str(TRAIN_SEED)])
    else:
        print(f"== using the models already in {models}/")

    with tempfile.TemporaryDirectory(prefix="tickserve-demo-") as tmp:
        holdout = Path(tmp) / "holdout.parquet"
        _run(["simulate", "--ticks", str(holdout_samples), "--seed", str(HOLDOUT_SEED), "--out", str(holdout)])
        ready = Path(tmp) / "port"
        print("== starting the server")
        server = subprocess.Popen(
            [sys.executable, "-m", "tickserve.cli", "serve", "--models", str(models), "--port", "0",
             "--ready-file", str(ready)],
        )
        try:
            port = _wait_for_port(server, ready)
            address = f"127.0.0.1:{port}"
            _run(["models", "--server", address])
            every = 100
            print(f"\n== streaming {show * every} held-out ticks one by one through StreamSignals"
                  f" (printing every {every}th signal)")
            _run(["stream", "--server", address, "--file", str(holdout), "--limit", str(show * every),
                  "--every", str(every)])
            print(f"\n== evaluating on {holdout_samples} held-out ticks (seed {HOLDOUT_SEED}) over Evaluate")
            _run(["evaluate", "--server", address, "--file", str(holdout)])
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
