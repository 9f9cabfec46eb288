"""A third-party adapter installed with pip is discovered, trained and served with no server change."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_client import TickserveClient
from tickserve_proto.v1 import tickserve_pb2 as pb

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "numpy-adapter"
TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`pip install` the example into a directory of its own (the test environment stays as it was)."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return target


def test_installed_plugin_is_listed_trained_and_served(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([*TICKSERVE, "plugins"], capture_output=True, text=True, env=env, timeout=60)
    row = next(ln for ln in listed.stdout.splitlines() if ln.startswith("numpy-logistic"))
    assert "tickserve-example-numpy" in row and "loaded" in row

    models = tmp_path / "models"
    trained = subprocess.run(
        [
            *TICKSERVE,
            "train",
            "--adapter",
            "numpy-logistic",
            "--name",
            "np-model",
            "--models",
            str(models),
            "--samples",
            "9000",
            "--param",
            "steps=150",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    assert (models / "np-model" / "1" / "weights.json").exists()

    ready = tmp_path / "port"
    server = subprocess.Popen(
        [*TICKSERVE, "serve", "--models", str(models), "--port", "0", "--ready-file", str(ready)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() else ""
            time.sleep(0.05)
        with TickserveClient(f"127.0.0.1:{int(ready.read_text())}", timeout=60) as client:
            info = client.get_model("np-model")
            assert info.adapter == "numpy-logistic" and info.state == pb.MODEL_STATE_READY
            ticks = frame_to_protos(simulate(300, seed=4))
            results = list(client.stream_signals(ticks, model="np-model"))
            assert len(results) == 300 and all(r.WhichOneof("result") == "signal" for r in results)
            assert {r.signal.model for r in results} == {"np-model"}
            report = list(client.evaluate(ticks, model="np-model"))[-1].report
            horizon = info.label_config.horizon_ticks  # chosen from the training ticks
            assert report.labeled == 300 - 3 * horizon and len(report.feature_importance) == len(info.feature_names)
    finally:
        server.terminate()
        server.wait(30)
