"""The V2 model repository extension, driven by tritonclient.grpc as a Triton or MLServer user
would: index, load and unload map onto tickserve's one repository."""

from __future__ import annotations

import shutil

import pytest

tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tickserve.models.repository import ModelRepository  # noqa: E402
from tickserve.serving.app import create_server  # noqa: E402

from .conftest import MODEL, _LoopThread  # noqa: E402


@pytest.fixture
def triton(model_repo, plugins, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(model_repo, root)  # its own copy: these tests load and unload
    repository = ModelRepository(root, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository))
    client = tritongrpc.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()
    runner.run(server.stop(1.0))
    runner.close()


def _index(triton) -> dict[tuple[str, str], tuple[str, str]]:
    index = triton.get_model_repository_index(as_json=True).get("models", [])
    return {(m["name"], m["version"]): (m.get("state", ""), m.get("reason", "")) for m in index}


def test_the_index_lists_every_version_with_its_state_and_reason(triton):
    index = _index(triton)
    assert index[(MODEL, "1")] == ("READY", "") and index[(MODEL, "2")] == ("READY", "")
    state, reason = index[("broken", "1")]
    assert state == "FAILED" and "sha256" in reason


def test_unload_then_load_through_tritonclient(triton, tmp_path):
    # an ensemble of the model: unloaded with it when the client asks for its dependents
    import subprocess
    import sys

    root = tmp_path / "models"
    made = subprocess.run(
        [sys.executable, "-m", "tickserve.cli", "ensemble", "--models", str(root), "--name", "ens", "--member", MODEL],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    triton.load_model("ens")
    with pytest.raises(InferenceServerException) as err:
        triton.unload_model(MODEL, unload_dependents=False)
    assert err.value.status() == "StatusCode.FAILED_PRECONDITION" and "ens/1" in err.value.message()
    triton.unload_model(MODEL, unload_dependents=True)
    assert not triton.is_model_ready("ens") and not triton.is_model_ready(MODEL)
    assert not triton.is_model_ready(MODEL)
    assert {v for (n, v), (s, _) in _index(triton).items() if n == MODEL and s == "UNLOADED"} == {"1", "2"}
    triton.load_model(MODEL)
    assert triton.is_model_ready(MODEL) and triton.is_model_ready(MODEL, "1")


def test_a_load_that_ends_failed_is_an_error_naming_the_reason(triton):
    with pytest.raises(InferenceServerException) as err:
        triton.load_model("broken")
    assert err.value.status() == "StatusCode.FAILED_PRECONDITION"
    assert "version 1 FAILED" in err.value.message() and "sha256" in err.value.message()


def test_unknown_models_repositories_and_parameters_are_refused_by_name(triton):
    with pytest.raises(InferenceServerException) as err:
        triton.load_model("nope")
    assert err.value.status() == "StatusCode.NOT_FOUND" and "'nope'" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        triton.load_model(MODEL, config='{"max_batch_size": 8}')
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and "parameters: ['config']" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        triton.unload_model("never-loaded")
    assert err.value.status() == "StatusCode.NOT_FOUND"
