"""Peer comparison: Seldon MLServer serving the same LightGBM text model.

    .venv/bin/python benchmarks/mlserver_bench.py --model-file M/1/model.txt --features 43 [--workers]

MLServer and its gRPC client live in their own virtualenv (default
benchmarks/.venv-mlserver, made by `ensure_env`), never in the project's .venv:
their pins (grpcio, protobuf, pydantic, uvloop, ...) are not ours. This file runs
in the project's .venv with the standard library only; the measuring client
(CLIENT below) is written to a temp file and runs with the MLServer venv's python.

`measure` writes a model repository (model-settings.json for
mlserver_lightgbm.LightGBMModel, a copy of the model file), starts
`mlserver start` on free loopback ports, waits until the model is ready, then the
client makes (a) `single` sequential one-row ModelInfer calls (p50/p99 round trip
after 200 warm-up calls) and (b) `batches` calls of `batch_rows` rows (rows/s),
checks the answers are [n, 3] probabilities equal to LightGBM's own prediction,
and the server is stopped (SIGINT, then SIGTERM, then SIGKILL of its process
group) in a finally block. Every wait and loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ENV = HERE / ".venv-mlserver"

# What the MLServer venv gets. uvloop 0.23 crashes MLServer 1.7.1 at start, hence the cap.
REQUIREMENTS = [
    "mlserver==1.7.1",
    "mlserver-lightgbm==1.7.1",
    "tritonclient[grpc]",
    "uvloop<0.22",
]
MARKER = "tickserve-mlserver-env.json"  # written last: its presence means the env is complete
REPORTED = [
    "mlserver",
    "mlserver-lightgbm",
    "tritonclient",
    "uvloop",
    "lightgbm",
    "numpy",
    "grpcio",
    "protobuf",
    "pandas",
    "fastapi",
    "uvicorn",
    "pydantic",
]

MODEL_NAME = "tickmodel"
STARTUP_TIMEOUT_S = 120.0
CLIENT_TIMEOUT_S = 600.0


def _log(msg: str) -> None:
    print(f"[mlserver_bench] {msg}", file=sys.stderr, flush=True)


def _venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def ensure_env(path: Path = DEFAULT_ENV) -> Path:
    """Create (once) the MLServer virtualenv at `path`; return its python.

    Idempotent: a marker file written after a successful install, holding the
    requirements and the versions pip resolved, short-cuts later calls. A venv
    without the marker (an interrupted install) or with other requirements is
    installed into again (pip makes that a no-op where nothing changed).
    """
    path = Path(path)
    py = _venv_python(path)
    marker = path / MARKER
    if py.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()).get("requirements") == REQUIREMENTS:
                return py
        except (OSError, ValueError):
            pass
    t0 = time.monotonic()
    if not py.exists():
        base = shutil.which("python3") or sys.executable
        _log(f"creating virtualenv {path} with {base}")
        subprocess.run([base, "-m", "venv", str(path)], check=True, timeout=300)
    _log("installing " + " ".join(REQUIREMENTS) + " (a few minutes the first time)")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True, timeout=600)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True, timeout=1800)
    versions = installed_versions(py)
    freeze = subprocess.run([str(py), "-m", "pip", "freeze", "--all"], capture_output=True, text=True, timeout=120)
    marker.write_text(
        json.dumps(
            {
                "requirements": REQUIREMENTS,
                "versions": versions,
                "freeze": freeze.stdout.split(),
                "install_seconds": round(time.monotonic() - t0, 1),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
        + "\n"
    )
    _log(f"env ready in {time.monotonic() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return py


def installed_versions(py: Path, names: list[str] = REPORTED) -> dict[str, str]:
    code = (
        "import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\n"
        "out = {}\nfor n in sys.argv[1:]:\n"
        "    try: out[n] = version(n)\n    except PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    res = subprocess.run([str(py), "-c", code, *names], check=True, capture_output=True, text=True, timeout=60)
    return json.loads(res.stdout)


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _wait_ready(proc: subprocess.Popen, http_port: int, timeout: float, log: Path) -> float:
    """Poll /v2/models/<name>/ready until 200; return the seconds it took."""
    t0 = time.monotonic()
    url = f"http://127.0.0.1:{http_port}/v2/models/{MODEL_NAME}/ready"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlserver exited with {proc.returncode} before ready:\n{_tail(log)}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"mlserver not ready after {timeout:.0f} s:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)


def _tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> str:
    """Stop the server and its workers (its own process group); return how."""
    if proc.poll() is not None:
        return f"already exited ({proc.returncode})"
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)  # the group made by start_new_session: the server and its workers only
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # workers may outlive the parent for a moment: make sure the group is gone
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return signal.Signals(sig).name
        except subprocess.TimeoutExpired:
            continue
    return "unknown"


def measure(
    model_file: Path,
    n_features: int,
    *,
    single: int = 2000,
    batch_rows: int = 1000,
    batches: int = 30,
    parallel_workers: int = 0,
    env: Path = DEFAULT_ENV,
) -> dict:
    """Serve `model_file` with MLServer and measure it with a tritonclient gRPC client."""
    model_file = Path(model_file).resolve()
    if not model_file.is_file():
        raise FileNotFoundError(model_file)
    single = max(int(single), 201)  # 200 warm-up calls are dropped
    py = ensure_env(env)
    bindir = py.parent
    tmp = Path(tempfile.mkdtemp(prefix="mlserver-bench-"))
    try:
        repo = tmp / "repo"
        mdir = repo / MODEL_NAME
        mdir.mkdir(parents=True)
        shutil.copyfile(model_file, mdir / "model.txt")
        (mdir / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": MODEL_NAME,
                    "implementation": "mlserver_lightgbm.LightGBMModel",
                    "parameters": {"uri": "./model.txt", "version": "1"},
                },
                indent=2,
            )
        )
        (repo / "settings.json").write_text(json.dumps({"debug": False}))
        grpc_port, http_port, metrics_port = _free_ports(3)
        env_vars = {
            **os.environ,
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_GRPC_PORT": str(grpc_port),
            "MLSERVER_HTTP_PORT": str(http_port),
            "MLSERVER_METRICS_PORT": str(metrics_port),
            "MLSERVER_PARALLEL_WORKERS": str(parallel_workers),
            "MLSERVER_METRICS_DIR": str(tmp / "metrics"),
            "MLSERVER_LOAD_MODELS_AT_STARTUP": "true",
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(bindir.parent),
        }
        (tmp / "metrics").mkdir()
        log = tmp / "mlserver.log"
        proc = None
        load_before = os.getloadavg()[0]
        t_start = time.monotonic()
        with open(log, "wb") as logf:
            try:
                proc = subprocess.Popen(
                    [str(bindir / "mlserver"), "start", str(repo)],
                    cwd=tmp,
                    env=env_vars,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                ready_s = _wait_ready(proc, http_port, STARTUP_TIMEOUT_S, log)
                client = tmp / "client.py"
                client.write_text(CLIENT)
                args = {
                    "url": f"127.0.0.1:{grpc_port}",
                    "model": MODEL_NAME,
                    "model_file": str(mdir / "model.txt"),
                    "n_features": n_features,
                    "single": single,
                    "batch_rows": batch_rows,
                    "batches": batches,
                }
                res = subprocess.run(
                    [str(py), str(client), json.dumps(args)],
                    capture_output=True,
                    text=True,
                    timeout=CLIENT_TIMEOUT_S,
                    cwd=tmp,
                )
                if res.stderr.strip():
                    print(res.stderr.rstrip(), file=sys.stderr)
                if res.returncode != 0:
                    raise RuntimeError(
                        f"client failed ({res.returncode}):\n{res.stderr[-3000:]}\nserver log:\n{_tail(log)}"
                    )
                out = json.loads(res.stdout.strip().splitlines()[-1])
            finally:
                stopped = _stop(proc) if proc is not None else "not started"
        versions = installed_versions(py)
        out.update(
            {
                "loadavg_1m_before": load_before,
                "mlserver_version": versions.get("mlserver"),
                "mlserver_lightgbm_version": versions.get("mlserver-lightgbm"),
                "parallel_workers": parallel_workers,
                "startup_to_ready_s": round(ready_s, 1),
                "wall_s": round(time.monotonic() - t_start, 1),
                "stopped_with": stopped,
                "env_versions": versions,
            }
        )
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Runs inside the MLServer venv: numpy, lightgbm and tritonclient are there.
CLIENT = r"""
import json, sys, time
import numpy as np
import lightgbm as lgb
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2, service_pb2_grpc

a = json.loads(sys.argv[1])
nf, model = a["n_features"], a["model"]
WARMUP = 200

def err(msg):
    print("ERROR: " + msg, file=sys.stderr, flush=True)

# inputs drawn inside each feature's training range (feature_infos in the model text)
booster = lgb.Booster(model_file=a["model_file"])
lo, hi = np.zeros(nf), np.ones(nf)
for line in open(a["model_file"]):
    if line.startswith("feature_infos="):
        for i, info in enumerate(line.strip().split("=", 1)[1].split(" ")[:nf]):
            if info.startswith("["):
                lo[i], hi[i] = map(float, info[1:-1].split(":"))
        break
rng = np.random.default_rng(7)
n_single = a["single"]
x = lo + (hi - lo) * rng.random((max(n_single, a["batch_rows"]), nf))  # FP64, what the runtime hands LightGBM
expected = booster.predict(x)

client = tc.InferenceServerClient(url=a["url"])

def make_input(rows):
    inp = tc.InferInput("predict", list(rows.shape), "FP64")
    inp.set_data_from_numpy(np.ascontiguousarray(rows, dtype=np.float64))
    return inp

problems = []
def check(resp, want, what):
    names = [o.name for o in resp.get_response().outputs]
    got = resp.as_numpy(names[0])
    if got is None or got.shape != want.shape:
        problems.append(f"{what}: output {names} shape {None if got is None else got.shape}, expected {want.shape}")
        return
    if not (np.all(got >= 0) and np.all(got <= 1) and np.allclose(got.sum(axis=1), 1, atol=1e-6)):
        problems.append(f"{what}: outputs are not probabilities")
    d = float(np.max(np.abs(got - want)))
    if d > 1e-6:
        problems.append(f"{what}: differs from lightgbm's own predict by {d:.3g}")

# (a) single rows, sequential, via InferenceServerClient.infer (inputs built beforehand)
singles = [make_input(x[i:i + 1]) for i in range(n_single)]
lat = np.empty(n_single)
for i, inp in enumerate(singles):
    t = time.perf_counter()
    r = client.infer(model, [inp])
    lat[i] = time.perf_counter() - t
    if i < 3 or i == n_single - 1:
        check(r, expected[i:i + 1], f"single row {i}")
lat = lat[WARMUP:] * 1e6

# (a') the same on the raw ModelInfer stub with requests serialised beforehand:
# the server's share without tritonclient's per-call request building
import grpc
chan = grpc.insecure_channel(a["url"])
stub = service_pb2_grpc.GRPCInferenceServiceStub(chan)
def raw_request(rows):
    req = service_pb2.ModelInferRequest(model_name=model)
    t = req.inputs.add(name="predict", datatype="FP64", shape=list(rows.shape))
    req.raw_input_contents.append(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
    return req
raws = [raw_request(x[i:i + 1]) for i in range(n_single)]
raw_lat = np.empty(n_single)
for i, req in enumerate(raws):
    t = time.perf_counter()
    resp = stub.ModelInfer(req, timeout=30)
    raw_lat[i] = time.perf_counter() - t
raw_lat = raw_lat[WARMUP:] * 1e6
if not resp.outputs or list(resp.outputs[0].shape) != [1, 3]:
    problems.append(f"raw stub: output shape {[list(o.shape) for o in resp.outputs]}")
chan.close()

# (b) batches of batch_rows rows
rows = x[:a["batch_rows"]]
binp = make_input(rows)
check(client.infer(model, [binp]), expected[:a["batch_rows"]], "batch warm-up")
t0 = time.perf_counter()
for _ in range(a["batches"]):
    r = client.infer(model, [binp])
el = time.perf_counter() - t0
check(r, expected[:a["batch_rows"]], "last batch")
client.close()

for p in problems:
    err(p)
print(json.dumps({
    "single_p50_us": round(float(np.percentile(lat, 50)), 1),
    "single_p99_us": round(float(np.percentile(lat, 99)), 1),
    "single_mean_us": round(float(lat.mean()), 1),
    "single_raw_stub_p50_us": round(float(np.percentile(raw_lat, 50)), 1),
    "single_raw_stub_p99_us": round(float(np.percentile(raw_lat, 99)), 1),
    "batch_rows_per_s": round(a["batch_rows"] * a["batches"] / el, 0),
    "batch_ms_per_request": round(el / a["batches"] * 1e3, 2),
    "single_calls": n_single, "warmup_calls": WARMUP,
    "batch_rows": a["batch_rows"], "batches": a["batches"],
    "input_datatype": "FP64",
    "outputs_ok": not problems,
    "problems": problems,
}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-file", type=Path, required=True, help="LightGBM text model (multiclass, 3 classes)")
    p.add_argument("--features", type=int, required=True, help="number of input features")
    p.add_argument("--env", type=Path, default=DEFAULT_ENV, help="the MLServer virtualenv (made if missing)")
    p.add_argument("--single", type=int, default=2000)
    p.add_argument("--batch-rows", type=int, default=1000)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument(
        "--workers",
        action="store_true",
        help="also measure MLServer's default worker mode (MLSERVER_PARALLEL_WORKERS=1)",
    )
    a = p.parse_args(argv)
    kw = dict(single=a.single, batch_rows=a.batch_rows, batches=a.batches, env=a.env)
    results = {"parallel_workers_0": measure(a.model_file, a.features, parallel_workers=0, **kw)}
    if a.workers:
        results["parallel_workers_1"] = measure(a.model_file, a.features, parallel_workers=1, **kw)
    print(json.dumps(results if a.workers else results["parallel_workers_0"], indent=2))
    return 0 if all(r.get("outputs_ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
