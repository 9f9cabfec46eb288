"""The Open Inference Protocol's REST binding (/v2/...) on the HTTP gateway, over real HTTP
(urllib) against a real server: the same answers as the V2 gRPC service and SignalService."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tickserve.features import batch_features
from tickserve.models.repository import ModelRepository
from tickserve.serving.app import create_server
from tickserve.serving.converters import frame_to_protos
from tickserve.simulate import simulate

from .conftest import MODEL, _LoopThread
from .test_kserve_ticks import tick_columns

TICKS_MODEL = f"{MODEL}.ticks"


@pytest.fixture(scope="module")
def http_server(model_repo, plugins):
    repository = ModelRepository(model_repo, plugins.adapters, default_model=MODEL)
    repository.load_all()
    runner = _LoopThread()
    server = runner.run(create_server("127.0.0.1:0", repository, http_port=0))
    yield server
    runner.run(server.stop(1.0))
    runner.close()


def _http(server, path: str, body: dict | bytes | None = None, method: str | None = None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _tensor(name: str, values: np.ndarray, datatype: str) -> dict:
    data = [v.decode() for v in values.ravel()] if datatype == "BYTES" else values.tolist()  # nested for 2-D
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": data}


def test_health_and_server_metadata(http_server):
    assert _http(http_server, "/v2/health/live") == (200, {"live": True})
    assert _http(http_server, "/v2/health/ready") == (200, {"ready": True})
    status, meta = _http(http_server, "/v2")
    assert status == 200 and meta["name"] == "tickserve" and meta["extensions"] == ["classification"]


def test_model_metadata_and_readiness(http_server):
    model = http_server.signals.repository.get(MODEL)
    status, meta = _http(http_server, f"/v2/models/{MODEL}")
    assert status == 200 and meta["versions"] == ["1", "2"] and meta["platform"] == "tickserve_lightgbm"
    assert [i["name"] for i in meta["inputs"]] == list(model.manifest.feature_names)  # the feature order
    assert meta["inputs"][0]["shape"] == [-1] and meta["properties"]["version"] == "2"
    status, meta = _http(http_server, f"/v2/models/{TICKS_MODEL}/versions/1")
    assert status == 200 and meta["name"] == TICKS_MODEL and meta["properties"]["version"] == "1"
    assert meta["inputs"][4] == {"name": "bid_price", "datatype": "FP64", "shape": [-1, -1]}
    assert _http(http_server, f"/v2/models/{MODEL}/ready") == (200, {"name": MODEL, "ready": True})
    assert _http(http_server, f"/v2/models/{TICKS_MODEL}/versions/2/ready") == (
        200,
        {"name": TICKS_MODEL, "ready": True},
    )
    assert _http(http_server, "/v2/models/nope/ready") == (400, {"name": "nope", "ready": False})
    assert _http(http_server, "/v2/models/broken/ready") == (400, {"name": "broken", "ready": False})


def test_infer_feature_rows_equals_the_model(http_server):
    model = http_server.signals.repository.get(MODEL, "1")
    x = batch_features(simulate(600, seed=51), model.manifest.feature_config)[:, model.feature_index][300:310]
    body = {"id": "r-1", "inputs": [_tensor("features", x, "FP64")]}
    status, got = _http(http_server, f"/v2/models/{MODEL}/versions/1/infer", body)
    assert status == 200, got
    assert (got["model_name"], got["model_version"], got["id"]) == (MODEL, "1", "r-1")
    out = {o["name"]: o for o in got["outputs"]}
    assert out["probabilities"]["shape"] == [10, 3] and out["probabilities"]["datatype"] == "FP64"
    probs = np.array(out["probabilities"]["data"]).reshape(10, 3)
    assert probs.tobytes() == np.ascontiguousarray(model.predict(x)[1]).tobytes()  # JSON floats round-trip
    top = {"inputs": body["inputs"], "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}]}
    status, got = _http(http_server, f"/v2/models/{MODEL}/versions/1/infer", top)
    assert status == 200 and got["outputs"][0]["datatype"] == "BYTES" and got["outputs"][0]["shape"] == [10, 1]


def test_infer_ticks_equals_predict(http_server):
    ticks = frame_to_protos(simulate(200, seed=52))
    columns = tick_columns(ticks)
    types = {"instrument": "BYTES", "timestamp_ns": "INT64", "sequence": "UINT64", "aggressor": "INT32"}
    body = {"inputs": [_tensor(name, v, types.get(name, "FP64")) for name, v in columns.items()]}
    status, got = _http(http_server, f"/v2/models/{TICKS_MODEL}/infer", body)
    assert status == 200, got
    status, predicted = _http(
        http_server,
        f"/v1/models/{MODEL}/predict",
        {"ticks": [json.loads(_proto_json(t)) for t in ticks]},
    )
    expected = predicted["signals"]
    out = {o["name"]: o["data"] for o in got["outputs"]}
    assert out["probabilities"] == [p for s in expected for p in (s["p_sell"], s["p_hold"], s["p_buy"])]
    assert out["action"] == [s["action"].removeprefix("ACTION_") for s in expected]
    assert out["risk"] == [s["risk"].removeprefix("RISK_") for s in expected]
    assert out["confidence"] == [s["confidence"] for s in expected]
    assert out["warmed_up"] == [s.get("warmed_up", False) for s in expected]


def _proto_json(message) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(message, preserving_proto_field_name=True)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "message"),
    [
        ("POST", "/v2/models/nope/infer", {"inputs": []}, 404, "NOT_FOUND", "model_name: no model named 'nope'"),
        ("GET", "/v2/models/nope", None, 404, "NOT_FOUND", "name: no model named 'nope'"),
        ("GET", "/v2/models/broken", None, 400, "FAILED_PRECONDITION", "is FAILED"),
        ("POST", f"/v2/models/{MODEL}/infer", b"{nope", 400, "INVALID_ARGUMENT", "body: not valid JSON"),
        ("POST", f"/v2/models/{MODEL}/infer", {"inputz": []}, 400, "INVALID_ARGUMENT", "body.inputs: expected a list"),
        (
            "POST",
            f"/v2/models/{MODEL}/infer",
            {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP64", "data": ["a", 1]}]},
            400,
            "INVALID_ARGUMENT",
            "inputs[0].data: not all FP64 values",
        ),
        (
            "POST",
            f"/v2/models/{MODEL}/infer",
            {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP99", "data": [1, 2]}]},
            400,
            "INVALID_ARGUMENT",
            "inputs[0].datatype: 'FP99' is not a V2 datatype",
        ),
        ("GET", f"/v2/models/{MODEL}/infer", None, 405, "UNIMPLEMENTED", "method: GET is not allowed"),
        ("GET", "/v2/nothing", None, 404, "NOT_FOUND", "path: no route GET /v2/nothing"),
    ],
)
def test_errors_are_v2_json_with_the_mapped_status(http_server, method, path, body, status, code, message):
    got_status, got = _http(http_server, path, body, method)
    assert got_status == status and got["code"] == code and message in got["error"], got


def test_a_bad_tick_over_rest_names_the_input_and_row(http_server):
    columns = tick_columns(frame_to_protos(simulate(20, seed=53)))
    columns["ask_size"][4, 2] = -3.0
    types = {"instrument": "BYTES", "timestamp_ns": "INT64", "sequence": "UINT64", "aggressor": "INT32"}
    body = {"inputs": [_tensor(name, v, types.get(name, "FP64")) for name, v in columns.items()]}
    status, got = _http(http_server, f"/v2/models/{TICKS_MODEL}/infer", body)
    assert status == 400 and got["code"] == "INVALID_ARGUMENT"
    assert got["error"].startswith("ask_size[4, 2]: ") and "-3.0" in got["error"], got
