"""No traps: the default model never moves by itself, `train` never adds a version from other data
silently, and a deployment that would not load fails its command (issue 15, items 1 and 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import grpc
import pytest

from tickserve.cli.serve import default_model_notes
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate
from tickserve_proto.v1 import tickserve_pb2 as pb
from tickserve_proto.v1 import tickserve_pb2_grpc as pb_grpc

from .conftest import MODEL, _LoopThread

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*TICKSERVE, *args], capture_output=True, text=True, timeout=timeout)


def _copy_model(src, root, name: str) -> None:
    target = root / name / "1"
    shutil.copytree(src / MODEL / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"] = name
    (target / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def two_models(model_repo, tmp_path):
    root = tmp_path / "models"
    for name in ("alpha", "beta"):
        _copy_model(model_repo, root, name)
    return root


def _predict(port: int, model: str = "") -> pb.PredictResponse:
    ticks = frame_to_protos(simulate(3, seed=5))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return pb_grpc.SignalServiceStub(channel).Predict(pb.PredictRequest(model=model, ticks=ticks), timeout=30)


def test_with_several_models_and_no_default_a_request_naming_none_is_refused_not_routed(two_models, plugins):
    repository = ModelRepository(two_models, plugins.adapters)
    repository.load_all()
    assert repository.default_model == ""  # not "alpha", the first by name
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    try:
        with pytest.raises(grpc.RpcError) as err:
            _predict(server.port)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        message = err.value.details()
        assert "names no model" in message and "alpha, beta" in message and "--default-model" in message
        assert _predict(server.port, "beta").signals[0].model == "beta"  # naming one works
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            listing = pb_grpc.SignalServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
        assert listing.default_model == ""
    finally:
        runner.run(server.stop(1.0))
        runner.close()


def test_the_only_model_is_the_default_and_adding_one_does_not_move_clients_to_it(model_repo, tmp_path, plugins):
    root = tmp_path / "models"
    _copy_model(model_repo, root, "zeta")
    repository = ModelRepository(root, plugins.adapters)
    repository.load_all()
    assert repository.default_model == "zeta"
    _copy_model(model_repo, root, "alpha")  # sorts first: the old rule would have moved every client to it
    repository.load("alpha")
    assert repository.default_model == ""
    configured = ModelRepository(root, plugins.adapters, default_model="zeta")
    configured.load_all()
    assert configured.default_model == "zeta" and configured.get("").name == "zeta"


def test_serve_says_at_start_which_model_a_request_naming_none_gets(two_models, plugins, tmp_path):
    several = ModelRepository(two_models, plugins.adapters)
    several.load_all()
    assert "no default model" in default_model_notes(several, "models/")[0]
    named = ModelRepository(two_models, plugins.adapters, default_model="beta")
    named.load_all()
    assert default_model_notes(named, "models/") == ["default model: beta (requests that name no model get it)"]
    missing = ModelRepository(two_models, plugins.adapters, default_model="gamma")
    missing.load_all()
    assert "'gamma' is not in the repository" in default_model_notes(missing, "models/")[0]
    (tmp_path / "empty").mkdir()
    empty = ModelRepository(tmp_path / "empty", plugins.adapters)
    empty.load_all()
    assert "holds no model" in default_model_notes(empty, "models/")[0]


TRAIN = ("--samples", "6000", "--param", "num_boost_round=5", "--no-compile")


def test_train_without_a_name_derives_it_and_refuses_a_version_from_other_data(tmp_path):
    models = tmp_path / "models"
    first = run("train", "--models", str(models), *TRAIN)
    assert first.returncode == 0, first.stderr
    assert "model name: simulated-lightgbm" in first.stdout
    assert (models / "simulated-lightgbm" / "1" / "manifest.json").is_file()
    # other data under the same name: refused, naming what differs and the way to consent
    other = run("train", "--models", str(models), *TRAIN, "--seed", "2")
    assert other.returncode == 2  # the command line's code for a refused request
    assert "training data (fingerprint" in other.stderr and "--new-version" in other.stderr, other.stderr
    assert not (models / "simulated-lightgbm" / "2").exists()
    # the same data again (other parameters): a new version, no consent needed
    again = run("train", "--models", str(models), "--samples", "6000", "--param", "num_boost_round=6", "--no-compile")
    assert again.returncode == 0, again.stderr
    assert (models / "simulated-lightgbm" / "2").is_dir()
    consented = run("train", "--models", str(models), *TRAIN, "--seed", "2", "--new-version")
    assert consented.returncode == 0, consented.stderr
    assert (models / "simulated-lightgbm" / "3").is_dir()


def test_an_ensemble_whose_members_cannot_vote_together_is_not_written(model_repo, tmp_path):
    root = tmp_path / "models"
    for name in ("alpha", "beta"):
        _copy_model(model_repo, root, name)
    manifest_path = root / "beta" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["label_config"]["horizon_ticks"] = manifest["label_config"].get("horizon_ticks", 10) + 7
    manifest_path.write_text(json.dumps(manifest))
    refused = run("ensemble", "--models", str(root), "--name", "both", "--member", "alpha", "--member", "beta")
    assert refused.returncode == 2
    assert "beta/1: its label config" in refused.stderr, refused.stderr
    assert not (root / "both").exists()
    good = run("ensemble", "--models", str(root), "--name", "solo", "--member", "alpha", "--member", "alpha:1=2")
    assert good.returncode == 0, good.stderr
    assert "READY" in good.stdout and (root / "solo" / "1" / "manifest.json").is_file()


def test_check_runs_the_load_time_checks_offline(model_repo):
    ready = run("check", str(model_repo / MODEL / "1"))
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.strip() == f"{MODEL}/1: READY"
    broken = run("check", str(model_repo / "broken"))
    assert broken.returncode == 1 and broken.stdout.startswith("broken/1: FAILED (")
    whole = run("check", str(model_repo))
    assert whole.returncode == 1 and f"{MODEL}/2: READY" in whole.stdout and "broken/1: FAILED" in whole.stdout
    nothing = run("check", str(model_repo / MODEL / "1" / "nope"))
    assert nothing.returncode == 2 and "no manifest.json here" in nothing.stderr


def test_repository_load_exits_1_when_the_model_ends_failed(server):
    failed = run("repository", "load", "broken", "--server", server.address)
    assert failed.returncode == 1
    assert "broken/1 FAILED" in failed.stderr, failed.stderr
    loaded = run("repository", "load", MODEL, "--version", "1", "--server", server.address)
    assert loaded.returncode == 0, loaded.stderr
