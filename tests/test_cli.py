"""The `tickserve` command as a user runs it: a real server process, real clients, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from .conftest import MODEL

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*TICKSERVE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def served(model_repo, tmp_path):
    """`tickserve serve --port 0` in its own process; yields (process, address)."""
    ready = tmp_path / "port"
    proc = subprocess.Popen(
        [
            *TICKSERVE,
            "serve",
            "--models",
            str(model_repo),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--default-model",
            MODEL,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield proc, f"127.0.0.1:{int(ready.read_text())}"
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_serve_stream_evaluate_models_then_sigterm(served, tmp_path):
    proc, address = served
    models = run("models", "--server", address)
    assert models.returncode == 0, models.stderr
    assert "signal-lgbm" in models.stdout and "READY" in models.stdout and "FAILED" in models.stdout

    ticks = tmp_path / "ticks.parquet"
    assert run("simulate", "--ticks", "600", "--seed", "3", "--out", str(ticks)).returncode == 0
    stream = run("stream", "--server", address, "--file", str(ticks), "--limit", "480")
    assert stream.returncode == 0, stream.stderr
    lines = [ln for ln in stream.stdout.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3} ", ln)]
    assert len(lines) == 480
    assert "480 ticks answered" in stream.stdout
    actions = {ln.split()[3] for ln in lines}
    assert actions <= {"BUY", "HOLD", "SELL"} and actions & {"BUY", "SELL"}, actions

    evaluate = run("evaluate", "--server", address, "--file", str(ticks))
    assert evaluate.returncode == 0, evaluate.stderr
    horizon = int(re.search(r"taker labels, horizon (\d+) ticks", evaluate.stdout).group(1))
    assert f"600 ticks, {600 - 3 * horizon} labeled" in evaluate.stdout  # the last `horizon` of each instrument
    assert "one position per instrument" in evaluate.stdout and not evaluate.stderr.startswith("warning")
    assert "majority-class baseline" in evaluate.stdout

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "tickserve stopping" in out


def test_unknown_model_on_the_command_line_is_a_clear_error(served):
    _, address = served
    result = run("stream", "--server", address, "--samples", "10", "--model", "nope")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "nope" in result.stderr


def test_train_writes_a_json_manifest_and_no_pickle(tmp_path):
    result = run("train", "--models", str(tmp_path), "--name", "m", "--samples", "6000", "--param", "num_boost_round=5")
    assert result.returncode == 0, result.stderr
    version_dir = tmp_path / "m" / "1"
    names = sorted(p.name for p in version_dir.iterdir())
    assert names == ["compiled", "manifest.json", "model.txt"]
    # the quick compiled form train builds (tests/test_compiled.py): machine code and its checksum
    built = sorted(p.name for p in (version_dir / "compiled").iterdir())
    assert len(built) == 2 and built[1] == built[0] + ".sha256", built
    assert "compiled with lleaves (quick" in result.stdout, result.stdout
    import json

    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["adapter"] == "lightgbm" and manifest["feature_stage_version"] == "2"
    assert manifest["parameters"]["num_leaves"] == 127 and manifest["parameters"]["min_data_in_leaf"] == 400
    assert manifest["label_config"]["mode"] == "taker" and manifest["label_config"]["cost_ticks"] == 0.0
    assert "valid_accuracy" in manifest["metrics"] and len(manifest["data_fingerprint"]) == 64
    assert "walk-forward, 3 folds" in result.stdout and "mean macro-F1 margin" in result.stdout
    assert "horizon" in manifest["training"]["label_rule"] and "calibration:" in result.stdout
    # a second run gets the next version
    assert (
        run(
            "train", "--models", str(tmp_path), "--name", "m", "--samples", "6000", "--param", "num_boost_round=5"
        ).returncode
        == 0
    )
    assert (tmp_path / "m" / "2" / "manifest.json").exists()


def test_plugins_lists_the_lightgbm_distribution():
    result = run("plugins")
    assert result.returncode == 0, result.stderr
    row = next(ln for ln in result.stdout.splitlines() if ln.startswith("lightgbm"))
    assert "tickserve-lightgbm" in row and "loaded" in row


def test_broken_plugins_are_reported_by_name_and_skipped(tmp_path):
    """Two third-party distributions on the path: one fails to import, one breaks the contract."""
    site = tmp_path / "site"
    for dist, module, body in (
        ("broken_import", "tickserve_broken_import", "raise ImportError('missing native library')\n"),
        (
            "bad_hook",
            "tickserve_bad_hook",
            "from tickserve.plugin import hookimpl\n\n@hookimpl\ndef tickserve_adapters():\n    return [object]\n",
        ),
    ):
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[tickserve.plugins]\n{dist} = {module}\n")
        (site / f"{module}.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([*TICKSERVE, "plugins"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {ln.split()[0]: ln for ln in result.stdout.splitlines()[1:]}
    assert "failed" in rows["broken_import"] and "missing native library" in rows["broken_import"]
    assert "failed" in rows["bad_hook"] and "not ModelAdapter subclasses" in rows["bad_hook"]
    assert "loaded" in rows["lightgbm"]
    denied = subprocess.run(
        [*TICKSERVE, "plugins", "--deny-plugin", "broken_import"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "disabled" in next(ln for ln in denied.stdout.splitlines() if ln.startswith("broken_import"))


def test_client_install_needs_no_model_library(tmp_path):
    """tickserve-client declares only grpcio and protobuf, and imports with numpy/lightgbm unavailable."""
    from importlib.metadata import requires

    deps = sorted(r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires("tickserve-client"))
    assert deps == ["grpcio", "protobuf"]
    code = (
        "import sys\n"
        "for name in ('lightgbm', 'numpy', 'xgboost', 'onnxruntime', 'pyarrow', 'tickserve'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "from tickserve_client import TickserveClient, make_tick\n"
        "t = make_tick('X', 1, [(1.0, 2.0)], [(1.1, 3.0)], sequence=4)\n"
        "assert t.sequence == 4 and list(t.ask_size) == [3.0]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_no_bare_server_or_plugins_module_is_installed(tmp_path):
    code = (
        "import importlib.util as u; print([n for n in ('server', 'plugins', 'clients', 'protos') if u.find_spec(n)])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
